"""Login probe edge cases without a mail server, and what importing the adapters package costs."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import trustme

from onboarding.adapters.mailprobe import probe_login, xoauth2
from onboarding.domain import Protocol

ROOT = Path(__file__).resolve().parents[2]


def test_xoauth2_initial_response_format() -> None:
    assert xoauth2("a@contoso.test", "tok") == b"user=a@contoso.test\x01auth=Bearer tok\x01\x01"


async def test_a_server_that_never_answers_is_reported_as_a_timeout() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    accepted: list[socket.socket] = []
    thread = threading.Thread(target=lambda: accepted.append(listener.accept()[0]), daemon=True)
    thread.start()
    port = listener.getsockname()[1]
    result = await probe_login("127.0.0.1", port, Protocol.POP, "a@contoso.test", "tok", timeout=0.3)
    assert not result.ok and "did not answer" in result.detail and "tok" not in result.detail
    thread.join(1)
    for s in (*accepted, listener):
        s.close()


Script = Callable[[Callable[[str], None], Callable[[], str]], None]


class ScriptedImap:
    """Implicit-TLS IMAP sessions, each played by ``script(say, hear)`` in a thread, ``connections``
    of them one after another; ``heard`` keeps the client's lines (the initial response's base64
    replaced by ``<ir>``) and ``resumed`` whether each connection resumed a TLS session."""

    def __init__(
        self,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        script: Script,
        *,
        issued_to: str = "127.0.0.1",
        connections: int = 1,
    ) -> None:
        ca = trustme.CA()
        ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
        monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "ca.pem"))
        self.tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert(issued_to).configure_cert(self.tls)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.script = script
        self.heard: list[str] = []
        self.resumed: list[bool] = []
        self.thread = threading.Thread(target=self.serve, args=(connections,), daemon=True)
        self.thread.start()

    def serve(self, connections: int) -> None:
        for _ in range(connections):
            raw, _ = self.listener.accept()
            with contextlib.suppress(OSError):  # the client may close first; a write then fails
                self.serve_one(raw)

    def serve_one(self, raw: socket.socket) -> None:
        with self.tls.wrap_socket(raw, server_side=True) as conn, conn.makefile("rwb") as io:
            self.resumed.append(conn.session_reused)

            def say(line: str) -> None:
                io.write(line.encode() + b"\r\n")
                io.flush()

            def hear() -> str:
                raw = io.readline()
                if not raw:  # the client closed the connection: nothing heard
                    raise ConnectionAbortedError
                line = raw.decode().rstrip("\r\n")
                words = line.split(" ")
                if words[1:3] == ["AUTHENTICATE", "XOAUTH2"] and len(words) == 4:
                    assert base64.b64decode(words[3]) == xoauth2("a@contoso.test", "tok")
                    words[3] = "<ir>"
                self.heard.append(" ".join(words))
                return line

            self.script(say, hear)

    def close(self) -> None:
        self.thread.join(2)
        self.listener.close()


async def probe_scripted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, script: Script
) -> tuple[str, list[str]]:
    server = ScriptedImap(tmp_path, monkeypatch, script)
    try:
        result = await probe_login(
            "127.0.0.1", server.port, Protocol.IMAP, "a@contoso.test", "tok", timeout=5
        )
    finally:
        server.close()
    assert "tok" not in result.detail
    return result.detail, server.heard


def exchange_greeting(say: Callable[[str], None]) -> None:
    say("* OK The Microsoft Exchange IMAP4 service is ready.")


async def test_authenticated_but_not_connected_is_a_refusal_not_a_verified_mailbox(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Exchange Online for an app that may not open the mailbox (simonrob/email-oauth2-proxy#74,
    jstedfast/MailKit#1494): AUTHENTICATE completes, the first mailbox command is BAD (Dovecot cannot
    say BAD here, so the sandbox cannot test this form)."""

    def script(say: Callable[[str], None], hear: Callable[[], str]) -> None:
        exchange_greeting(say)
        say(f"{hear().split()[0]} OK AUTHENTICATE completed.")
        say(f"{hear().split()[0]} BAD User is authenticated but not connected.")
        say("* BYE Microsoft Exchange Server IMAP4 server signing off.")
        say(f"{hear().split()[0]} OK LOGOUT completed.")

    detail, heard = await probe_scripted(tmp_path, monkeypatch, script)
    # The token travels on the AUTHENTICATE line (SASL-IR, as Microsoft's guide shows); LOGOUT is
    # sent even though the mailbox was refused.
    assert heard == ["a1 AUTHENTICATE XOAUTH2 <ir>", "a2 EXAMINE INBOX", "a3 LOGOUT"]
    assert "succeeded but EXAMINE INBOX was refused" in detail
    assert "not connected" not in detail


async def test_the_xoauth2_error_challenge_is_answered_and_the_login_reported_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A refused XOAUTH2 login may first get a ``+`` continuation carrying a JSON error; the client
    must answer it with an empty line before the server sends the final NO (Google's XOAUTH2 protocol
    page; Dovecot does the same)."""
    error = base64.b64encode(b'{"status":"401","schemes":"bearer","scope":"https://outlook.office.com/"}')

    def script(say: Callable[[str], None], hear: Callable[[], str]) -> None:
        exchange_greeting(say)
        tag = hear().split()[0]
        say(f"+ {error.decode()}")
        if hear() == "":
            say(f"{tag} NO AUTHENTICATE failed.")

    detail, heard = await probe_scripted(tmp_path, monkeypatch, script)
    assert heard == ["a1 AUTHENTICATE XOAUTH2 <ir>", ""]
    assert "NO AUTHENTICATE failed for a@contoso.test" in detail and "FullAccess" in detail


async def test_a_probe_leaves_the_loop_watching_none_of_its_sockets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A session keeps its socket registered for reading between its waits (cheaper than adding and
    removing it around each): once the probe returns, the loop must watch nothing of it, or it would
    watch a closed descriptor. Lines arrive here unasked and after the end, as a server may send them."""
    selector = asyncio.get_running_loop()._selector  # type: ignore[attr-defined] # what the loop watches
    watched = len(selector.get_map())

    def script(say: Callable[[str], None], hear: Callable[[], str]) -> None:
        exchange_greeting(say)
        say("* CAPABILITY IMAP4rev1 SASL-IR")  # unasked, while the client may not be reading
        say(f"{hear().split()[0]} OK AUTHENTICATE completed.")
        examine = hear().split()[0]
        say("* 1 EXISTS")
        say(f"{examine} OK [READ-ONLY] EXAMINE completed.")
        say("* BYE signing off")
        say(f"{hear().split()[0]} OK LOGOUT completed.")
        say("* one more line nobody reads")

    detail, heard = await probe_scripted(tmp_path, monkeypatch, script)
    assert "succeeded and its INBOX opened" in detail
    assert heard == ["a1 AUTHENTICATE XOAUTH2 <ir>", "a2 EXAMINE INBOX", "a3 LOGOUT"]
    assert len(selector.get_map()) == watched


@pytest.mark.parametrize(
    ("greeting", "after_login", "refusal"),
    [
        ("* OK " + "x" * 100_000, "", "NO AUTHENTICATE failed"),  # an endless line is no answer
        ("* OK ready", "", "NO AUTHENTICATE failed"),  # closed during AUTHENTICATE
        ("* OK ready", "* 1 EXISTS", "succeeded but EXAMINE INBOX was refused"),  # closed during EXAMINE
        ("", "", "NO AUTHENTICATE failed"),  # closed before the greeting
        ("+OK POP3 ready", "", "NO AUTHENTICATE failed"),  # not IMAP
    ],
)
async def test_a_server_that_breaks_off_is_a_refusal_at_that_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, greeting: str, after_login: str, refusal: str
) -> None:
    def script(say: Callable[[str], None], hear: Callable[[], str]) -> None:
        if greeting:
            say(greeting)
        if after_login:
            say(f"{hear().split()[0]} OK AUTHENTICATE completed.")
            hear()
            say(after_login)

    detail, _ = await probe_scripted(tmp_path, monkeypatch, script)
    assert refusal in detail


def a_mailbox_that_opens(say: Callable[[str], None], hear: Callable[[], str]) -> None:
    exchange_greeting(say)
    say(f"{hear().split()[0]} OK AUTHENTICATE completed.")
    say(f"{hear().split()[0]} OK [READ-ONLY] EXAMINE completed.")
    say(f"{hear().split()[0]} OK LOGOUT completed.")


async def test_a_certificate_issued_to_another_host_is_refused_before_the_token_is_sent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The chain is trusted (the CA is in the trust store) but the certificate names another host:
    the probe must stop after the handshake, before AUTHENTICATE carries the token."""
    server = ScriptedImap(tmp_path, monkeypatch, a_mailbox_that_opens, issued_to="mail.contoso.test")
    try:
        result = await probe_login(
            "127.0.0.1", server.port, Protocol.IMAP, "a@contoso.test", "tok", timeout=5
        )
    finally:
        server.close()
    assert not result.ok
    assert result.detail == "TLS error with IMAP 127.0.0.1:" + str(server.port) + (
        ": certificate not trusted (it is not issued to 127.0.0.1)."
    )
    assert server.heard == []


async def test_the_next_login_to_a_server_resumes_its_tls_session(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Thousands of logins go to one server in an onboarding: after the first, each resumes the
    session of the one before (RFC 8446 section 2.2) instead of a full handshake, which is most of a
    login's CPU. Each still opens the mailbox."""
    server = ScriptedImap(tmp_path, monkeypatch, a_mailbox_that_opens, connections=3)
    try:
        results = [
            await probe_login("127.0.0.1", server.port, Protocol.IMAP, "a@contoso.test", "tok", timeout=5)
            for _ in range(3)
        ]
    finally:
        server.close()
    assert [r.ok for r in results] == [True, True, True]
    assert server.resumed == [False, True, True]


def test_importing_the_adapters_package_loads_no_cloud_sdk() -> None:
    """function_app imports ``onboarding`` at start-up; the SDKs must wait until an activity needs them."""
    code = (
        "import sys, onboarding.adapters, onboarding.adapters.identity, onboarding.adapters.mailprobe, "
        "onboarding.adapters.webhook\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in {'msgraph', 'kiota_http', 'httpx', 'aiohttp'} "
        "or m.startswith(('azure.identity', 'azure.keyvault', 'azure.core')))\n"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
