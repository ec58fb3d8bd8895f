"""The operator CLI (cli/) against a fake API: httpx.MockTransport answers as docs/api.md says."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from cli.api import ExitCode
from cli.app import Wiring, app

BASE = "http://api.test"
KEY = "function-key-that-must-never-be-printed"
TOKEN = "eyJ0eXAi.token-that-must-never-be-printed"
ID = "onb-" + "a" * 32
STEPS = [
    ("resolve_exchange", "Find Exchange Online and its permissions"),
    ("register_app", "Register the single-tenant app"),
    ("admin_consent", "Admin consent"),
]


def view(status: str = "running", **changes: Any) -> dict[str, Any]:
    states = {"running": ["done", "running", "pending"], "waiting": ["done", "done", "waiting"]}.get(
        status, ["done", "done", "done"]
    )
    body: dict[str, Any] = {
        "id": ID,
        "status": status,
        "createdAt": "2026-12-02T07:00:00+00:00",
        "updatedAt": "2026-12-02T07:01:00+00:00",
        "request": {"displayName": "Helpdesk connector", "protocols": ["IMAP"], "consentMode": "consent"},
        "externalReference": "CHG-1",
        "steps": [
            {"name": n, "title": t, "state": s, "at": None, "detail": ""}
            for (n, t), s in zip(STEPS, states, strict=True)
        ],
        "waitingFor": None,
        "mailboxes": {"total": 3, "counts": {"verified": 2, "imap_disabled": 1}, "results": None},
        "errors": [],
        "app": None,
        "secret": None,
        "compensation": [],
    }
    body.update(changes)
    return body


@dataclass
class FakeApi:
    """Answers requests from a script: a list of (method, path) -> response builders, in order."""

    routes: dict[tuple[str, str], list[Callable[[httpx.Request], httpx.Response]]]
    seen: list[httpx.Request] = field(default_factory=list)
    sleeps: list[float] = field(default_factory=list)
    now: float = 0.0

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        answers = self.routes.get((request.method, request.url.path))
        if not answers:
            return httpx.Response(
                404, json={"title": "Onboarding not found", "detail": "No onboarding has this id."}
            )
        return answers.pop(0)(request) if len(answers) > 1 else answers[0](request)

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def run(
        self, *args: str, env: dict[str, str] | None = None, input: str | None = None, **wiring: Any
    ) -> Any:
        obj = Wiring(
            transport=httpx.MockTransport(self.handle), sleep=self.sleep, monotonic=lambda: self.now, **wiring
        )
        environment = {"MAILONBOARD_URL": BASE, "MAILONBOARD_FUNCTION_KEY": KEY, **(env or {})}
        result = CliRunner().invoke(app, list(args), obj=obj, env=environment, input=input)
        for text in (result.stdout, result.stderr):
            assert KEY not in text and TOKEN not in text
        return result


def answer(status: int, body: Any = None, **headers: str) -> Callable[[httpx.Request], httpx.Response]:
    return lambda _request: httpx.Response(status, json=body, headers=headers)


def test_list_follows_every_continuation_page_on_the_configured_host_with_the_filters():
    page1: dict[str, Any] = {
        "items": [{"id": "onb-1", "status": "waiting", "externalReference": "CHG-1", "displayName": "A"}],
        "continuationToken": "t1",
        # The API builds absolute links from PUBLIC_BASE_URL; the key must not go to that host.
        "nextLink": "https://elsewhere.example/api/v1/onboardings?pageSize=2&continuationToken=t1",
    }
    page2: dict[str, Any] = {
        "items": [{"id": "onb-2", "status": "failed"}],
        "continuationToken": None,
        "nextLink": None,
    }
    fake = FakeApi({("GET", "/api/v1/onboardings"): [answer(200, page1), answer(200, page2)]})

    result = fake.run(
        "--json", "list", "--status", "waiting,failed", "--external-reference", "CHG-1", "--page-size", "2"
    )

    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == {"items": page1["items"] + page2["items"], "continuationToken": None}
    first, second = fake.seen
    assert dict(first.url.params) == {
        "pageSize": "2",
        "status": "waiting,failed",
        "externalReference": "CHG-1",
    }
    assert second.url.host == "api.test" and dict(second.url.params) == {
        "pageSize": "2",
        "continuationToken": "t1",
    }
    assert all(r.headers["x-functions-key"] == KEY for r in fake.seen)


def test_list_stopped_by_max_pages_says_where_to_resume():
    page = {
        "items": [{"id": "onb-1", "status": "running"}],
        "continuationToken": "t1",
        "nextLink": f"{BASE}/x",
    }
    fake = FakeApi({("GET", "/api/v1/onboardings"): [answer(200, page)]})

    result = fake.run("list", "--max-pages", "1")

    assert result.exit_code == 0
    assert "onb-1" in result.stdout and "running" in result.stdout
    assert "--continuation-token t1" in result.stderr
    assert len(fake.seen) == 1


def test_show_prints_the_steps_as_a_table_and_the_mailboxes_per_state():
    fake = FakeApi({("GET", f"/api/v1/onboardings/{ID}"): [answer(200, view("waiting"))]})

    result = fake.run("show", ID, env={"COLUMNS": "160"})

    assert result.exit_code == 0, result.stderr
    assert fake.seen[0].url.params["view"] == "current"  # 200 at any time, not the 202 of a poll
    lines = result.stdout.splitlines()
    consent = next(line for line in lines if "Admin consent" in line)
    assert "waiting" in consent
    assert any("Register the single-tenant app" in line and "done" in line for line in lines)
    assert any("imap_disabled" in line and "1" in line for line in lines)
    assert any("verified" in line and "2" in line for line in lines)


def test_show_names_the_principal_that_may_read_the_secret():
    principal = "5b1c6f0e-aaaa-4000-8000-000000000001"
    body = view("succeeded")
    body["secret"] = {
        "latestSecretUri": "https://vault.sandbox.example/secrets/mail-app-x",
        "expiresOn": "2030-01-01T00:00:00+00:00",
        "readers": [{"principalId": principal, "role": "Key Vault Secrets User", "scope": "secret"}],
    }
    fake = FakeApi({("GET", f"/api/v1/onboardings/{ID}"): [answer(200, body)]})

    result = fake.run("show", ID, env={"COLUMNS": "200"})

    assert result.exit_code == 0, result.stderr
    read_by = next(line for line in result.stdout.splitlines() if "Read by" in line)
    assert principal in read_by and "Key Vault Secrets User" in read_by


def test_show_json_is_the_api_view_unchanged():
    body = view("succeeded")
    fake = FakeApi({("GET", f"/api/v1/onboardings/{ID}"): [answer(200, body)]})

    result = fake.run("--json", "show", ID)

    assert json.loads(result.stdout) == body


def test_wait_polls_as_retry_after_asks_until_the_final_answer():
    fake = FakeApi(
        {
            ("GET", f"/api/v1/onboardings/{ID}"): [
                answer(202, view("running"), **{"Retry-After": "7"}),
                answer(429, {"title": "Too many requests"}, **{"Retry-After": "30"}),
                answer(202, view("waiting"), **{"Retry-After": "3"}),
                answer(200, view("succeeded")),
            ]
        }
    )

    result = fake.run("wait", ID)

    assert result.exit_code == ExitCode.OK, result.stderr
    assert fake.sleeps == [7, 30, 3]
    assert "succeeded" in result.stdout


@pytest.mark.parametrize(
    ("outcome", "code"),
    [("partial", ExitCode.PARTIAL), ("failed", ExitCode.UNSUCCESSFUL), ("cancelled", ExitCode.UNSUCCESSFUL)],
)
def test_wait_exit_code_tells_the_outcome(outcome: str, code: ExitCode):
    fake = FakeApi({("GET", f"/api/v1/onboardings/{ID}"): [answer(200, view(outcome))]})

    result = fake.run("--json", "wait", ID)

    assert result.exit_code == code
    assert json.loads(result.stdout)["status"] == outcome


def test_wait_gives_up_after_the_timeout_with_its_own_exit_code():
    fake = FakeApi(
        {("GET", f"/api/v1/onboardings/{ID}"): [answer(202, view("waiting"), **{"Retry-After": "10"})]}
    )

    result = fake.run("wait", ID, "--timeout", "25")

    assert result.exit_code == ExitCode.TIMED_OUT
    assert fake.sleeps == [10, 10]
    assert result.stderr.strip() == f"error: wait {ID}: not finished after 25 s"


def test_start_merges_the_file_with_options_and_posts_to_v1(tmp_path: Path):
    request = tmp_path / "request.json"
    request.write_text(
        json.dumps({"displayName": "From file", "protocols": ["IMAP"], "adminEmails": ["a@x.example"]})
    )
    mailboxes = tmp_path / "mailboxes.txt"
    mailboxes.write_text("# the sales team\nsales@x.example\n\norders@x.example\n")
    accepted = {"id": ID, "statusUrl": f"{BASE}/api/v1/onboardings/{ID}", "cancelUrl": "…", "existing": False}
    fake = FakeApi({("POST", "/api/v1/onboardings"): [answer(202, accepted)]})

    result = fake.run(
        "--json", "start", "--file", str(request), "--display-name", "From option",
        "--mailbox", "support@x.example", "--mailboxes-file", str(mailboxes), "--idempotency-key", "chg-1",
        env={"MAILONBOARD_TENANT_ID": "11111111-2222-3333-4444-555555555555"},
    )  # fmt: skip

    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == accepted
    assert json.loads(fake.seen[0].content) == {
        "tenantId": "11111111-2222-3333-4444-555555555555",
        "displayName": "From option",
        "protocols": ["IMAP"],
        "mailboxes": ["support@x.example", "sales@x.example", "orders@x.example"],
        "adminEmails": ["a@x.example"],
        "idempotencyKey": "chg-1",
    }


@pytest.mark.parametrize(
    ("content", "problem"), [("[1, 2]", "must hold a JSON object"), ("{oops", "is not JSON")]
)
def test_start_with_a_bad_file_says_so_and_sends_nothing(tmp_path: Path, content: str, problem: str):
    request = tmp_path / "request.json"
    request.write_text(content)
    fake = FakeApi({})

    result = fake.run("start", "--file", str(request))

    assert result.exit_code == ExitCode.FAILED
    assert problem in result.stderr
    assert fake.seen == []


def test_start_refused_by_validation_shows_the_problem_on_one_line():
    problem = {
        "title": "Invalid onboarding request",
        "detail": "/displayName: must not be empty;\n/mailboxes: required",
    }
    fake = FakeApi({("POST", "/api/v1/onboardings"): [answer(400, problem)]})

    result = fake.run("start", "--display-name", "x")

    assert result.exit_code == ExitCode.FAILED
    assert result.stderr == (
        "error: start: 400 Invalid onboarding request: /displayName: must not be empty; /mailboxes: required\n"
    )


@pytest.mark.parametrize(
    ("status", "code", "says"),
    [
        (401, ExitCode.AUTH, "401 Unauthorized: the function key is not valid; check the function key"),
        (403, ExitCode.AUTH, "403 Forbidden"),
        (404, ExitCode.NOT_FOUND, "404 Onboarding not found"),
        (429, ExitCode.THROTTLED, "429 throttled, retry after 12 s"),
        (503, ExitCode.FAILED, "503 Workflow engine unavailable"),
    ],
)
def test_refusals_are_one_line_with_a_documented_exit_code(status: int, code: ExitCode, says: str):
    titles = {401: "Unauthorized", 403: "Forbidden", 404: "Onboarding not found", 429: "Too many requests"}
    body = {"title": titles.get(status, "Workflow engine unavailable")}
    if status == 401:
        body["detail"] = "the function key is not valid"
    fake = FakeApi({("GET", f"/api/v1/onboardings/{ID}"): [answer(status, body, **{"Retry-After": "12"})]})

    result = fake.run("show", ID)

    assert result.exit_code == code
    assert len(result.stderr.splitlines()) == 1
    assert says in result.stderr


def test_json_errors_are_a_document_on_stdout():
    fake = FakeApi({})

    result = fake.run("--json", "show", ID)

    assert result.exit_code == ExitCode.NOT_FOUND
    assert json.loads(result.stdout) == {
        "error": {
            "exitCode": 4,
            "status": 404,
            "message": f"show {ID}: 404 Onboarding not found: No onboarding has this id.",
        }
    }


def test_cancel_of_a_finished_onboarding_is_a_conflict():
    conflict = {"title": "Onboarding already finished", "detail": "It ended as succeeded."}
    fake = FakeApi(
        {("POST", f"/api/v1/onboardings/{ID}/cancel"): [answer(202, {"id": ID}), answer(409, conflict)]}
    )

    first = fake.run("--json", "cancel", ID)
    second = fake.run("cancel", ID)

    assert first.exit_code == 0 and json.loads(first.stdout) == {"id": ID, "cancelRequested": True}
    assert second.exit_code == ExitCode.CONFLICT
    assert "409 Onboarding already finished: It ended as succeeded." in second.stderr


@dataclass
class FakeCredential:
    scopes: list[str] = field(default_factory=list)
    fails: bool = False

    def get_token(self, *scopes: str) -> Any:
        from azure.core.credentials import AccessToken
        from azure.core.exceptions import ClientAuthenticationError

        self.scopes += scopes
        if self.fails:
            raise ClientAuthenticationError(f"DefaultAzureCredential failed; last attempt saw {TOKEN}")
        return AccessToken(TOKEN, 4102444800)


def test_entra_mode_sends_a_bearer_token_for_the_api_app_id_uri():
    credential = FakeCredential()
    fake = FakeApi({("GET", f"/api/v1/onboardings/{ID}"): [answer(200, view())]})

    result = fake.run(
        "show",
        ID,
        env={"MAILONBOARD_FUNCTION_KEY": "", "MAILONBOARD_API_APP_ID_URI": "api://1234"},
        credential=credential,
    )

    assert result.exit_code == 0, result.stderr
    assert credential.scopes == ["api://1234/.default"]
    assert fake.seen[0].headers["Authorization"] == f"Bearer {TOKEN}"
    assert "x-functions-key" not in fake.seen[0].headers


def test_entra_mode_without_a_sign_in_says_how_to_sign_in():
    fake = FakeApi({})

    result = fake.run(
        "--auth", "entra", "show", ID,
        env={"MAILONBOARD_API_APP_ID_URI": "api://1234"}, credential=FakeCredential(fails=True),
    )  # fmt: skip

    assert result.exit_code == ExitCode.AUTH
    assert "could not get an Entra token for api://1234/.default: sign in with `az login`" in result.stderr
    assert fake.seen == []


def test_without_url_or_credentials_the_error_names_the_setting():
    no_url = FakeApi({}).run("show", ID, env={"MAILONBOARD_URL": ""})
    no_auth = FakeApi({}).run("show", ID, env={"MAILONBOARD_FUNCTION_KEY": ""})

    assert no_url.exit_code == ExitCode.USAGE and "MAILONBOARD_URL" in no_url.stderr
    assert no_auth.exit_code == ExitCode.USAGE
    assert "MAILONBOARD_FUNCTION_KEY" in no_auth.stderr and "MAILONBOARD_API_APP_ID_URI" in no_auth.stderr


OFFBOARD_STEPS = [
    ("stop_onboarding", "Cancel the onboarding if it is still running"),
    ("remove_mailbox_permissions", "Remove FullAccess on each mailbox"),
    ("delete_app_registration", "Delete the app registration"),
]


def offboarding_part(status: str, states: list[str], **changes: Any) -> dict[str, Any]:
    steps = [{"name": n, "title": t, "state": s} for (n, t), s in zip(OFFBOARD_STEPS, states, strict=True)]
    return {"status": status, "purge": False, "steps": steps, "removed": [], "left": [], **changes}


def offboarding_api(*polls: Callable[[httpx.Request], httpx.Response]) -> FakeApi:
    # The contract of DELETE /api/v1/onboardings/{id} (issue 11 item 5): 202 + Location, which is the
    # onboarding's status URL (absolute, built from PUBLIC_BASE_URL) and answers 202 while the
    # offboarding runs and 200 once it is done; both bodies carry the `offboarding` part.
    location = f"https://public.example/api/v1/onboardings/{ID}"
    accepted = {"id": ID, "statusUrl": location, "existing": False}
    accepted["offboarding"] = offboarding_part("running", ["pending"] * 3)
    return FakeApi(
        {
            ("DELETE", f"/api/v1/onboardings/{ID}"): [
                answer(202, accepted, Location=location, **{"Retry-After": "5"})
            ],
            ("GET", f"/api/v1/onboardings/{ID}"): list(polls),
        }
    )


def test_offboard_polls_the_location_until_done():
    running = offboarding_part("running", ["done", "running", "pending"])
    done = offboarding_part("succeeded", ["done"] * 3, removed=["app registration"])
    fake = offboarding_api(
        answer(202, view("succeeded", offboarding=running), **{"Retry-After": "4"}),
        answer(200, view("succeeded", offboarding=done)),
    )

    result = fake.run("--json", "offboard", ID, "--yes", "--purge")

    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == {
        "id": ID,
        "state": "done",
        "statusUrl": f"https://public.example/api/v1/onboardings/{ID}",
        "offboarding": done,
    }
    # The key goes to the configured host only, never to the Location's.
    assert [(r.method, r.url.host) for r in fake.seen] == [
        ("DELETE", "api.test"),
        ("GET", "api.test"),
        ("GET", "api.test"),
    ]
    assert fake.seen[0].url.params["purge"] == "true"
    assert fake.sleeps == [4]


def test_offboard_that_left_something_says_what_and_exits_unsuccessful():
    left = offboarding_part("failed", ["done", "failed", "done"], left=["FullAccess on sales@x.example"])
    fake = offboarding_api(answer(200, view("succeeded", offboarding=left)))

    result = fake.run("offboard", ID, "--yes", env={"COLUMNS": "160"})

    assert result.exit_code == ExitCode.UNSUCCESSFUL
    assert f"Offboarding of {ID}: failed" in result.stdout
    assert "FullAccess on sales@x.example" in result.stdout
    assert any(
        "Remove FullAccess on each mailbox" in line and "failed" in line
        for line in result.stdout.splitlines()
    )


def test_offboard_no_wait_returns_the_status_url():
    fake = offboarding_api(answer(200, {}))

    result = fake.run("--json", "offboard", ID, "--yes", "--no-wait")

    assert result.exit_code == 0
    document = json.loads(result.stdout)
    assert document["state"] == "accepted" and document["statusUrl"].endswith(f"/api/v1/onboardings/{ID}")
    assert "purge" not in fake.seen[0].url.params
    assert [r.method for r in fake.seen] == ["DELETE"]


def test_offboard_asks_first_and_a_no_changes_nothing():
    fake = offboarding_api(answer(200, {}))

    result = fake.run("offboard", ID, input="n\n")

    assert result.exit_code == ExitCode.FAILED
    assert "not confirmed; nothing was changed" in result.stderr
    assert fake.seen == []


def test_offboard_of_an_unknown_onboarding_is_not_found():
    fake = FakeApi({})

    result = fake.run("offboard", "onb-unknown", "--yes")

    assert result.exit_code == ExitCode.NOT_FOUND


def test_the_console_command_is_declared():
    import tomllib

    project = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    assert project["project"]["scripts"]["mailonboard"] == "cli.app:main"


def test_callback_key_json_is_the_document_python_m_onboarding_links_prints(monkeypatch: pytest.MonkeyPatch):
    read: list[tuple[str, str]] = []

    def fake_read(vault_url: str, credential: Any, secret_name: str) -> str:
        read.append((vault_url, secret_name))
        return "ab" * 32

    monkeypatch.setattr("cli.app.read_callback_key", fake_read)

    result = FakeApi({}).run(
        "--json",
        "callback-key",
        env={"MAILONBOARD_VAULT_URL": "https://vault.test/"},
        credential=FakeCredential(),
    )

    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == {"callbackKeyHex": "ab" * 32}
    assert read == [("https://vault.test/", "link-signing-key")]


def test_callback_key_without_a_vault_names_the_setting():
    result = FakeApi({}).run("callback-key", credential=FakeCredential())

    assert result.exit_code == ExitCode.USAGE
    assert "MAILONBOARD_VAULT_URL" in result.stderr and result.stdout == ""


def test_show_lists_at_most_fifty_mailboxes_needing_action_and_json_has_them_all():
    results = [
        {"mailbox": f"m{i}@x.example", "state": "imap_disabled", "detail": "IMAP is off", "needsAction": True}
        for i in range(60)
    ]
    body = view("partial", mailboxes={"total": 60, "counts": {"imap_disabled": 60}, "results": results})
    fake = FakeApi({("GET", f"/api/v1/onboardings/{ID}"): [answer(200, body)]})

    table = fake.run("show", ID, env={"COLUMNS": "160"})
    document = fake.run("--json", "show", ID)

    assert "Mailboxes needing action (60)" in table.stdout
    assert "... and 10 more: --json lists every mailbox" in table.stdout
    assert "m49@x.example" in table.stdout and "m50@x.example" not in table.stdout
    assert len(json.loads(document.stdout)["mailboxes"]["results"]) == 60


def test_rotate_starts_the_rotation_and_says_a_running_one_is_not_started_twice():
    location = f"https://public.example/api/v1/onboardings/{ID}"
    accepted = {"id": ID, "statusUrl": location, "existing": True, "rotation": {"status": "running"}}
    fake = FakeApi({("POST", f"/api/v1/onboardings/{ID}/rotate"): [answer(202, accepted, Location=location)]})

    result = fake.run("rotate", ID)

    assert result.exit_code == 0, result.stderr
    assert f"Rotation of {ID} already running (running)" in result.stdout
    assert [(r.method, r.url.host) for r in fake.seen] == [("POST", "api.test")]


def test_rotate_to_a_certificate_sends_the_type_and_an_unknown_type_is_refused_before_any_call():
    location = f"https://public.example/api/v1/onboardings/{ID}"
    accepted = {"id": ID, "statusUrl": location, "existing": False, "rotation": {"status": "running"}}
    fake = FakeApi({("POST", f"/api/v1/onboardings/{ID}/rotate"): [answer(202, accepted, Location=location)]})

    result = fake.run("rotate", ID, "--credential-type", "certificate")

    assert result.exit_code == 0, result.stderr
    assert f"Rotation of {ID} started (running)" in result.stdout
    [sent] = fake.seen
    assert json.loads(sent.content) == {"credentialType": "certificate"}

    refused = FakeApi({})
    assert refused.run("rotate", ID, "--credential-type", "pfx").exit_code != 0
    assert refused.seen == []


def test_retry_starts_the_mailbox_retry_and_names_the_mailboxes_it_works_on():
    location = f"https://public.example/api/v1/onboardings/{ID}"
    part = {"status": "running", "mailboxes": ["sales@contoso.test"]}
    accepted = {"id": ID, "statusUrl": location, "existing": False, "mailboxOperation": part}
    fake = FakeApi({("POST", f"/api/v1/onboardings/{ID}/retry"): [answer(202, accepted, Location=location)]})

    result = fake.run("retry", ID)

    assert result.exit_code == 0, result.stderr
    assert f"Retry of {ID} started (running)" in result.stdout
    assert "mailboxes: sales@contoso.test" in result.stdout
    assert [(r.method, r.url.path) for r in fake.seen] == [("POST", f"/api/v1/onboardings/{ID}/retry")]


def test_mailboxes_add_sends_every_address_given_and_names_them():
    location = f"https://public.example/api/v1/onboardings/{ID}"
    part = {"status": "running", "mailboxes": ["new1@contoso.test", "new2@contoso.test"]}
    accepted = {"id": ID, "statusUrl": location, "existing": False, "mailboxOperation": part}
    fake = FakeApi(
        {("POST", f"/api/v1/onboardings/{ID}/mailboxes"): [answer(202, accepted, Location=location)]}
    )

    result = fake.run("mailboxes", ID, "--add", "new1@contoso.test", "--add", "new2@contoso.test")

    assert result.exit_code == 0, result.stderr
    assert "mailboxes: new1@contoso.test, new2@contoso.test" in result.stdout
    assert json.loads(fake.seen[0].content) == {"add": ["new1@contoso.test", "new2@contoso.test"]}


def test_mailboxes_remove_sends_the_removal_and_refuses_add_and_remove_together():
    location = f"https://public.example/api/v1/onboardings/{ID}"
    part = {"status": "running", "mailboxes": ["old@contoso.test"]}
    accepted = {"id": ID, "statusUrl": location, "existing": False, "mailboxOperation": part}
    fake = FakeApi(
        {("POST", f"/api/v1/onboardings/{ID}/mailboxes"): [answer(202, accepted, Location=location)]}
    )

    result = fake.run("mailboxes", ID, "--remove", "old@contoso.test")
    both = fake.run("mailboxes", ID, "--remove", "old@contoso.test", "--add", "new@contoso.test")

    assert result.exit_code == 0, result.stderr
    assert f"Remove on {ID} started (running)" in result.stdout
    assert json.loads(fake.seen[0].content) == {"remove": ["old@contoso.test"]}
    assert both.exit_code != 0 and len(fake.seen) == 1


def test_retry_with_nothing_needing_attention_is_a_conflict_on_one_line():
    refused = {
        "title": "The onboarding's mailboxes cannot be retried",
        "detail": "No mailbox needs attention.",
    }
    fake = FakeApi({("POST", f"/api/v1/onboardings/{ID}/retry"): [answer(409, refused)]})

    result = fake.run("retry", ID)

    assert result.exit_code == ExitCode.CONFLICT
    assert result.stderr.strip().count("\n") == 0 and "409" in result.stderr


def test_rotate_of_an_offboarded_onboarding_is_a_conflict_on_one_line():
    refused = {"title": "The onboarding's secret cannot be rotated", "detail": "It is offboarded."}
    fake = FakeApi({("POST", f"/api/v1/onboardings/{ID}/rotate"): [answer(409, refused)]})

    result = fake.run("rotate", ID)

    assert result.exit_code == ExitCode.CONFLICT
    assert result.stderr.strip().count("\n") == 0 and "409" in result.stderr
