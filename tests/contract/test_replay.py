"""Every recorded exchange with the real services, replayed against the sandbox (docs/recordings.md).

A failure lists where the sandbox answers differently from the recording: fix the sandbox (with the
recording as its source), or, after review, accept the difference in the fixture with a reason.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from tests.contract.recording import RECORDED, load_fixtures
from tests.contract.replay import check, fresh_sandbox

RECORDINGS = Path(__file__).parent / "recordings"
FIXTURES = load_fixtures(RECORDINGS)
HTTP = [(p, f) for p, f in FIXTURES if "request" in f]
SESSIONS = [(p, f) for p, f in FIXTURES if "transcript" in f]


def test_every_fixture_says_honestly_where_it_comes_from():
    assert FIXTURES, f"no fixtures under {RECORDINGS}"
    for path, fixture in FIXTURES:
        origin = fixture.get("origin", "")
        assert origin == RECORDED or origin.startswith("documented example: "), path.name
        if origin != RECORDED:
            assert "://" in origin, f"{path.name}: a documented example names its source"
        for accepted in fixture.get("accepted_differences", []):
            assert accepted.get("reason"), f"{path.name}: an accepted difference needs its reason"


@pytest.mark.parametrize("fixture", [f for _, f in HTTP], ids=[p.stem for p, _ in HTTP])
def test_the_sandbox_answers_as_recorded(fixture: dict[str, Any], tmp_path: Path):
    with fresh_sandbox(tmp_path) as sandbox:
        assert check(fixture, sandbox) == []
        sandbox.assert_all_modelled()


def test_every_fixture_is_replayed():
    assert len(HTTP) + len(SESSIONS) == len(FIXTURES), "a fixture is neither an HTTP exchange nor a session"


@pytest.mark.parametrize("fixture", [f for _, f in SESSIONS], ids=[p.stem for p, _ in SESSIONS])
def test_dovecot_answers_the_session_as_recorded(fixture: dict[str, Any], tmp_path: Path):
    with fresh_sandbox(tmp_path, mail=True) as sandbox:
        assert check(fixture, sandbox) == []


def test_a_refusal_planted_in_a_session_is_reported(tmp_path: Path):
    [fixture] = [
        copy.deepcopy(f) for p, f in SESSIONS if p.name == "documented-imap-authenticate-xoauth2.json"
    ]
    fixture["transcript"][-1]["server"] = "A01 NO AUTHENTICATE failed."
    with fresh_sandbox(tmp_path, mail=True) as sandbox:
        [difference] = check(fixture, sandbox)
    assert difference.startswith("line 4: recorded NO") and "sandbox OK" in difference


def planted(name: str, change: Any) -> dict[str, Any]:
    [fixture] = [copy.deepcopy(f) for p, f in HTTP if p.name == name]
    change(fixture["response"])
    return fixture


@pytest.mark.parametrize(
    ("name", "change", "reported"),
    [
        (
            "documented-graph-post-approleassignedto.json",
            lambda r: r.update(status=200),
            "status: recorded 200, sandbox 201",
        ),
        (
            "documented-entra-token-invalid-scope.json",
            lambda r: r["body"].update(error="invalid_request"),
            "error code: recorded 'invalid_request', sandbox 'invalid_resource'",
        ),
        (
            "documented-keyvault-set-secret.json",
            lambda r: r["body"].update(managed=True),
            "missing key: managed",
        ),
        (
            "documented-entra-token-client-credentials.json",
            lambda r: r["headers"].update({"Retry-After": "5"}),
            "header retry-after: recorded, sandbox sent none",
        ),
    ],
)
def test_a_difference_planted_in_a_fixture_is_reported(name: str, change: Any, reported: str, tmp_path: Path):
    with fresh_sandbox(tmp_path) as sandbox:
        assert reported in check(planted(name, change), sandbox)


def test_an_accepted_difference_is_not_reported_until_it_goes_away(tmp_path: Path):
    fixture = planted("documented-graph-post-approleassignedto.json", lambda r: r.update(status=200))
    fixture["accepted_differences"] = [
        {"difference": "status: recorded 200, sandbox 201", "reason": "planted for this test"}
    ]
    with fresh_sandbox(tmp_path / "a") as sandbox:
        assert check(fixture, sandbox) == []
    fixture["response"]["status"] = 201  # the sandbox now agrees: the acceptance is stale
    with fresh_sandbox(tmp_path / "b") as sandbox:
        assert check(fixture, sandbox) == [
            "accepted difference no longer occurs: status: recorded 200, sandbox 201"
        ]


def test_fixtures_hold_no_token_or_secret():
    for path, fixture in FIXTURES:
        text = json.dumps(fixture)
        assert "eyJ" not in text, f"{path.name} holds what looks like a JWT"
