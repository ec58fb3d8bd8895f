"""Log in to IMAP or POP3 as the mail client will: implicit TLS, SASL XOAUTH2 with the app's token,
then prove the mailbox opens: IMAP ``EXAMINE INBOX`` (read-only SELECT), POP3 ``STAT``.

A login alone proves nothing about the mailbox: Exchange Online completes AUTHENTICATE for an app
that may not open the mailbox and fails the first mailbox command instead ("BAD User is
authenticated but not connected.", docs/sandbox-facts.md). Any answer but OK to EXAMINE/STAT is a
refusal; its words are not relied on.

The result is data, not an exception: a refused login is an expected state while permissions
propagate. ``detail`` is in an admin's words and never carries the token or the server's reply.

A verification logs in twice per mailbox, thousands of times per onboarding, so what a login costs
the worker's CPU matters (docs/bench.md). The exchange is therefore written here, on a non-blocking
TLS socket that the event loop wakes (no worker thread, no thread hand-off):

- no CAPABILITY round trip: the IMAP initial response goes on the AUTHENTICATE line (SASL-IR), as
  Microsoft's OAuth guide shows; IMAP's EXAMINE and LOGOUT travel together (RFC 9051 section 5.5);
- the socket's own reads rather than asyncio's SSL transport (``open_connection(ssl=...)``), whose
  Python-level record handling cost about 0.6 ms more per mailbox sequentially and 1.5 ms more at
  ten at a time (bench: client CPU against the sandbox's Dovecot, medians of 8 rounds);
- no library: the standard clients block, no asyncio POP3 client speaks XOAUTH2, and aioimaplib,
  the maintained asyncio IMAP client (2.0.3), cost 1.0-1.3 ms more client CPU per IMAP login than
  this exchange (about 1.6 times as much), and does not answer XOAUTH2's error challenge;
- closed without TLS's close_notify once LOGOUT/QUIT is answered (as imaplib and poplib close).

The parser reads only what decides the outcome: the greeting's status, a ``+`` continuation, the
tagged ``OK``/``NO``/``BAD`` (``+OK``/``-ERR``), skipping untagged lines (and literals) in between.
A line longer than ``_MAX_LINE``, a closed connection or an answer that is not the protocol's is
the server's refusal at that step, never a crash and never echoed.

TLS is pyOpenSSL's (OpenSSL from cryptography's wheel), and each login after the first to a server
offers the session of the one before it (RFC 8446 section 2.2), so that most logins skip the
certificate's parsing and verification, most of a full handshake's CPU. The standard library's
``ssl`` cannot do that for less: it copies every offered session through DER (``_ssl_session_dup``),
which parses the certificate again with OpenSSL 3.0's slow key decoder; counted with callgrind (120
mailboxes), its resumption took the handshakes from 1,331 to 599 million instructions but the copy
cost 744 million. With pyOpenSSL the host's CPU per mailbox of an onboarding fell from about 5.0 to
about 4.0 ms (docs/bench.md). Safety is unchanged:
- the chain is verified by OpenSSL against the trust store ``client_context`` uses, and the host name
  by service_identity (RFC 6125) before anything is sent; only a session whose handshake passed both
  is kept, per server and trust store;
- a server that does not know the session (Exchange Online's support for resumption on 993/995 is
  not documented) answers with a full handshake, verified as any other;
- a session is marked shut down before its socket closes without close_notify: OpenSSL otherwise
  makes the session of a connection freed without a shutdown unresumable.
One session is offered to logins that run at once, which TLS 1.3 allows (a client SHOULD NOT, for
its privacy, RFC 8446 appendix C.4; these are the app's own logins); a server that accepts a ticket
once answers the others with full handshakes.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import os
import socket
from dataclasses import dataclass

from cryptography import x509
from OpenSSL import SSL, crypto
from service_identity import CertificateError, VerificationError
from service_identity.cryptography import verify_certificate_hostname, verify_certificate_ip_address

from onboarding.adapters._tls import mail_client_context, trust_store
from onboarding.domain import Protocol
from onboarding.netcheck import host_address

REFUSED_FIX = (
    "no Exchange service principal or no FullAccess on the mailbox, or the permission is still propagating"
)
MAILBOX_REFUSED_FIX = (
    "the app is authenticated but may not open this mailbox: no FullAccess on it, or the permission "
    "is still propagating"
)

# Longest line accepted from a server. IMAP and POP3 status lines are short (POP3 caps them at 512
# octets); a greeting with a capability list is a few hundred. Anything longer is not an answer the
# probe needs: it stops reading and calls it a refusal.
_MAX_LINE = 16 * 1024
# Largest TLS record's plaintext: what one read can hand over.
_RECORD = 16 * 1024
# Largest IMAP literal skipped inside an untagged response (none is expected before INBOX opens).
_MAX_LITERAL = 64 * 1024
# Servers whose newest TLS session is kept for the next login (a worker talks to one IMAP and one
# POP endpoint; more mean test servers or a changed trust store).
_SESSIONS_KEPT = 16

# The newest TLS session of a completed exchange with each server (host, port, trust store), offered
# by the next login to it. Only a session whose handshake verified the chain and the host name is
# kept, and a server that does not know it answers with a full handshake.
_ServerKey = tuple[str, int, tuple[str | None, str | None]]  # host, port, trust store
_sessions: dict[_ServerKey, SSL.Session] = {}


@dataclass(frozen=True)
class LoginResult:
    ok: bool
    detail: str


def xoauth2(mailbox: str, token: str) -> bytes:
    """The SASL XOAUTH2 initial response, before base64."""
    return f"user={mailbox}\x01auth=Bearer {token}\x01\x01".encode()


class _LoginRefused(Exception):
    """The server did not let the app in (or stopped speaking the protocol before it did)."""


class _MailboxRefused(Exception):
    """Logged in, but the first mailbox command was refused; the argument names the command."""


class _Untrusted(Exception):
    """The server's certificate is not valid for the host name the probe connected to."""


class _Session:
    """One connection's line I/O on a non-blocking TLS socket. A failure to read a proper line
    raises ``refusal`` (a class): what a short or overlong answer means depends on the step it
    interrupts."""

    def __init__(self, protocol: Protocol, conn: SSL.Connection, fd: int) -> None:
        self.protocol = protocol
        self.conn = conn
        self.fd = fd
        self.buffer = bytearray()
        self.refusal: type[Exception] = _LoginRefused
        self._loop = asyncio.get_running_loop()
        self._waiter: asyncio.Future[None] | None = None  # the wait in progress, if any
        self._waiting_to_write = False
        self._reading = False  # the socket is registered with the loop for reading

    async def _ready(self, *, write: bool = False) -> None:
        """Wait until the socket can be read (or written); cancellation (the timeout) stops it.

        A session waits to read about ten times. The socket stays registered for reading from the
        first wait until ``stop_reading`` rather than being added and removed around each wait (two
        epoll calls and the loop's bookkeeping each time): callgrind counted 13.88 -> 13.61 million
        instructions per mailbox (two logins, ten at a time, against the sandbox's Dovecot), 2%, and
        the kernel's epoll work is on top. A readiness that arrives while no read waits unregisters
        it, so a level-triggered loop never spins on unread data."""
        ready = self._loop.create_future()
        self._waiter, self._waiting_to_write = ready, write
        fd = self.fd
        if write:
            self._loop.add_writer(fd, self._wake)
        elif not self._reading:
            self._loop.add_reader(fd, self._wake_reader)
            self._reading = True
        try:
            await ready
        finally:
            self._waiter = None
            if write:
                self._loop.remove_writer(fd)

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _wake_reader(self) -> None:
        if self._waiter is None or self._waiting_to_write:
            self.stop_reading()  # readable while no read waits: registered again by the next one
        else:
            self._wake()

    def stop_reading(self) -> None:
        if self._reading:
            self._loop.remove_reader(self.fd)
            self._reading = False

    async def handshake(self) -> None:
        while True:
            try:
                self.conn.do_handshake()
                return
            except SSL.WantReadError:
                await self._ready()
            except SSL.WantWriteError:
                await self._ready(write=True)

    async def send(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                view = view[self.conn.send(view) :]
            except SSL.WantWriteError:
                await self._ready(write=True)
            except SSL.WantReadError:
                await self._ready()

    async def _fill(self) -> None:
        """Add what the server sent next to the buffer (TLS hands over at most one record a call)."""
        while True:
            try:
                data = self.conn.recv(_RECORD)
            except SSL.WantReadError:
                await self._ready()
                continue
            except SSL.WantWriteError:  # TLS itself has something to send first
                await self._ready(write=True)
                continue
            except SSL.ZeroReturnError:  # the server closed the session with close_notify
                raise self.refusal("closed") from None
            except SSL.SysCallError as exc:
                if exc.args[0] != -1:  # the connection broke (reset): the network's error
                    raise OSError(exc.args[0], exc.args[1]) from None
                raise self.refusal("closed") from None  # closed without close_notify
            if not data:  # the server closed the connection
                raise self.refusal("closed")
            self.buffer += data
            return

    async def line(self) -> bytes:
        while (end := self.buffer.find(b"\n")) < 0:
            if len(self.buffer) > _MAX_LINE:
                raise self.refusal("line too long")
            await self._fill()
        if end > _MAX_LINE:
            raise self.refusal("line too long")
        line = bytes(self.buffer[: end + 1])
        del self.buffer[: end + 1]
        return line.rstrip(b"\r\n")

    async def skip_literal(self, line: bytes) -> None:
        """An IMAP line ending in ``{n}`` is followed by n octets, then the rest of the line."""
        if line.endswith(b"}") and (start := line.rfind(b"{")) >= 0:
            size = line[start + 1 : -1].rstrip(b"+")
            if size.isdigit():
                if int(size) > _MAX_LITERAL:
                    raise self.refusal("literal too long")
                while len(self.buffer) < int(size):
                    await self._fill()
                del self.buffer[: int(size)]
                await self.skip_literal(await self.line())


async def _imap_tagged(session: _Session, tag: bytes, *, challenge: bool = False) -> bytes:
    """Skip untagged lines up to the command's tagged status; any other line is a refusal. With
    ``challenge`` (AUTHENTICATE), a ``+`` continuation is XOAUTH2's error challenge (a base64 JSON
    status): the client answers an empty line and then gets the final NO; a server that keeps asking
    is stopped by the timeout."""
    prefix = tag + b" "
    while True:
        line = await session.line()
        if line.startswith(prefix):
            return line[len(prefix) :].split(b" ", 1)[0].upper()
        if challenge and line.startswith(b"+"):
            await session.send(b"\r\n")
            continue
        if not line.startswith(b"* "):
            raise session.refusal("not IMAP")
        await session.skip_literal(line)


async def _imap(session: _Session, mailbox: str, token: str) -> None:
    if not (await session.line()).upper().startswith(b"* OK"):
        raise _LoginRefused("greeting")
    await session.send(b"a1 AUTHENTICATE XOAUTH2 " + base64.b64encode(xoauth2(mailbox, token)) + b"\r\n")
    if await _imap_tagged(session, b"a1", challenge=True) != b"OK":
        raise _LoginRefused("NO")
    session.refusal = _MailboxRefused
    await session.send(b"a2 EXAMINE INBOX\r\na3 LOGOUT\r\n")
    if await _imap_tagged(session, b"a2") != b"OK":  # BAD (Exchange's "not connected"), NO or BYE
        raise _MailboxRefused("EXAMINE INBOX")
    await _imap_tagged(session, b"a3")


async def _pop(session: _Session, mailbox: str, token: str) -> None:
    if not (await session.line()).startswith(b"+OK"):
        raise _LoginRefused("greeting")
    # Two steps (AUTH, then the response after "+"), as Microsoft's guide shows for POP, rather than
    # an initial response on the AUTH line: RFC 5034 forbids one that makes the line longer than 255
    # octets, and a token is long.
    await session.send(b"AUTH XOAUTH2\r\n")
    line = await session.line()
    if not line.startswith(b"+") or line.startswith(b"+OK"):
        raise _LoginRefused("XOAUTH2 not offered")
    await session.send(base64.b64encode(xoauth2(mailbox, token)) + b"\r\n")
    line = await session.line()
    if line.startswith(b"+") and not line.startswith(b"+OK"):
        await session.send(b"\r\n")  # the error challenge: acknowledge it to get the final -ERR
        line = await session.line()
    if not line.startswith(b"+OK"):
        raise _LoginRefused("-ERR")
    # One command at a time: Exchange's POP3 does not announce PIPELINING (RFC 2449).
    session.refusal = _MailboxRefused
    await session.send(b"STAT\r\n")
    if not (await session.line()).startswith(b"+OK"):
        raise _MailboxRefused("STAT")
    await session.send(b"QUIT\r\n")
    await session.line()


async def _connect(host: str, port: int) -> socket.socket:
    """A connected non-blocking TCP socket: each address in turn, as ``socket.create_connection``.
    An IP address is not handed to the resolver (asyncio's resolver is a worker thread)."""
    loop = asyncio.get_running_loop()
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)
    except socket.gaierror:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    error: OSError = OSError(f"{host} has no address")
    for family, kind, proto, _, address in infos:
        sock = socket.socket(family, kind, proto)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            await loop.sock_connect(sock, address)
            return sock
        except OSError as exc:
            sock.close()
            error = exc
        except BaseException:
            sock.close()
            raise
    raise error


def _check_name(conn: SSL.Connection, host: str) -> None:
    """The certificate must name the host the probe connected to (RFC 6125, by service_identity):
    OpenSSL verified its chain only. Checked before the token is sent."""
    certificate = conn.get_peer_certificate()
    if certificate is None or not _names_host(
        crypto.dump_certificate(crypto.FILETYPE_ASN1, certificate), host
    ):
        raise _Untrusted(host)


@functools.lru_cache(maxsize=16)
def _names_host(der: bytes, host: str) -> bool:
    """Whether the certificate (DER) is issued to ``host``. Kept per certificate and host: a worker
    meets one or two certificates, and parsing one for each of thousands of logins cost about 5% of
    the host's CPU in an onboarding (py-spy)."""
    certificate = x509.load_der_x509_certificate(der)
    address = host_address(host)
    try:
        if address is None:
            verify_certificate_hostname(certificate, host)
        else:
            verify_certificate_ip_address(certificate, str(address))
    except (VerificationError, CertificateError):
        return False
    return True


def _tls_connection(raw: socket.socket, host: str, port: int) -> tuple[SSL.Connection, _ServerKey]:
    conn = SSL.Connection(mail_client_context(), raw)
    conn.set_connect_state()
    if host_address(host) is None:  # a name goes as SNI (RFC 6066 allows no address there)
        conn.set_tlsext_host_name(host.encode("idna"))
    key = (host, port, trust_store())
    if (offered := _sessions.get(key)) is not None:
        conn.set_session(offered)
    return conn, key


def _keep_session(key: _ServerKey, conn: SSL.Connection) -> None:
    """Keep the exchange's session for the next login to the same server. The connection is marked
    shut down first: OpenSSL makes the session of a connection freed without it unresumable."""
    conn.set_shutdown(SSL.SENT_SHUTDOWN)
    if (session := conn.get_session()) is not None:
        _sessions.pop(key, None)
        _sessions[key] = session
        while len(_sessions) > _SESSIONS_KEPT:
            _sessions.pop(next(iter(_sessions)), None)


async def _exchange(host: str, port: int, protocol: Protocol, mailbox: str, token: str) -> None:
    raw = await _connect(host, port)
    # Closed without TLS's close_notify, as imaplib and poplib close: LOGOUT/QUIT has ended the
    # session (or the exchange broke off), and the alert would cost one more send for nothing.
    with raw:
        conn, key = _tls_connection(raw, host, port)
        session = _Session(protocol, conn, raw.fileno())
        try:
            await session.handshake()
            _check_name(conn, host)
            await (_imap if protocol is Protocol.IMAP else _pop)(session, mailbox, token)
        except (_LoginRefused, _MailboxRefused):
            _keep_session(key, conn)  # TLS worked: the refusal is the server's answer
            raise
        else:
            _keep_session(key, conn)
        finally:
            session.stop_reading()  # before the socket closes: the loop must not watch a closed fd


def _tls_reason(exc: SSL.Error) -> str:
    """OpenSSL's reasons for a failed handshake, in its words (e.g. "certificate verify failed");
    none of them carries what the probe sends."""
    reasons = [
        str(entry[2])
        for entry in (exc.args[0] if exc.args and isinstance(exc.args[0], list) else [])
        if len(entry) == 3 and entry[2]
    ]
    if any("certificate verify failed" in reason for reason in reasons):
        return ": certificate not trusted (certificate verify failed)"
    return f" ({'; '.join(reasons) or type(exc).__name__})"


async def probe_login(
    host: str, port: int, protocol: Protocol, mailbox: str, token: str, *, timeout: float = 30
) -> LoginResult:
    protocol = Protocol(protocol)
    where = f"{protocol.value} {host}:{port}"
    try:
        async with asyncio.timeout(timeout):
            await _exchange(host, port, protocol, mailbox, token)
    except _MailboxRefused:
        command = "EXAMINE INBOX" if protocol is Protocol.IMAP else "STAT"
        return LoginResult(
            False,
            f"{protocol.value} login as {mailbox} succeeded but {command} was refused: {MAILBOX_REFUSED_FIX}.",
        )
    except _LoginRefused:
        what = "NO AUTHENTICATE failed" if protocol is Protocol.IMAP else "-ERR authentication failed"
        return LoginResult(False, f"{protocol.value} {what} for {mailbox}: {REFUSED_FIX}.")
    except _Untrusted:
        return LoginResult(
            False, f"TLS error with {where}: certificate not trusted (it is not issued to {host})."
        )
    except SSL.SysCallError as exc:
        if exc.args[0] != -1:
            return LoginResult(False, f"{where} is unreachable ({os.strerror(exc.args[0])}).")
        return LoginResult(
            False, f"TLS error with {where} (the server closed the connection during the handshake)."
        )
    except SSL.Error as exc:
        return LoginResult(False, f"TLS error with {where}{_tls_reason(exc)}.")
    except TimeoutError:
        return LoginResult(False, f"{where} did not answer within {timeout:g} s.")
    except OSError as exc:
        return LoginResult(False, f"{where} is unreachable ({exc.strerror or type(exc).__name__}).")
    return LoginResult(True, f"{protocol.value} login as {mailbox} succeeded and its INBOX opened.")
