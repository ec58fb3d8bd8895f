"""The function app's managed identity: one token per resource per worker, shared by every activity
and event loop; an onboarded app's credential is made, used and closed within one activity."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any, ClassVar

import jwt
import pytest
from azure.core.credentials import AccessToken

from onboarding import steps
from onboarding.adapters import identity
from onboarding.domain import AppRegistration, MailboxResult, MailboxState, SecretRef
from onboarding.errors import TransientError
from tests.unit.fakes import FakeServices, settings

NOW = 1_800_000_000.0


class CountingCredential:
    """Stands for azure-identity's credential: each ``get_token`` is a request to the endpoint."""

    made: ClassVar[list[CountingCredential]] = []

    def __init__(self, token: str = "", *, fail: Exception | None = None) -> None:
        self.token, self.fail = token, fail
        self.requests: list[tuple[str, ...]] = []
        self.closed = False
        CountingCredential.made.append(self)

    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.requests.append(scopes)
        await asyncio.sleep(0.01)  # other callers arrive while the request is out
        if self.fail:
            raise self.fail
        return AccessToken(self.token or f"token-for-{scopes[0]}", int(NOW) + 3600)

    async def close(self) -> None:
        self.closed = True


@pytest.fixture
def endpoint(monkeypatch: pytest.MonkeyPatch) -> list[CountingCredential]:
    CountingCredential.made = []
    monkeypatch.setattr(identity, "function_credential", lambda settings: CountingCredential())
    return CountingCredential.made


def requests(made: list[CountingCredential]) -> list[tuple[str, ...]]:
    return [scopes for credential in made for scopes in credential.requests]


async def test_concurrent_activities_on_several_loops_fetch_each_resource_once(
    endpoint: list[CountingCredential],
) -> None:
    worker = identity.WorkerCredential(settings(), clock=lambda: NOW)
    scopes = ("https://graph.test/.default", "https://exchange.test/.default")

    async def activity() -> list[str]:
        return [(await worker.get_token(scope)).token for scope in scopes]

    other_loop: list[list[str]] = []
    thread = threading.Thread(target=lambda: other_loop.append(asyncio.run(activity())))
    thread.start()
    results = await asyncio.gather(*(activity() for _ in range(20)))
    await asyncio.to_thread(thread.join)
    assert sorted(requests(endpoint)) == sorted((s,) for s in scopes)
    assert all(r == [f"token-for-{s}" for s in scopes] for r in [*results, *other_loop])
    assert all(c.closed for c in endpoint)  # nothing bound to an event loop is kept


async def test_a_token_near_its_expiry_is_fetched_again(endpoint: list[CountingCredential]) -> None:
    now = [NOW]
    worker = identity.WorkerCredential(settings(), clock=lambda: now[0])
    await worker.get_token("s")
    now[0] = NOW + 3600 - 60  # inside the refresh margin
    await worker.get_token("s")
    assert len(requests(endpoint)) == 2


async def test_a_failed_fetch_is_not_remembered(monkeypatch: pytest.MonkeyPatch) -> None:
    outcomes = [CountingCredential(fail=OSError("unreachable")), CountingCredential()]
    monkeypatch.setattr(identity, "function_credential", lambda settings: outcomes.pop(0))
    worker = identity.WorkerCredential(settings(), clock=lambda: NOW)
    with pytest.raises(OSError):
        await worker.get_token("s")
    assert (await worker.get_token("s")).token == "token-for-s"


def test_one_worker_credential_per_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IDENTITY_ENDPOINT", "http://127.0.0.1:1/msi/token")
    monkeypatch.setenv("IDENTITY_HEADER", "first")
    first = identity.worker_credential(settings())
    assert identity.worker_credential(settings()) is first
    monkeypatch.setenv("IDENTITY_HEADER", "second")  # another identity (another sandbox, in tests)
    assert identity.worker_credential(settings()) is not first


async def test_each_verification_activity_makes_and_closes_its_own_app_credential(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    made: list[tuple[str, CountingCredential]] = []
    token = jwt.encode({"roles": ["IMAP.AccessAsApp"], "appid": "app-1"}, "k" * 32, algorithm="HS256")

    def app_credential(settings: Any, tenant_id: str, client_id: str, secret: str) -> CountingCredential:
        credential = CountingCredential(token)
        made.append((secret, credential))
        return credential

    monkeypatch.setattr(identity, "app_secret_credential", app_credential)
    svc = FakeServices(settings())
    svc.mail_probe.open.add(("a@contoso.test", "IMAP"))
    app = AppRegistration(object_id="obj-1", app_id="app-1", unique_name="u")
    for secret in ("first-secret", "second-secret"):  # two onboardings' verifications
        version = await svc.vault.put(
            f"s-{secret}",
            json.dumps({"clientId": "app-1", "clientSecret": secret}),
            content_type="x",
            expires_on=steps.utcnow(),
            tags={},
        )
        ref = SecretRef(vault_uri="v", name=f"s-{secret}", version=version, expires_on="", key_id="k")
        [result] = await steps.verify_mailboxes(
            svc, tenant_id="t", app=app, secret=ref, protocols=["IMAP"], mailboxes=["a@contoso.test"]
        )
        assert result.state is MailboxState.VERIFIED
    assert [secret for secret, _ in made] == ["first-secret", "second-secret"]
    assert made[0][1] is not made[1][1] and all(c.closed for _, c in made)


async def verify_one(svc: FakeServices, client_id: str, protocols: list[str], mailbox: str) -> MailboxResult:
    """``verify_mailboxes`` on one mailbox, with a client secret for ``client_id`` in the vault."""
    document = json.dumps({"clientId": client_id, "clientSecret": "x"})
    version = await svc.vault.put("s", document, content_type="x", expires_on=steps.utcnow(), tags={})
    ref = SecretRef(vault_uri="v", name="s", version=version, expires_on="", key_id="k")
    [result] = await steps.verify_mailboxes(
        svc,
        tenant_id="t",
        app=AppRegistration("o", client_id, "u"),
        secret=ref,
        protocols=protocols,
        mailboxes=[mailbox],
    )
    return result


async def test_an_app_credential_refused_for_now_leaves_the_mailboxes_granted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def app_credential(*args: Any) -> CountingCredential:
        return CountingCredential(fail=TransientError("not yet"))

    monkeypatch.setattr(identity, "app_secret_credential", app_credential)
    monkeypatch.setattr(identity, "map_identity_error", lambda exc: exc)
    svc = FakeServices(settings())
    result = await verify_one(svc, "a", ["IMAP"], "m")
    assert result.state is MailboxState.GRANTED and svc.mail_probe.logins == []


async def test_a_mailbox_is_logged_in_to_over_one_protocol_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """One connection to a mailbox at a time: its IMAP login ends before its POP login starts."""
    roles = ["IMAP.AccessAsApp", "POP.AccessAsApp"]
    token = jwt.encode({"roles": roles, "appid": "app-1"}, "k" * 32, algorithm="HS256")
    monkeypatch.setattr(identity, "app_secret_credential", lambda *args: CountingCredential(token))
    svc = FakeServices(settings())
    svc.mail_probe.open |= {("a@contoso.test", "IMAP"), ("a@contoso.test", "POP")}
    open_now: list[str] = []
    began: list[str] = []
    most = 0
    answer = svc.mail_probe.__call__

    async def login(host: str, port: int, protocol: Any, mailbox: str, token: str, **kw: Any) -> Any:
        nonlocal most
        open_now.append(str(protocol))
        began.append(str(protocol))
        most = max(most, len(open_now))
        await asyncio.sleep(0.01)  # a login takes a while: another one started now would overlap it
        open_now.remove(str(protocol))
        return await answer(host, port, protocol, mailbox, token, **kw)

    monkeypatch.setattr(svc, "mail_probe", login)
    result = await verify_one(svc, "app-1", ["IMAP", "POP"], "a@contoso.test")
    assert (result.state, result.protocols) == (MailboxState.VERIFIED, {"IMAP": True, "POP": True})
    assert most == 1 and began == ["IMAP", "POP"]
