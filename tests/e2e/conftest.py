"""End to end: the real function_app.py on the local host, against the sandbox tenant.

Every scenario asserts the sandbox's final state (apps, credentials, secrets, assignments, Exchange
registrations and permissions, outbox), not only the HTTP answers.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from demo.admin import Admin, link_in
from endpoints import decision_pages
from endpoints import http as endpoint_http
from funchost import LocalHost, ManualClock, ReservedPort
from onboarding import admission, logcontext, records, redaction
from onboarding.adapters import identity
from onboarding.settings import load_settings
from sandbox import Sandbox, SandboxConfig
from sandbox.profiles import REALISTIC, profile_from_env

ROOT = Path(__file__).resolve().parents[2]
ADMIN = "it-admin@sandbox.example"
MAILBOXES = ("support@sandbox.example", "sales@sandbox.example", "billing@sandbox.example")
FINAL = {"succeeded", "partial", "rejected", "expired", "cancelled", "failed"}
# The longest durable timer the time driver skips to: past the longest poll (POLL_MAX_SECONDS) and
# retry interval, short of the consent reminders (hours), which only a test moves the clock to.
DRIVE_HORIZON = timedelta(minutes=15)


class Evidence(logging.Handler):
    """Everything an onboarding leaves where someone could read it: log lines, HTTP responses."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.texts: list[tuple[str, str]] = []
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info:
            text += logging.Formatter().formatException(record.exc_info)
        # The structured fields too (extra, onboarding_id, step): the worker sends them to
        # Application Insights as customDimensions, so they are scanned like the message.
        fields = {k: v for k, v in vars(record).items() if k not in _STANDARD_RECORD_FIELDS}
        if fields:
            text += "\n" + repr(fields)
        self.texts.append((f"log {record.name}", text))
        self.records.append(record)

    def response(self, response: httpx.Response) -> None:
        response.read()
        headers = "\n".join(f"{k}: {v}" for k, v in response.headers.items())
        self.texts.append(
            (f"http {response.request.method} {response.request.url.path}", headers + response.text)
        )


_STANDARD_RECORD_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message"}


def assert_no_secret_anywhere(sandbox: Sandbox, evidence: Evidence, hub: Path) -> None:
    """No secret or token the sandbox ever issued appears in the task hub, a log line, an HTTP
    response, or an email. Run after every end-to-end scenario."""
    needles = [("secret", s) for s in sandbox.state.issued_secrets()] + [
        ("token", t) for t in sandbox.state.issued_tokens()
    ]
    assert needles, "the scenario issued no secret or token: the scan would prove nothing"
    places = list(evidence.texts)
    for mail in sandbox.state.outbox():
        places.append((f"email {mail.subject}", mail.subject + mail.html))
    for path in hub.parent.glob(hub.name + "*"):  # the SQLite file and its -wal/-shm
        places.append((f"task hub {path.name}", path.read_bytes().decode("latin-1")))
    leaks = [(kind, where) for kind, needle in needles for where, text in places if needle in text]
    assert leaks == [], f"secrets or tokens found in: {leaks}"


class TenantClock:
    """The sandbox tenant's clock: real time plus an offset a test moves, so delays measured on the
    tenant clock (replication, propagation) pass at once instead of being slept through. Tokens are
    issued and checked on this clock too; the host keeps real time."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, delta: timedelta) -> None:
        self.offset += delta


def step_state(view: dict[str, Any], name: str) -> str:
    return str(next(s["state"] for s in view["steps"] if s["name"] == name))


@dataclass
class Tenant:
    """A sandbox tenant with the function app running on the local host, and an admin to click."""

    sandbox: Sandbox
    host: LocalHost
    http: httpx.Client
    clock: ManualClock | None
    evidence: Evidence
    admins: list[Admin] = field(default_factory=list)
    # Under the realistic profile the waits move the shared manual clock to the next durable timer,
    # so an hour of replication and propagation passes in seconds.
    drives_time: bool = False

    # -- requests -------------------------------------------------------------------------------
    def request(self, **overrides: Any) -> dict[str, Any]:
        body: dict[str, Any] = {
            "tenantId": self.sandbox.env["TENANT_ID"],
            "displayName": "Helpdesk mail connector",
            "protocols": ["IMAP", "POP"],
            "mailboxes": list(MAILBOXES),
            "adminEmails": [ADMIN],
        }
        body.update(overrides)
        return body

    def submit(self, **overrides: Any) -> str:
        response = self.http.post("/api/onboardings", json=self.request(**overrides))
        assert response.status_code == 202, response.text
        return str(response.headers["location"])

    def status(self, location: str) -> dict[str, Any]:
        response = self.http.get(location)
        assert response.status_code == 200, response.text
        return dict(response.json())

    def wait(
        self, location: str, done: Callable[[dict[str, Any]], bool], timeout: float = 60
    ) -> dict[str, Any]:
        give_up = time.monotonic() + timeout * (3 if self.drives_time else 1)
        while True:
            view = self.status(location)
            if done(view):
                return view
            if time.monotonic() > give_up:
                raise AssertionError(f"timed out; last view: {view}")
            if not self.skip_to_next_timer():
                time.sleep(0.1)

    def skip_to_next_timer(self) -> bool:
        """When the host has nothing to do but wait for a durable timer due within DRIVE_HORIZON,
        move the clock to it. True if the clock moved."""
        if not self.drives_time or self.clock is None:
            return False
        engine = self.host.engine
        for _ in range(2):  # idle twice, a beat apart, so work in hand-over is not missed
            if engine.ready_instances() or engine.pending_work():
                return False  # still working: let it
            time.sleep(0.05)
        due = engine.next_visible_at()
        if due is None:
            return False
        step = datetime.fromtimestamp(due, UTC) - self.clock.now()
        if step <= timedelta(0) or step > DRIVE_HORIZON:
            return False
        self.clock.advance(step)
        return True

    def drive(
        self, read: Callable[[], dict[str, Any]], done: Callable[[dict[str, Any]], bool], rounds: int = 400
    ) -> dict[str, Any] | None:
        """Let the host work until ``done(read())``; None if it never got there. On the manual clock
        the clock moves 5 s a round so polls and retries come due; under the realistic profile it
        jumps to each durable timer instead (its delays run to an hour), for as long in real time."""
        assert self.clock is not None
        give_up = time.monotonic() + rounds * 0.5
        while True:
            if not self.drives_time:
                self.host.idle(10)
            view = read()
            if done(view):
                return view
            rounds -= 1
            if (rounds <= 0 and not self.drives_time) or time.monotonic() > give_up:
                return None
            if not self.drives_time:
                self.clock.advance(timedelta(seconds=5))
            elif not self.skip_to_next_timer():
                time.sleep(0.1)

    def wait_for_decision(self, location: str) -> dict[str, Any]:
        """Until the onboarding waits for the admin and the email asking for it has arrived (the
        orchestration publishes the wait first, so a link clicked at once is never refused)."""
        view = self.wait(
            location,
            lambda v: (v.get("waitingFor") or {}).get("kind") in {"admin_consent", "admin_approval"},
        )
        app_id = view["app"]["appId"]
        give_up = time.monotonic() + 30
        while not any(app_id in m.html for m in self.mails_to_admin()):
            self.skip_to_next_timer()
            if time.monotonic() > give_up:
                raise AssertionError(f"no email to the admin about app {app_id}")
            time.sleep(0.05)
        return view

    def finished(self, location: str, timeout: float = 90) -> dict[str, Any]:
        return self.wait(location, lambda v: v["status"] in FINAL, timeout)

    # -- the admin ------------------------------------------------------------------------------
    def mails_to_admin(self) -> list[Any]:
        return [m for m in self.sandbox.state.outbox() if ADMIN in m.to]

    def admin_opens(self, link_id: str, mail: Any | None = None) -> Admin:
        mail = mail or self.mails_to_admin()[0]
        user = self.sandbox.people.users[ADMIN]
        admin = Admin(
            self.sandbox.env["SSL_CERT_FILE"], login=user.user_principal_name, password=user.password
        )
        admin.http.event_hooks["response"].append(self.evidence.response)
        self.admins.append(admin)
        admin.open(link_in(mail.html, link_id))
        return admin

    def consent(self, *, accept: bool = True) -> Admin:
        return self.consent_from(self.mails_to_admin()[0], accept=accept)

    def consent_from(self, mail: Any, *, accept: bool = True) -> Admin:
        admin = self.admin_opens("consent-link", mail)
        admin.press("accept" if accept else "cancel")
        admin.press("confirm")
        return admin

    # -- the sandbox's state ----------------------------------------------------------------------
    def live_apps(self) -> list[Any]:
        return [
            a for a in self.sandbox.state.applications(include_deleted=False) if "mail-onboarding" in a.tags
        ]

    def live_secrets(self) -> list[Any]:
        """The client secrets in the vault (not the onboarding records beside them)."""
        return [s for s in self.live_vault_items() if not s.name.startswith(records.RECORD_PREFIX)]

    def live_records(self) -> list[Any]:
        """The onboarding records (onboarding/records.py) in the vault."""
        return [s for s in self.live_vault_items() if s.name.startswith(records.RECORD_PREFIX)]

    def live_vault_items(self) -> list[Any]:
        return [s for s in self.sandbox.state.secrets(include_deleted=False) if s.deleted_at is None]

    def permissions(self) -> set[tuple[str, str]]:
        return {(p.mailbox, p.user) for p in self.sandbox.state.mailbox_permissions()}


@pytest.fixture
def tenant_factory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Tenant]]:
    made: list[tuple[Sandbox, LocalHost, Tenant]] = []
    reservations: list[ReservedPort] = []
    profile = profile_from_env()
    root = logging.getLogger()
    evidence = Evidence()
    root.addHandler(evidence)
    # The worker's handler exists before function_app.py is imported, so its import puts both filters on
    # it; here the app is imported once per process, and each test adds its own handler: put them on.
    redaction.install(evidence)
    logcontext.install(root)  # on the host's handler, as function_app.py does on the worker's at import
    level = root.level
    root.setLevel(logging.DEBUG)

    def make(
        *,
        mailboxes: tuple[str, ...] = MAILBOXES,
        manual_clock: bool = False,
        extra_env: dict[str, str] | None = None,
        configure: Callable[[Sandbox], None] | None = None,
        sandbox_clock: Callable[[], datetime] | None = None,
    ) -> Tenant:
        realistic = profile == REALISTIC
        # The realistic profile's delays are minutes on the tenant clock: the sandbox and the host
        # share one manual clock, and the waits move it.
        clock = ManualClock(datetime.now(UTC)) if manual_clock or realistic else None
        sandbox = Sandbox(
            SandboxConfig(
                base_dir=tmp_path / f"sandbox{len(made)}",
                mailboxes=mailboxes,
                profile=profile,
                # Under the realistic profile the waits move one clock shared by the sandbox and the
                # host; a scenario's own tenant clock would never be moved by them.
                clock=clock.now if realistic and clock is not None else sandbox_clock,
            )
        ).start()
        if configure:
            configure(sandbox)
        reserved = ReservedPort()  # held until teardown: nothing else takes the port before the host
        reservations.append(reserved)
        port = reserved.port
        env = {
            **sandbox.env,
            "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
            # The product's own backoff under realistic delays (the defaults); fast polls otherwise.
            "POLL_INITIAL_SECONDS": "10" if realistic else "1",
            "POLL_MAX_SECONDS": "600" if realistic else "2",
            **(extra_env or {}),
        }
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        # The worker caches a tenant's verified domains by Graph endpoint and tenant id, and its
        # managed identity's tokens by identity endpoint and resource; a sandbox's tenant id comes
        # from its seed and its ports may be ones an earlier test's sandbox freed (with another
        # signing key), so each tenant starts with empty caches, as a new deployment would.
        monkeypatch.setattr(admission, "_domains", admission.DomainCache())
        monkeypatch.setattr(identity, "_workers", {})
        sandbox.allow_signin_redirect(env["PUBLIC_BASE_URL"])
        load_settings.cache_clear()
        if realistic and clock is not None:
            # The worker's token cache judges a token's expiry on the worker's clock, and the tenant
            # issues and checks tokens on its own: in Azure both are real time; here the tenant's
            # jumps, so the worker reads it too (a cached token is not sent past its expiry).
            monkeypatch.setattr(
                identity,
                "WorkerCredential",
                functools.partial(identity.WorkerCredential, clock=lambda: clock.now().timestamp()),
            )
            # Likewise the approver's sign-in (the ID token's iat/exp) and the API's bearer tokens
            # (exp/nbf): the tenant's time.
            monkeypatch.setattr(decision_pages, "_now", clock.now)
            monkeypatch.setattr(endpoint_http, "_VALIDATORS", {})
            monkeypatch.setattr(
                endpoint_http,
                "TokenValidator",
                functools.partial(endpoint_http.TokenValidator, clock=lambda: clock.now().timestamp()),
            )
        host = LocalHost(
            ROOT,
            db_path=tmp_path / f"hub{len(made)}.db",
            port=port,
            reuse_port=True,
            clock=clock,
            function_key=env["API_FUNCTION_KEY"],  # the deployment makes them one key (docs/deploy.md)
        ).start()
        http = httpx.Client(
            base_url=host.base_url,
            headers={"x-functions-key": host.function_key},
            timeout=30,
            event_hooks={"response": [evidence.response]},
        )
        tenant = Tenant(sandbox, host, http, clock, evidence, drives_time=realistic)
        made.append((sandbox, host, tenant))
        return tenant

    try:
        yield make
    finally:
        root.removeHandler(evidence)
        root.setLevel(level)
        try:
            for index, (sandbox, host, tenant) in reversed(list(enumerate(made))):
                tenant.http.close()
                for admin in tenant.admins:
                    admin.close()
                host.stop()
                try:
                    assert_no_secret_anywhere(sandbox, evidence, tmp_path / f"hub{index}.db")
                    sandbox.assert_all_modelled()  # the product relied on nothing the sandbox makes up
                finally:
                    sandbox.stop()
        finally:
            for reserved in reservations:
                reserved.close()
            load_settings.cache_clear()


@pytest.fixture
def tenant(tenant_factory: Callable[..., Tenant]) -> Tenant:
    return tenant_factory()
