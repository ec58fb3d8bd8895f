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

The TLS client context, whose trust store takes tens of milliseconds to load from a full CA bundle,
is built once per process and trust store. TLS session resumption (RFC 8446 section 2.2) is not
offered: measured with this exchange against the sandbox's Dovecot (1,638 of 1,640 logins
resumed), the client's CPU per mailbox was the same (medians of 8 rounds: 5.30 against 5.34 ms
sequentially, 4.03 against 3.99 ms ten at a time; load 4-7). Counted with callgrind (120 mailboxes,
two logins each, ten at a time), resumption did take the handshakes from 1,331 to 599 million
instructions, the server's certificate no longer parsed and verified; but CPython copies a session
each time one is offered (``_ssl_session_dup``: a DER round trip, the peer's certificate parsed again
by OpenSSL 3.0's slow key decoder), 744 million, so the whole was 3% less. It saves nothing the host
pays for.
"""

from __future__ import annotations

import asyncio
import base64
import socket
import ssl
from dataclasses import dataclass

from onboarding.adapters._tls import client_context
from onboarding.domain import Protocol

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


class _Session:
    """One connection's line I/O on a non-blocking TLS socket. A failure to read a proper line
    raises ``refusal`` (a class): what a short or overlong answer means depends on the step it
    interrupts."""

    def __init__(self, protocol: Protocol, sock: ssl.SSLSocket) -> None:
        self.protocol = protocol
        self.sock = sock
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
        fd = self.sock.fileno()
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
            self._loop.remove_reader(self.sock.fileno())
            self._reading = False

    async def handshake(self) -> None:
        while True:
            try:
                self.sock.do_handshake()
                return
            except ssl.SSLWantReadError:
                await self._ready()
            except ssl.SSLWantWriteError:
                await self._ready(write=True)

    async def send(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                view = view[self.sock.send(view) :]
            except ssl.SSLWantWriteError:
                await self._ready(write=True)
            except ssl.SSLWantReadError:
                await self._ready()

    async def _fill(self) -> None:
        """Add what the server sent next to the buffer (TLS hands over at most one record a call)."""
        while True:
            try:
                data = self.sock.recv(_RECORD)
            except ssl.SSLWantReadError:
                await self._ready()
                continue
            except ssl.SSLWantWriteError:  # TLS itself has something to send first
                await self._ready(write=True)
                continue
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


async def _exchange(host: str, port: int, protocol: Protocol, mailbox: str, token: str) -> None:
    raw = await _connect(host, port)
    try:
        sock = client_context().wrap_socket(raw, server_hostname=host, do_handshake_on_connect=False)
    except BaseException:
        raw.close()
        raise
    # Closed without TLS's close_notify, as imaplib and poplib close: LOGOUT/QUIT has ended the
    # session (or the exchange broke off), and the alert would cost one more send for nothing.
    with sock:
        session = _Session(protocol, sock)
        try:
            await session.handshake()
            await (_imap if protocol is Protocol.IMAP else _pop)(session, mailbox, token)
        finally:
            session.stop_reading()  # before the socket closes: the loop must not watch a closed fd


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
    except ssl.SSLCertVerificationError as exc:
        return LoginResult(False, f"TLS error with {where}: certificate not trusted ({exc.verify_message}).")
    except ssl.SSLError as exc:
        return LoginResult(False, f"TLS error with {where} ({exc.reason or type(exc).__name__}).")
    except TimeoutError:
        return LoginResult(False, f"{where} did not answer within {timeout:g} s.")
    except OSError as exc:
        return LoginResult(False, f"{where} is unreachable ({exc.strerror or type(exc).__name__}).")
    return LoginResult(True, f"{protocol.value} login as {mailbox} succeeded and its INBOX opened.")
