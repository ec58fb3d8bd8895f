"""Faults on demand: seeded error statuses with Retry-After, dropped connections, and a request log that
never holds a secret or a token."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from sandbox import Sandbox, SandboxConfig


@pytest.fixture
def sandbox_config(tmp_path: Path) -> SandboxConfig:
    return SandboxConfig(base_dir=tmp_path / "sb", start_mail=False, seed=7)


def statuses(sb: Sandbox, token: str, n: int) -> list[tuple[int, str | None]]:
    url = f"{sb.env['GRAPH_ENDPOINT']}/v1.0/applications"
    with httpx.Client(verify=sb.client_ssl_context()) as client:
        out = []
        for _ in range(n):
            r = client.get(url, headers={"Authorization": f"Bearer {token}"})
            out.append((r.status_code, r.headers.get("Retry-After")))
        return out


def test_seeded_error_rate_gives_the_configured_statuses_reproducibly(
    sandbox: Sandbox, mi_token: Callable[[str], str], tmp_path: Path
) -> None:
    token = mi_token("graph")
    sandbox.faults.graph.configure(error_rate=0.5, errors=(429, 503), retry_after=2)
    seen = statuses(sandbox, token, 40)
    assert {s for s, _ in seen} == {200, 429, 503}
    assert all(ra == "2" for s, ra in seen if s in (429, 503))
    assert all(ra is None for s, ra in seen if s == 200)
    body = httpx.get(
        f"{sandbox.env['GRAPH_ENDPOINT']}/v1.0/applications",
        headers={"Authorization": f"Bearer {token}"},
        verify=sandbox.client_ssl_context(),
    )
    if body.status_code != 200:
        assert body.json()["error"]["code"] in {"TooManyRequests", "serviceNotAvailable"}
    logged = [(e.status, e.retry_after) for e in sandbox.state.request_log() if e.service == "graph"][:40]
    assert logged == seen
    # The same seed replays the same faults in a new tenant.
    with Sandbox(SandboxConfig(base_dir=tmp_path / "again", start_mail=False, seed=7)) as again:
        again.faults.graph.configure(error_rate=0.5, errors=(429, 503), retry_after=2)
        assert statuses(again, again.mint_token_for_tests(roles=["Application.Read.All"]), 40) == seen
    sandbox.faults.graph.reset()
    assert {s for s, _ in statuses(sandbox, token, 5)} == {200}


def test_dropped_connections(sandbox: Sandbox, mi_token: Callable[[str], str]) -> None:
    sandbox.faults["keyvault"].configure(error_rate=1.0, errors=("drop",))
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{sandbox.env['KEY_VAULT_URI']}secrets", verify=sandbox.client_ssl_context())
    assert [e.fault for e in sandbox.state.request_log() if e.service == "keyvault"] == ["drop"]


def test_faults_reject_unknown_settings(sandbox: Sandbox) -> None:
    with pytest.raises(ValueError):
        sandbox.faults.exchange.configure(error_rate=2)
    with pytest.raises(ValueError):
        sandbox.faults.exchange.configure(errors=(200,))
    with pytest.raises(KeyError):
        sandbox.faults["smtp"]


def test_the_request_log_holds_no_secret_or_token(sandbox: Sandbox, mi_token: Callable[[str], str]) -> None:
    app_id, _, secret = sandbox.create_client_app("reader", roles=["IMAP.AccessAsApp"])
    verify = sandbox.client_ssl_context()
    token_url = f"{sandbox.env['ENTRA_AUTHORITY_HOST']}/{sandbox.tenant_id}/oauth2/v2.0/token"
    form = {"grant_type": "client_credentials", "client_id": app_id, "client_secret": secret}
    httpx.post(
        token_url, data={**form, "scope": f"{sandbox.env['EXCHANGE_ENDPOINT']}/.default"}, verify=verify
    )
    httpx.post(token_url, data={**form, "client_secret": "wrong", "scope": "x/.default"}, verify=verify)
    graph_token = mi_token("graph")
    httpx.get(
        f"{sandbox.env['GRAPH_ENDPOINT']}/v1.0/applications?$filter=appId eq '{app_id}'",
        headers={"Authorization": f"Bearer {graph_token}"},
        verify=verify,
    )
    log = repr(sandbox.state.request_log()) + repr(sandbox.state.applications())
    leaked = [s for s in sandbox.state.issued_secrets() + sandbox.state.issued_tokens() if s in log]
    assert sandbox.state.issued_tokens() and sandbox.state.issued_secrets() and leaked == []
    assert {e.caller_app_id for e in sandbox.state.request_log() if e.service == "entra"} == {app_id}
