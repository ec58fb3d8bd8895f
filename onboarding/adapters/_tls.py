"""Connections shared by every activity of this worker: one TLS client context per trust store, and
one HTTP client per event loop, trust store and use.

Why shared: built per activity, every client paid again for what does not change between
activities, measured on the benchmark machine:
- a TLS context: httpx builds one from certifi's ~140 CAs for each client (33 ms of CPU), and
  azure-core, given ``connection_verify``, builds one for each *request* (26 ms with the system
  bundle); the Graph adapter alone used two httpx clients per activity;
- a TCP connection and TLS handshake to each service, per activity (per request for azure-core:
  aiohttp pools connections by SSL context, and each request's was new).

Only connections are shared. Nothing of one activity reaches another's requests: each request
carries its own activity's Authorization header; the clients hold no base URL, default header or
credential; and both cookie jars refuse every cookie. The trust store is the one the environment
names now (``SSL_CERT_FILE``/``SSL_CERT_DIR``, read when a context is built, as httpx and
``ssl.create_default_context`` read it): a process that changes it gets new clients.

An httpx client asked for outside a running event loop (by synchronous code) is the caller's own, to
close, as before. An azure-core transport finds the loop's session each time it sends.
"""

from __future__ import annotations

import asyncio
import functools
import os
import ssl
import threading
import weakref
from collections import OrderedDict
from collections.abc import AsyncGenerator, Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from http.cookiejar import CookieJar

    import httpx
    from OpenSSL import SSL

# Clients kept per loop: a worker talks to one cloud's handful of endpoints; more keys than this mean
# the trust store or the endpoints changed (test processes that start sandbox after sandbox).
_KEPT_PER_LOOP = 16
# An evicted client may still be serving a request of an activity that got it before; it is closed
# after this long rather than at once.
_CLOSE_EVICTED_AFTER_S = 120.0

_clients_lock = threading.Lock()
_clients: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, OrderedDict[tuple[Any, ...], tuple[Any, AsyncGenerator[None, None]]]
]
_clients = weakref.WeakKeyDictionary()


def trust_store() -> tuple[str | None, str | None]:
    """The trust store the environment names now."""
    return os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR")


def client_context() -> ssl.SSLContext:
    """The process's verifying client context for the current trust store (built once per store:
    loading a CA bundle is most of a context's cost)."""
    return _context_for(trust_store())


@functools.cache
def _context_for(store: tuple[str | None, str | None]) -> ssl.SSLContext:
    return ssl.create_default_context()  # reads the store from the environment, as ``store`` says


def mail_client_context() -> SSL.Context:
    """The process's verifying pyOpenSSL client context for the current trust store, for the mail
    probe (onboarding/adapters/mailprobe.py says why it is not the standard library's): TLS 1.2 or
    newer, the server's chain verified against the same trust store as ``client_context`` (the
    system's, or what ``SSL_CERT_FILE``/``SSL_CERT_DIR`` name, as ``ssl.get_default_verify_paths``
    reads them). The host name is the caller's to check: pyOpenSSL has no public way to give it to
    OpenSSL's verification."""
    return _mail_context_for(trust_store())


@functools.cache
def _mail_context_for(store: tuple[str | None, str | None]) -> SSL.Context:
    from OpenSSL import SSL

    context = SSL.Context(SSL.TLS_CLIENT_METHOD)
    context.set_min_proto_version(SSL.TLS1_2_VERSION)
    context.set_verify(SSL.VERIFY_PEER)
    paths = ssl.get_default_verify_paths()
    if paths.cafile or paths.capath:
        context.load_verify_locations(paths.cafile, paths.capath)
    else:  # no system store where the standard library looks: pyOpenSSL's own search
        context.set_default_verify_paths()
    return context


def _shared(kind: tuple[Any, ...], build: Callable[[], Any]) -> Any | None:
    """The running loop's client for ``kind`` and the current trust store, built on first use;
    None outside a running loop."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return None
    key = (*kind, trust_store())
    with _clients_lock:
        kept = _clients.setdefault(loop, OrderedDict())
        if key in kept:
            kept.move_to_end(key)
            return kept[key][0]
        client = build()
        kept[key] = (client, _closed_at_shutdown(client))
        while len(kept) > _KEPT_PER_LOOP:
            _, (_, closer) = kept.popitem(last=False)
            loop.call_later(_CLOSE_EVICTED_AFTER_S, _close_soon, closer)
        return client


def _closed_at_shutdown(client: Any) -> AsyncGenerator[None, None]:
    """A started async generator that closes ``client`` when it is closed: asyncio closes a loop's
    live async generators when the loop shuts down (``shutdown_asyncgens``, as ``asyncio.run`` does),
    so a loop that ends closes its clients rather than leaving unclosed sessions to the collector.
    Kept beside the client: the loop holds its generators only weakly."""

    async def closer() -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            await (client.aclose() if hasattr(client, "aclose") else client.close())

    generator = closer()
    _keep(asyncio.ensure_future(anext(generator)))  # its first step on the loop registers it there
    return generator


def _close_soon(closer: AsyncGenerator[None, None]) -> None:
    _keep(asyncio.ensure_future(closer.aclose()))


_running: set[asyncio.Future[Any]] = set()


def _keep(task: asyncio.Future[Any]) -> None:
    """Hold a fire-and-forget task until it is done (the loop itself holds tasks only weakly)."""
    _running.add(task)
    task.add_done_callback(_running.discard)


def _no_cookies() -> CookieJar:
    """A jar that never stores or sends a cookie, for httpx clients shared between activities."""
    from http.cookiejar import CookieJar, DefaultCookiePolicy

    return CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))


def http_client(
    *, timeout: float, setup: Callable[[httpx.AsyncClient], httpx.AsyncClient] | None = None, use: str = ""
) -> tuple[httpx.AsyncClient, bool]:
    """An httpx client and whether the caller owns it (closes it). ``setup`` adapts a new client
    (e.g. msgraph-core's middleware); ``use`` keeps differently set-up clients apart."""
    import httpx

    def build() -> httpx.AsyncClient:
        client = httpx.AsyncClient(timeout=timeout, follow_redirects=False, cookies=_no_cookies())
        return setup(client) if setup else client

    shared = _shared(("httpx", use, timeout), build)
    return (shared, False) if shared is not None else (build(), True)


def _aiohttp_session() -> Any:
    """The running loop's aiohttp session for the current trust store."""

    def build() -> Any:
        import aiohttp

        # As azure-core's own session (AioHttpTransport.open), with the context above instead of
        # aiohttp's, which it builds once at import and so ignores a trust store named later, and
        # without trust_env. With it, aiohttp looks for the request's credentials in ~/.netrc (or
        # $NETRC) on every request, in a worker thread, and when an entry names the host (or a
        # "default" entry names every host) it refuses any request that also carries an
        # Authorization header, as every Azure request does: "ValueError: Cannot combine
        # AUTHORIZATION header with AUTH argument" (aiohttp 3.14.5; netrc credentials taking a
        # client's place are pimutils/vdirsyncer#1138). The proxies the environment names are still
        # used (SharedSessionTransport.send).
        return aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=client_context()),
            trust_env=False,
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
        )

    return _shared(("aiohttp",), build)


@functools.cache
def _shared_transport_class() -> type[Any]:
    from azure.core.pipeline.transport import AioHttpTransport

    class SharedSessionTransport(AioHttpTransport):
        """azure-core's aiohttp transport over the shared session of the loop it sends on (found
        when it opens, which it does before every request: a client may be built on one loop and
        used on another). Closing it leaves the session open."""

        async def open(self) -> None:
            self.session = _aiohttp_session()
            self._session_owner = False
            self._has_been_opened = True

        async def send(self, request: Any, **config: Any) -> Any:
            if not config.get("proxies") and config.get("proxy") is None:
                found = _environment_proxy(str(request.url))
                if found is not None:
                    config["proxy"], config["proxy_auth"] = found
            return await super().send(request, **config)

    return SharedSessionTransport


def _environment_proxy(url: str) -> tuple[Any, Any] | None:
    """The proxy (and its credentials) the environment names for ``url``, as aiohttp's trust_env
    finds it (HTTP_PROXY, HTTPS_PROXY, NO_PROXY; a proxy's login from its URL or from .netrc), or
    None to go direct. The environment is asked first, so .netrc is read only where a proxy is set."""
    import urllib.request

    if not urllib.request.getproxies().keys() & {"http", "https"}:
        return None
    from aiohttp.helpers import get_env_proxy_for_url
    from yarl import URL

    try:
        return get_env_proxy_for_url(URL(url))
    except LookupError:  # NO_PROXY names the host, or no proxy for its scheme
        return None


def azure_transport_options() -> dict[str, Any]:
    """Keyword arguments for azure-core clients and azure-identity credentials: a transport of the
    client's own over the loop's shared aiohttp session."""
    return {"transport": _shared_transport_class()()}
