"""Strictness: a request the sandbox does not model is answered 501 naming it, and fails its test."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from sandbox import Sandbox

ROOT = Path(__file__).resolve().parents[2]


def graph(sandbox: Sandbox, token: str, path: str, **kwargs: object) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}", **kwargs.pop("headers", {})}  # type: ignore[dict-item]
    return httpx.request(
        str(kwargs.pop("method", "GET")),
        sandbox.env["GRAPH_ENDPOINT"] + "/v1.0" + path,
        headers=headers,
        verify=sandbox.client_ssl_context(),
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    ("what", "request_args", "named"),
    [
        ("an unknown path", {"path": "/groups"}, "GET /v1.0/groups"),
        ("an unknown method", {"path": "/applications", "method": "PUT"}, "PUT /v1.0/applications"),
        (
            "an unknown $filter form",
            {"path": "/applications", "params": {"$filter": "displayName ne 'x'"}},
            "$filter clause",
        ),
        ("an unmodelled query option", {"path": "/applications", "params": {"$expand": "owners"}}, "$expand"),
        (
            "a header that changes semantics",
            {"path": "/applications", "headers": {"ConsistencyLevel": "eventual"}},
            "ConsistencyLevel",
        ),
    ],
)
def test_graph_answers_501_naming_what_it_does_not_model(
    sandbox: Sandbox, mi_token: Callable[[str], str], what: str, request_args: dict, named: str
):
    response = graph(sandbox, mi_token("graph"), **request_args)
    assert response.status_code == 501, what
    error = response.json()["error"]
    assert error["code"] == "NotModelledBySandbox"
    assert named in error["message"]
    [recorded] = sandbox.acknowledge_unmodelled()
    assert recorded.service == "graph" and recorded.status == 501
    assert sandbox.unmodelled_requests() == []


def test_modelled_graph_requests_are_not_flagged(sandbox: Sandbox, mi_token: Callable[[str], str]):
    response = graph(
        sandbox, mi_token("graph"), "/applications", params={"$filter": "displayName eq 'x'", "$top": "5"}
    )
    assert response.status_code == 200
    assert sandbox.unmodelled_requests() == []


def test_key_vault_answers_501_for_an_unknown_route(sandbox: Sandbox):
    response = httpx.get(
        sandbox.env["KEY_VAULT_URI"] + "certificates/x",
        params={"api-version": "7.4"},
        verify=sandbox.client_ssl_context(),
    )
    assert response.status_code == 501
    assert "GET /certificates/x" in response.json()["error"]["message"]
    [recorded] = sandbox.acknowledge_unmodelled()
    assert recorded.service == "keyvault"


def test_unacknowledged_unmodelled_requests_fail_the_check_naming_them(
    sandbox: Sandbox, mi_token: Callable[[str], str]
):
    graph(sandbox, mi_token("graph"), "/groups")
    with pytest.raises(AssertionError, match=r"graph: GET /v1\.0/groups"):
        sandbox.assert_all_modelled()
    sandbox.acknowledge_unmodelled()
    sandbox.assert_all_modelled()


def test_an_unmodelled_request_fails_the_test_that_made_it(tmp_path: Path):
    """A test that passes on its own assertions still fails, at teardown, when it asked the sandbox
    for something the sandbox does not model; its neighbour that did not stays green."""
    (tmp_path / "conftest.py").write_text('pytest_plugins = ["sandbox.pytest_plugin"]\n')
    (tmp_path / "test_inner.py").write_text(
        textwrap.dedent(
            """
            import httpx

            def test_asks_for_groups(sandbox):
                r = httpx.get(sandbox.env["GRAPH_ENDPOINT"] + "/v1.0/groups", verify=sandbox.client_ssl_context())
                assert r.status_code == 501  # passes on its own

            def test_asks_nothing(sandbox):
                assert sandbox.unmodelled_requests() == []
            """
        )
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly", str(tmp_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "2 passed, 1 error" in run.stdout, run.stdout + run.stderr
    assert "ERROR at teardown of test_asks_for_groups" in run.stdout
    assert "GET /v1.0/groups" in run.stdout
