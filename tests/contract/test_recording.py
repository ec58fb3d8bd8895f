"""The recording mode, run against the sandbox: the live scenario's code and the recorder are tested
before anyone points them at a real tenant (tests/live/test_record.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from onboarding.adapters.identity import function_credential
from onboarding.settings import Settings
from sandbox import Sandbox
from tests.contract import scenario
from tests.contract.recording import RECORDED, REDACTED, Recorder, Redactor, load_fixtures
from tests.contract.replay import check, fresh_sandbox


@pytest.fixture
async def recorded(
    sandbox: Sandbox, sandbox_env: dict[str, str], tmp_path: Path
) -> tuple[Path, scenario.Made]:
    settings = Settings.from_env(sandbox.env)
    made = scenario.Made(tenant_id=sandbox.tenant_id, mailbox="support@sandbox.example")
    redactor = Redactor()
    endpoints = {
        "entra": settings.authority_host,
        "graph": settings.graph_endpoint,
        "exchange": settings.exchange_endpoint,
        "keyvault": settings.key_vault_uri,
    }
    recorder = Recorder(tmp_path / "recordings", endpoints, redactor)

    def learn(m: scenario.Made) -> None:
        redactor.aliases.update(m.aliases())
        redactor.secrets[:] = m.secrets

    credential = function_credential(settings)
    try:
        with recorder.install():
            await scenario.run(settings, credential, made, suffix="selftest", on_progress=learn)
    finally:
        await credential.close()
    return tmp_path / "recordings", made


def texts(directory: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(directory.glob("*.json"))}


async def test_the_scenario_onboards_and_undoes_one_app(recorded, sandbox: Sandbox):
    _, made = recorded
    assert made.logins == {"IMAP": True, "POP": True}
    state = sandbox.state
    assert [a for a in state.applications(include_deleted=False) if a.app_id == made.app_id] == []
    assert state.exchange_service_principals() == []
    assert state.mailbox_permissions() == []


async def test_every_service_is_recorded_one_fixture_per_exchange(recorded):
    directory, _ = recorded
    fixtures = load_fixtures(directory)
    assert {f["service"] for _, f in fixtures} == {"entra", "graph", "exchange", "keyvault", "imap", "pop"}
    assert all(f["origin"] == RECORDED for _, f in fixtures)
    new_sp = [f for _, f in fixtures if f.get("request", {}).get("path") == "/v1.0/servicePrincipals"]
    assert any(f["request"]["method"] == "POST" and f["response"]["status"] == 201 for f in new_sp)
    imap = next(f for _, f in fixtures if f["service"] == "imap")
    sent = [line["client"] for line in imap["transcript"] if "client" in line]
    assert any(c.endswith(f"AUTHENTICATE XOAUTH2 {REDACTED}") for c in sent)  # SASL-IR, redacted


async def test_no_secret_token_or_real_id_of_the_scenario_reaches_a_fixture(recorded, sandbox: Sandbox):
    directory, made = recorded
    needles = {
        **{f"secret {i}": s for i, s in enumerate(sandbox.state.issued_secrets())},
        **{f"token {i}": t for i, t in enumerate(sandbox.state.issued_tokens())},
        "app id": made.app_id,
        "service principal id": made.sp_id,
        "tenant id": made.tenant_id,
        "identity header": sandbox.env["IDENTITY_HEADER"],
    }
    assert len(needles) > 4
    leaks = [
        (what, name) for name, text in texts(directory).items() for what, n in needles.items() if n in text
    ]
    assert leaks == []
    assert any("{app_id}" in text for text in texts(directory).values())


async def test_a_recorded_token_request_replays_on_a_fresh_sandbox(recorded, tmp_path: Path):
    directory, _ = recorded
    [token] = [
        f
        for _, f in load_fixtures(directory)
        if f["service"] == "entra" and f["request"]["path"].endswith("/oauth2/v2.0/token")
    ][:1]
    assert token["request"]["body"]["form"]["client_secret"] == REDACTED
    with fresh_sandbox(tmp_path / "replay") as sandbox:
        assert check(token, sandbox) == []


def test_an_authenticate_line_and_a_bare_sasl_response_are_redacted():
    redactor = Redactor()
    import base64

    payload = base64.b64encode(b"user=a@b\x01auth=Bearer abc.def.ghi\x01\x01").decode()
    assert redactor.line(f"A01 AUTHENTICATE XOAUTH2 {payload}\r\n") == f"A01 AUTHENTICATE XOAUTH2 {REDACTED}"
    assert redactor.line(payload) == REDACTED
    assert redactor.line("A01 OK AUTHENTICATE completed.") == "A01 OK AUTHENTICATE completed."
    body = redactor.body(
        json.dumps({"access_token": "x", "error": {"code": "E"}}).encode(), "application/json"
    )
    assert body == {"access_token": REDACTED, "error": {"code": "E"}}


async def test_recorded_imap_and_pop_sessions_replay_on_a_fresh_sandbox(recorded, tmp_path: Path):
    directory, _ = recorded
    sessions = [f for _, f in load_fixtures(directory) if "transcript" in f]
    assert {f["service"] for f in sessions} == {"imap", "pop"}
    with fresh_sandbox(tmp_path / "replay", mail=True) as sandbox:
        assert [check(f, sandbox) for f in sessions] == [[], []]
