"""The sandbox's login decision, served to Dovecot over its dict-proxy protocol.

Dovecot 2.3 hands the XOAUTH2/OAUTHBEARER bearer token to a plaintext passdb as the password. Of the
passdbs Debian's dovecot-core ships, two can reach a Python process with both the mailbox and the
token: checkpassword, which refuses any user+password over 512 bytes (real access tokens are 1-3 KB),
and dict. So the passdb is ``dict`` with the key ``passdb/<service>/<user>/<token>``, and this
module is the dict server on a Unix socket: it parses the key, calls the decision function and
answers with the passdb fields as JSON:

- allowed: ``{"nopassword": "y"}`` (the key already proved who sent which token);
- refused: also ``nologin`` and ``reason``. A refusal dressed as a successful lookup makes Dovecot show
  our text at once, without its failure delay, anvil penalty or the OAUTHBEARER error challenge, none
  of which Exchange Online has.

Never answered: "not found" or "failure" - Dovecot logs the failing key, and the key holds the token.

Protocol (Dovecot 2.3 lib-dict, one connection per auth worker, one line per command):
``H<major>\\t<minor>\\t<type>\\t<user>\\t<dict>`` hello (no reply), ``L<key>\\t<user>`` lookup answered
by ``O<value>``; values and keys escape \\x01, tab, CR, LF and NUL as \\x01 followed by 1 t r n 0.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import socketserver
import threading
from collections.abc import Callable
from io import BufferedIOBase
from pathlib import Path

log = logging.getLogger(__name__)

# decide(service, mailbox, token) -> None to allow, or the text the client is shown.
Decide = Callable[[str, str, str], "str | None"]

KEY_PREFIX = "shared/passdb/"
TEMPORARY_FAILURE_TEXT = "Temporary authentication failure."
_MAX_LINE_BYTES = 256 * 1024  # Dovecot's own SASL buffer stops at 8 KB; this only bounds memory

_UNESCAPE = {b"1": b"\x01", b"t": b"\t", b"r": b"\r", b"n": b"\n", b"0": b"\0"}
_ESCAPE = {0x01: b"\x011", 0x09: b"\x01t", 0x0D: b"\x01r", 0x0A: b"\x01n", 0x00: b"\x010"}


def dict_unescape(data: bytes) -> bytes:
    if b"\x01" not in data:
        return data
    out = bytearray()
    i = 0
    while i < len(data):
        if data[i] == 0x01 and i + 1 < len(data):
            out += _UNESCAPE.get(data[i + 1 : i + 2], data[i + 1 : i + 2])
            i += 2
        else:
            out.append(data[i])
            i += 1
    return bytes(out)


def dict_escape(data: bytes) -> bytes:
    return b"".join(_ESCAPE.get(byte, bytes((byte,))) for byte in data)


# The ACL group whose global ACL entry grants no right on any mailbox (see mail.py).
MAILBOX_CLOSED_GROUP = "sandbox-mailbox-closed"


class MailboxClosed(str):
    """A verdict that lets the login succeed while the mailbox cannot be opened: Exchange Online's
    "OK AUTHENTICATE completed." followed by a failing first mailbox command (docs/sandbox-facts.md).
    The string is the reason, for logs."""


def passdb_fields(refusal: str | None) -> dict[str, str]:
    """The passdb fields that make Dovecot allow the login, or refuse it showing ``refusal``, or (a
    ``MailboxClosed`` verdict) allow it with every mailbox closed to the session."""
    if refusal is None:
        return {"nopassword": "y"}
    if isinstance(refusal, MailboxClosed):
        # Dovecot's ACL plugin: the group-override entry in the global ACL file takes every right
        # away, so EXAMINE/SELECT answer NO and POP3's first command -ERR; the login itself is OK.
        return {"nopassword": "y", "userdb_acl_groups": MAILBOX_CLOSED_GROUP}
    return {"nopassword": "y", "nologin": "y", "reason": " ".join(refusal.split())}


class AuthDictServer:
    """Unix-socket dict server answering Dovecot's passdb lookups with ``decide``'s verdict."""

    def __init__(self, socket_path: Path, decide: Decide) -> None:
        self.socket_path = socket_path
        self._decide = decide
        owner = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                owner._serve(self.rfile, self.connection)

        self._server = socketserver.ThreadingUnixStreamServer(str(socket_path), Handler)
        self._server.daemon_threads = True
        # Only our own user (root: Dovecot's auth workers run as root) may ask.
        os.chmod(socket_path, 0o600)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="mail-auth-dict",
            daemon=True,
        )
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=2)
        self.socket_path.unlink(missing_ok=True)

    def _serve(self, reader: BufferedIOBase, conn: socket.socket) -> None:
        while True:
            line = reader.readline(_MAX_LINE_BYTES)
            if not line:
                return
            if not line.endswith(b"\n"):
                log.warning("mail auth dict: over-long or truncated request dropped")
                return
            command, body = line[:1], line[1:-1]
            if command != b"L":
                continue  # hello; Dovecot's passdb sends nothing else
            key = dict_unescape(body.split(b"\t", 1)[0]).decode("utf-8", "replace")
            fields = self._answer(key)
            conn.sendall(b"O" + dict_escape(json.dumps(fields).encode()) + b"\n")

    def _answer(self, key: str) -> dict[str, str]:
        parsed = parse_key(key)
        if parsed is None:
            log.warning("mail auth dict: unexpected key shape; refused")
            return passdb_fields(TEMPORARY_FAILURE_TEXT)
        service, mailbox, token = parsed
        try:
            refusal = self._decide(service, mailbox, token)
        except Exception:
            # The traceback carries no locals, so no token; the client sees a temporary failure, as
            # with Exchange when it cannot decide.
            log.exception("mail authorize() failed for mailbox %s", mailbox)
            return passdb_fields(TEMPORARY_FAILURE_TEXT)
        return passdb_fields(refusal)


def parse_key(key: str) -> tuple[str, str, str] | None:
    """``shared/passdb/<service>/<user>/<token>`` -> (service, user, token); the token may hold '/'."""
    if not key.startswith(KEY_PREFIX):
        return None
    parts = key[len(KEY_PREFIX) :].split("/", 2)
    if len(parts) != 3 or not all(parts):
        return None
    service, user, token = parts
    return service, user, token
