"""Log in to IMAP or POP3 as the mail client will: implicit TLS, SASL XOAUTH2 with the app's token,
then prove the mailbox opens: IMAP ``EXAMINE INBOX`` (read-only SELECT), POP3 ``STAT``.

A login alone proves nothing about the mailbox: Exchange Online completes AUTHENTICATE for an app
that may not open the mailbox and fails the first mailbox command instead ("BAD User is
authenticated but not connected.", docs/sandbox-facts.md). Any answer but OK to EXAMINE/STAT is a
refusal; its words are not relied on.

Uses the standard library clients in a worker thread (they block). The result is data, not an
exception: a refused login is an expected state while permissions propagate. ``detail`` is in an
admin's words and never carries the token or the server's reply.

A verification logs in twice per mailbox, thousands of times per onboarding, so what a login costs
the worker's CPU matters (docs/bench.md). The TLS client context, whose trust store takes tens of
milliseconds to load from a full CA bundle, is built once per process and trust store; and each
server's last TLS session is offered again (RFC 8446 section 2.2 resumption), which spares the
certificate chain's verification and the server's signature. A server that does not resume simply
answers with a full handshake: nothing depends on it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import imaplib
import os
import poplib
import socket
import ssl
import threading
from dataclasses import dataclass, field
from typing import Any

from onboarding.domain import Protocol

REFUSED_FIX = (
    "no Exchange service principal or no FullAccess on the mailbox, or the permission is still propagating"
)
MAILBOX_REFUSED_FIX = (
    "the app is authenticated but may not open this mailbox: no FullAccess on it, or the permission "
    "is still propagating"
)


@dataclass(frozen=True)
class LoginResult:
    ok: bool
    detail: str


@dataclass
class _Tls:
    """One trust store's client context and the last TLS session of each server it talked to."""

    context: ssl.SSLContext
    sessions: dict[tuple[str, int], ssl.SSLSession] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def wrap(self, sock: socket.socket, host: str, port: int) -> ssl.SSLSocket:
        with self.lock:
            session = self.sessions.get((host, port))
        return self.context.wrap_socket(sock, server_hostname=host, session=session)

    def keep(self, sock: Any, host: str, port: int) -> None:
        """Remember the connection's session for the next one (TLS 1.3 sends it after the handshake,
        so it is read once the server has answered), whatever the login's outcome."""
        session = getattr(sock, "session", None)
        if isinstance(session, ssl.SSLSession):
            with self.lock:
                self.sessions[(host, port)] = session


_contexts: dict[tuple[str | None, str | None], _Tls] = {}
_contexts_lock = threading.Lock()


def _tls() -> _Tls:
    """The process's client context for the trust store the environment names now
    (``SSL_CERT_FILE``/``SSL_CERT_DIR``, as ``ssl.create_default_context`` reads it)."""
    key = (os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))
    with _contexts_lock:
        tls = _contexts.get(key)
        if tls is None:
            tls = _contexts[key] = _Tls(ssl.create_default_context())
        return tls


class _Imap(imaplib.IMAP4_SSL):
    def __init__(self, host: str, port: int, tls: _Tls, timeout: float) -> None:
        self.tls = tls
        super().__init__(host, port, ssl_context=tls.context, timeout=timeout)
        tls.keep(self.sock, host, port)  # the greeting has been read: the session ticket with it

    def _create_socket(self, timeout: float | None) -> socket.socket:  # what open() calls
        return self.tls.wrap(socket.create_connection((self.host, self.port), timeout), self.host, self.port)


class _Pop(poplib.POP3_SSL):
    def __init__(self, host: str, port: int, tls: _Tls, timeout: float) -> None:
        self.tls = tls
        super().__init__(host, port, context=tls.context, timeout=timeout)
        tls.keep(self.sock, host, port)  # the greeting has been read: the session ticket with it

    def _create_socket(self, timeout: float) -> socket.socket:  # what __init__ calls
        return self.tls.wrap(socket.create_connection((self.host, self.port), timeout), self.host, self.port)


def xoauth2(mailbox: str, token: str) -> bytes:
    """The SASL XOAUTH2 initial response, before base64."""
    return f"user={mailbox}\x01auth=Bearer {token}\x01\x01".encode()


def _imap_login(host: str, port: int, mailbox: str, token: str, timeout: float, tls: _Tls) -> None:
    client = _Imap(host, port, tls, timeout)
    try:
        sent = False

        def respond(_challenge: bytes) -> bytes:
            # First call: the credentials. A second call is the server's error challenge, to which
            # the client must answer with an empty line to get the final tagged NO.
            nonlocal sent
            if sent:
                return b""
            sent = True
            return xoauth2(mailbox, token)

        client.authenticate("XOAUTH2", respond)
        try:
            status, _ = client.select("INBOX", readonly=True)  # EXAMINE
        except imaplib.IMAP4.error:  # BAD (Exchange's "authenticated but not connected") or BYE
            status = "BAD"
        if status != "OK":
            raise _MailboxRefused("EXAMINE INBOX")
    finally:
        with contextlib.suppress(OSError, imaplib.IMAP4.error):
            client.logout()


class _PopRefused(Exception):
    pass


class _MailboxRefused(Exception):
    """Logged in, but the first mailbox command was refused; the argument names the command."""


def _pop_login(host: str, port: int, mailbox: str, token: str, timeout: float, tls: _Tls) -> None:
    # poplib has no AUTH command: its line helpers (_putcmd/_getline, stable since Python 2) carry it.
    client: Any = _Pop(host, port, tls, timeout)
    try:
        # Two steps (AUTH, then the response after "+") rather than an initial response on the AUTH
        # line: servers limit command line length, and a token is long.
        client._putcmd("AUTH XOAUTH2")
        line, _ = client._getline()
        if not line.startswith(b"+"):
            raise _PopRefused("XOAUTH2 not offered")
        client._putcmd(base64.b64encode(xoauth2(mailbox, token)).decode("ascii"))
        line, _ = client._getline()
        if line.startswith(b"+") and not line.startswith(b"+OK"):
            client._putcmd("")  # the error challenge: acknowledge it to get the final -ERR
            line, _ = client._getline()
        if not line.startswith(b"+OK"):
            raise _PopRefused("refused")
        try:
            client.stat()
        except (poplib.error_proto, EOFError):
            raise _MailboxRefused("STAT") from None
    finally:
        with contextlib.suppress(OSError, poplib.error_proto):
            client.quit()


def _probe(host: str, port: int, protocol: Protocol, mailbox: str, token: str, timeout: float) -> LoginResult:
    where = f"{protocol.value} {host}:{port}"
    try:
        tls = _tls()
        if protocol is Protocol.IMAP:
            _imap_login(host, port, mailbox, token, timeout, tls)
        else:
            _pop_login(host, port, mailbox, token, timeout, tls)
    except _MailboxRefused as refused:
        return LoginResult(
            False,
            f"{protocol.value} login as {mailbox} succeeded but {refused.args[0]} was refused: "
            f"{MAILBOX_REFUSED_FIX}.",
        )
    except (imaplib.IMAP4.error, _PopRefused, poplib.error_proto):
        what = "NO AUTHENTICATE failed" if protocol is Protocol.IMAP else "-ERR authentication failed"
        return LoginResult(False, f"{protocol.value} {what} for {mailbox}: {REFUSED_FIX}.")
    except ssl.SSLCertVerificationError as exc:
        return LoginResult(False, f"TLS error with {where}: certificate not trusted ({exc.verify_message}).")
    except ssl.SSLError as exc:
        return LoginResult(False, f"TLS error with {where} ({exc.reason or type(exc).__name__}).")
    except TimeoutError:
        return LoginResult(False, f"{where} did not answer within {timeout:g} s.")
    except OSError as exc:
        return LoginResult(False, f"{where} is unreachable ({exc.strerror or type(exc).__name__}).")
    return LoginResult(True, f"{protocol.value} login as {mailbox} succeeded and its INBOX opened.")


async def probe_login(
    host: str, port: int, protocol: Protocol, mailbox: str, token: str, *, timeout: float = 30
) -> LoginResult:
    return await asyncio.to_thread(_probe, host, port, Protocol(protocol), mailbox, token, timeout)
