"""Login probe edge cases without a mail server, and what importing the adapters package costs."""

from __future__ import annotations

import socket
import ssl
import subprocess
import sys
import threading
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


class ScriptedExchangeImap:
    """One implicit-TLS IMAP session answering as Exchange Online does for an app that may not open
    the mailbox (simonrob/email-oauth2-proxy#74, jstedfast/MailKit#1494): AUTHENTICATE completes, the
    first mailbox command is BAD (Dovecot cannot say BAD here, so the sandbox cannot test this form)."""

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        ca = trustme.CA()
        ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
        monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "ca.pem"))
        self.tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1").configure_cert(self.tls)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.seen: list[str] = []
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        raw, _ = self.listener.accept()
        with self.tls.wrap_socket(raw, server_side=True) as conn, conn.makefile("rwb") as io:

            def say(line: str) -> None:
                io.write(line.encode() + b"\r\n")
                io.flush()

            say("* OK The Microsoft Exchange IMAP4 service is ready.")
            while line := io.readline().decode().strip():
                tag, command = [*line.split(" ", 2), ""][:2]
                self.seen.append(command.upper())
                if command.upper() == "CAPABILITY":
                    say("* CAPABILITY IMAP4 IMAP4rev1 AUTH=PLAIN AUTH=XOAUTH2 SASL-IR UIDPLUS ID UNSELECT")
                    say(f"{tag} OK CAPABILITY completed.")
                elif command.upper() == "AUTHENTICATE":
                    say("+ ")
                    io.readline()
                    say(f"{tag} OK AUTHENTICATE completed.")
                elif command.upper() == "LOGOUT":
                    say("* BYE Microsoft Exchange Server IMAP4 server signing off.")
                    say(f"{tag} OK LOGOUT completed.")
                    return
                else:
                    say(f"{tag} BAD User is authenticated but not connected.")

    def close(self) -> None:
        self.thread.join(2)
        self.listener.close()


async def test_authenticated_but_not_connected_is_a_refusal_not_a_verified_mailbox(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = ScriptedExchangeImap(tmp_path, monkeypatch)
    try:
        result = await probe_login(
            "127.0.0.1", server.port, Protocol.IMAP, "a@contoso.test", "tok", timeout=5
        )
    finally:
        server.close()
    assert "EXAMINE" in server.seen
    assert not result.ok
    assert "succeeded but EXAMINE INBOX was refused" in result.detail
    assert "not connected" not in result.detail and "tok" not in result.detail


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
