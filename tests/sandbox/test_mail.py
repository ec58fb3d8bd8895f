"""The sandbox's real IMAP/POP3 server (Dovecot) as a mail client sees it.

The login decision is a fake ``authorize`` here; the chain through the whole sandbox tenant is in
test_mail_chain.py. Clients are the standard library's imaplib and poplib over TLS that verifies
the sandbox CA.
"""

from __future__ import annotations

import base64
import imaplib
import logging
import os
import poplib
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trustme

from sandbox import mail
from sandbox.mail import IMAP_FAILURE_TEXT, POP_FAILURE_TEXT, MailServer, MailServerError

# What imaplib/poplib report when the server refuses a login (Dovecot puts its response code in
# front of Exchange Online's text; see docs/sandbox-mail.md).
IMAP_REFUSAL = f"[CONTACTADMIN] {IMAP_FAILURE_TEXT}"
POP_REFUSAL = f"-ERR [AUTH] {POP_FAILURE_TEXT}".encode()

ALICE = "alice@contoso.example"
BOB = "bob@contoso.example"
CAROL = "carol@contoso.example"
# Shaped like a JWT, with the characters a token may hold.
TOKEN = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJodHRwczovL291dGxvb2sifQ.c2ln-_+/="


@dataclass
class FakeDirectory:
    """Decides logins like the sandbox state would: a set of allowed (mailbox, token, protocol)."""

    allowed: set[tuple[str, str, str]] = field(default_factory=set)
    calls: list[tuple[str, str, str]] = field(default_factory=list)
    fail_with: Exception | None = None

    def authorize(self, mailbox: str, token: str, protocol: str) -> str | None:
        self.calls.append((mailbox, token, protocol))
        if self.fail_with is not None:
            raise self.fail_with
        if (mailbox, token, protocol) in self.allowed:
            return None
        return f"no grant for {mailbox} over {protocol}"

    def allow(self, mailbox: str, token: str, *protocols: str) -> None:
        for protocol in protocols or ("imap", "pop"):
            self.allowed.add((mailbox, token, protocol))


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def tls_files(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    folder = tmp_path_factory.mktemp("tls")
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert_file, key_file, ca_file = folder / "cert.pem", folder / "key.pem", folder / "ca.pem"
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    ca.cert_pem.write_to_path(str(ca_file))
    return cert_file, key_file, ca_file


@pytest.fixture(scope="module")
def client_tls(tls_files: tuple[Path, Path, Path]) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(tls_files[2]))


@pytest.fixture(scope="module")
def directory() -> FakeDirectory:
    return FakeDirectory()


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, tls_files: tuple[Path, Path, Path], directory: FakeDirectory
) -> Iterator[MailServer]:
    cert_file, key_file, _ = tls_files
    srv = MailServer(
        tmp_path_factory.mktemp("mail"), cert_file=cert_file, key_file=key_file, authorize=directory.authorize
    )
    for address in (ALICE, BOB):
        srv.add_mailbox(address)  # before start
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(autouse=True)
def fresh_directory(directory: FakeDirectory) -> None:
    directory.allowed.clear()
    directory.calls.clear()
    directory.fail_with = None


def xoauth2(mailbox: str, token: str) -> bytes:
    return f"user={mailbox}\x01auth=Bearer {token}\x01\x01".encode()


def oauthbearer(mailbox: str, token: str, port: int) -> bytes:
    return f"n,a={mailbox},\x01host=127.0.0.1\x01port={port}\x01auth=Bearer {token}\x01\x01".encode()


def imap(server: MailServer, tls: ssl.SSLContext) -> imaplib.IMAP4_SSL:
    return imaplib.IMAP4_SSL("127.0.0.1", server.imap_port, ssl_context=tls, timeout=10)


def pop(server: MailServer, tls: ssl.SSLContext) -> poplib.POP3_SSL:
    return poplib.POP3_SSL("127.0.0.1", server.pop_port, context=tls, timeout=10)


def pop_auth(client: poplib.POP3_SSL, mechanism: str, response: bytes) -> bytes:
    # poplib has no AUTH; SASL-IR on one line is what Exchange clients send.
    return client._shortcmd(f"AUTH {mechanism} {base64.b64encode(response).decode()}")  # type: ignore[attr-defined]


def imap_login(
    server: MailServer, tls: ssl.SSLContext, mailbox: str, token: str, mechanism: str = "XOAUTH2"
) -> imaplib.IMAP4_SSL:
    client = imap(server, tls)
    payload = (
        xoauth2(mailbox, token) if mechanism == "XOAUTH2" else oauthbearer(mailbox, token, server.imap_port)
    )
    client.authenticate(mechanism, lambda _challenge: payload)
    return client


def read_inbox_over_imap(client: imaplib.IMAP4_SSL) -> bytes:
    status, data = client.select("INBOX", readonly=True)
    assert status == "OK" and data == [b"1"]
    status, fetched = client.fetch("1", "(RFC822)")
    assert status == "OK"
    message = fetched[0]
    assert isinstance(message, tuple)
    return message[1]


def test_imap_xoauth2_login_is_allowed_and_reads_the_welcome_message(
    server: MailServer, client_tls: ssl.SSLContext, directory: FakeDirectory
) -> None:
    directory.allow(ALICE, TOKEN, "imap")

    client = imap_login(server, client_tls, ALICE, TOKEN)
    try:
        message = read_inbox_over_imap(client)
    finally:
        client.logout()

    assert b"Subject: Welcome to your sandbox mailbox" in message
    assert f"To: {ALICE}".encode() in message
    assert directory.calls == [(ALICE, TOKEN, "imap")]


def test_pop_xoauth2_login_is_allowed_and_reads_the_welcome_message(
    server: MailServer, client_tls: ssl.SSLContext, directory: FakeDirectory
) -> None:
    directory.allow(ALICE, TOKEN, "pop")

    client = pop(server, client_tls)
    try:
        assert pop_auth(client, "XOAUTH2", xoauth2(ALICE, TOKEN)).startswith(b"+OK")
        count, _size = client.stat()
        _status, lines, _octets = client.retr(1)
    finally:
        client.quit()

    assert count == 1
    assert b"Subject: Welcome to your sandbox mailbox" in lines
    assert directory.calls == [(ALICE, TOKEN, "pop")]


def test_pop_auth_in_two_steps_works_too(
    server: MailServer, client_tls: ssl.SSLContext, directory: FakeDirectory
) -> None:
    # Clients wary of long command lines send "AUTH XOAUTH2", wait for "+", then the response.
    directory.allow(ALICE, TOKEN, "pop")

    client = pop(server, client_tls)
    try:
        client._putcmd("AUTH XOAUTH2")  # type: ignore[attr-defined]
        assert client._getline()[0].startswith(b"+")  # type: ignore[attr-defined]
        client._putcmd(base64.b64encode(xoauth2(ALICE, TOKEN)).decode())  # type: ignore[attr-defined]
        assert client._getline()[0].startswith(b"+OK")  # type: ignore[attr-defined]
        assert client.stat()[0] == 1
    finally:
        client.quit()


def test_greetings_read_like_exchange_online(server: MailServer, client_tls: ssl.SSLContext) -> None:
    imap_client = imap(server, client_tls)
    pop_client = pop(server, client_tls)
    try:
        assert imap_client.welcome.endswith(b"The Microsoft Exchange IMAP4 service is ready.")
        assert "AUTH=XOAUTH2" in imap_client.capabilities and "AUTH=OAUTHBEARER" in imap_client.capabilities
        assert pop_client.getwelcome() == b"+OK The Microsoft Exchange POP3 service is ready."
    finally:
        imap_client.logout()
        pop_client.quit()


def test_a_refused_imap_login_gets_authenticate_failed(
    server: MailServer, client_tls: ssl.SSLContext, directory: FakeDirectory
) -> None:
    directory.allow(ALICE, TOKEN, "pop")  # POP only: IMAP must be refused

    client = imap(server, client_tls)
    with pytest.raises(imaplib.IMAP4.error) as refused:
        client.authenticate("XOAUTH2", lambda _: xoauth2(ALICE, TOKEN))

    assert str(refused.value) == IMAP_REFUSAL
    # The connection stays usable, as with Exchange: the client may try again.
    directory.allow(ALICE, TOKEN, "imap")
    client.authenticate("XOAUTH2", lambda _: xoauth2(ALICE, TOKEN))
    assert client.state == "AUTH"
    client.logout()


def test_a_refused_pop_login_gets_authentication_failure(
    server: MailServer, client_tls: ssl.SSLContext, directory: FakeDirectory
) -> None:
    directory.allow(ALICE, TOKEN, "imap")  # IMAP only: POP must be refused

    client = pop(server, client_tls)
    try:
        with pytest.raises(poplib.error_proto) as refused:
            pop_auth(client, "XOAUTH2", xoauth2(ALICE, TOKEN))
    finally:
        client.close()

    assert refused.value.args[0] == POP_REFUSAL
    assert directory.calls == [(ALICE, TOKEN, "pop")]


def test_mailbox_and_token_reach_authorize_unchanged(
    server: MailServer, client_tls: ssl.SSLContext, directory: FakeDirectory
) -> None:
    mixed_case = "Alice@Contoso.Example"
    long_token = TOKEN + "x" * 3000  # real tokens with many roles run to a few kilobytes
    directory.allow(mixed_case, long_token)

    imap_login(server, client_tls, mixed_case, long_token).logout()
    client = pop(server, client_tls)
    assert pop_auth(client, "XOAUTH2", xoauth2(mixed_case, long_token)).startswith(b"+OK")
    # Case-insensitive like Exchange: the mixed-case login opens alice's maildir.
    assert client.stat()[0] == 1
    client.quit()

    assert directory.calls == [(mixed_case, long_token, "imap"), (mixed_case, long_token, "pop")]


def test_oauthbearer_works_on_both_protocols(
    server: MailServer, client_tls: ssl.SSLContext, directory: FakeDirectory
) -> None:
    directory.allow(BOB, TOKEN)

    client = imap_login(server, client_tls, BOB, TOKEN, mechanism="OAUTHBEARER")
    assert b"Welcome" in read_inbox_over_imap(client)
    client.logout()
    pop_client = pop(server, client_tls)
    assert pop_auth(pop_client, "OAUTHBEARER", oauthbearer(BOB, TOKEN, server.pop_port)).startswith(b"+OK")
    pop_client.quit()

    assert directory.calls == [(BOB, TOKEN, "imap"), (BOB, TOKEN, "pop")]


def test_oauthbearer_refusal_has_no_error_challenge(
    server: MailServer, client_tls: ssl.SSLContext, directory: FakeDirectory
) -> None:
    client = imap(server, client_tls)
    with pytest.raises(imaplib.IMAP4.error) as refused:
        client.authenticate("OAUTHBEARER", lambda _: oauthbearer(BOB, TOKEN, server.imap_port))
    assert str(refused.value) == IMAP_REFUSAL
    client.logout()


def test_plaintext_logins_are_refused_without_asking_authorize(
    server: MailServer, client_tls: ssl.SSLContext, directory: FakeDirectory
) -> None:
    directory.allow(ALICE, TOKEN)

    imap_client = imap(server, client_tls)
    assert "LOGINDISABLED" in imap_client.capabilities
    with pytest.raises(imaplib.IMAP4.error):
        imap_client.login(ALICE, TOKEN)
    with pytest.raises(imaplib.IMAP4.error):
        imap_client.authenticate("PLAIN", lambda _: f"\0{ALICE}\0{TOKEN}".encode())
    imap_client.logout()
    pop_client = pop(server, client_tls)
    with pytest.raises(poplib.error_proto):
        pop_client.user(ALICE)
        pop_client.pass_(TOKEN)
    pop_client.close()

    assert directory.calls == []


def test_one_token_opens_each_of_several_mailboxes(
    server: MailServer, client_tls: ssl.SSLContext, directory: FakeDirectory
) -> None:
    server.add_mailbox(CAROL)  # after start
    for mailbox in (ALICE, BOB, CAROL):
        directory.allow(mailbox, TOKEN)

    for mailbox in (ALICE, BOB, CAROL):
        client = imap_login(server, client_tls, mailbox, TOKEN)
        assert f"To: {mailbox}".encode() in read_inbox_over_imap(client)
        client.logout()
        pop_client = pop(server, client_tls)
        pop_auth(pop_client, "XOAUTH2", xoauth2(mailbox, TOKEN))
        assert f"To: {mailbox}".encode() in pop_client.retr(1)[1]
        pop_client.quit()

    # A token allowed on some mailboxes is refused on the others.
    with pytest.raises(imaplib.IMAP4.error):
        imap_login(server, client_tls, "dave@contoso.example", TOKEN)


def test_an_authorize_crash_is_a_temporary_failure(
    server: MailServer, client_tls: ssl.SSLContext, directory: FakeDirectory
) -> None:
    directory.fail_with = RuntimeError("state unavailable")

    client = imap(server, client_tls)
    with pytest.raises(imaplib.IMAP4.error) as failed:
        client.authenticate("XOAUTH2", lambda _: xoauth2(ALICE, TOKEN))
    client.logout()

    assert str(failed.value) == "[CONTACTADMIN] Temporary authentication failure."


def test_the_token_is_not_logged(
    server: MailServer, client_tls: ssl.SSLContext, directory: FakeDirectory, caplog: pytest.LogCaptureFixture
) -> None:
    secret_token = "tok-" + os.urandom(12).hex()
    caplog.set_level(logging.DEBUG)

    client = imap(server, client_tls)
    with pytest.raises(imaplib.IMAP4.error):
        client.authenticate("XOAUTH2", lambda _: xoauth2(ALICE, secret_token))
    client.logout()

    assert any("refused" in r.getMessage() and ALICE in r.getMessage() for r in caplog.records)
    assert secret_token not in caplog.text
    assert secret_token not in server.log_file.read_text()


def test_add_mailbox_refuses_names_that_are_not_addresses(server: MailServer) -> None:
    for bad in ("../etc@x", "no-at-sign", "a/b@contoso.example", ""):
        with pytest.raises(ValueError):
            server.add_mailbox(bad)


# -- lifecycle -------------------------------------------------------------------------------------


def new_server(base: Path, tls_files: tuple[Path, Path, Path], **ports: int) -> MailServer:
    return MailServer(base, cert_file=tls_files[0], key_file=tls_files[1], authorize=lambda *_: None, **ports)


def refuses_connections(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


def test_stop_ends_every_dovecot_process_and_frees_the_ports(
    tmp_path: Path, tls_files: tuple[Path, Path, Path], client_tls: ssl.SSLContext
) -> None:
    srv = new_server(tmp_path, tls_files)
    srv.add_mailbox(ALICE)
    srv.start()
    imap_login(srv, client_tls, ALICE, TOKEN)  # leaves a logged-in imap process behind
    process = srv._process
    ports = (srv.imap_port, srv.pop_port)
    assert process is not None

    srv.stop()
    srv.stop()  # idempotent

    assert all(refuses_connections(port) for port in ports)
    assert live_processes_in_group(process.pid) == []


def live_processes_in_group(pgid: int) -> list[int]:
    """Processes of the group that are not zombies (a container's init may be slow to reap those)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        state, group = fields[0], int(fields[2])
        if group == pgid and state != "Z":
            found.append(int(stat.parent.name))
    return found


def test_fixed_ports_are_used_and_a_busy_port_is_a_clear_error(
    tmp_path: Path, tls_files: tuple[Path, Path, Path]
) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        srv = new_server(tmp_path, tls_files, imap_port=taken)
        try:
            with pytest.raises(MailServerError, match="Address already in use"):
                srv.start()
        finally:
            srv.stop()
    assert not srv.running

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    srv = new_server(tmp_path, tls_files, imap_port=free)
    srv.start()
    try:
        assert srv.imap_port == free and srv.pop_port not in (0, free)
        assert not refuses_connections(free)
    finally:
        srv.stop()


def test_a_picked_port_taken_before_dovecot_binds_it_is_picked_again(
    tmp_path: Path, tls_files: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        picks = iter([busy.getsockname()[1]])
        real_free_port = mail._free_port
        monkeypatch.setattr(mail, "_free_port", lambda: next(picks, None) or real_free_port())
        srv = new_server(tmp_path, tls_files)
        srv.start()
        try:
            assert busy.getsockname()[1] not in (srv.imap_port, srv.pop_port)
            assert not refuses_connections(srv.imap_port)
        finally:
            srv.stop()


def test_the_same_free_port_picked_twice_still_gives_imap_and_pop_ports_of_their_own(
    tmp_path: Path, tls_files: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The kernel handed one free port out twice in CI, and Dovecot refused "duplicate listener".
    real_free_port = mail._free_port
    first = real_free_port()
    picks = iter([first, first])
    monkeypatch.setattr(mail, "_free_port", lambda: next(picks, None) or real_free_port())
    srv = new_server(tmp_path, tls_files)
    srv.start()
    try:
        assert srv.imap_port == first and srv.pop_port != first
        assert not refuses_connections(srv.imap_port)
        assert not refuses_connections(srv.pop_port)
    finally:
        srv.stop()


def test_missing_dovecot_is_a_clear_error(
    tmp_path: Path, tls_files: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mail, "_DOVECOT_CANDIDATES", ("/nonexistent/dovecot",))
    srv = new_server(tmp_path, tls_files)
    with pytest.raises(MailServerError, match="Dovecot is not installed"):
        srv.start()


def test_start_twice_is_refused(tmp_path: Path, tls_files: tuple[Path, Path, Path]) -> None:
    srv = new_server(tmp_path, tls_files)
    with srv, pytest.raises(MailServerError, match="already running"):
        srv.start()
