"""A lane: one sandbox tenant (in this process) and the function app on a subprocess host that can be
SIGKILLed and restarted on the same SQLite hub and port, plus the requester and the tenant admin,
both tolerant of a host that is down (they try again, as people and ticketing systems do).

Onboardings in a lane run one after another, so everything the function app sends to a service in
a lane comes from one caller at a time: the sandbox's request log then reads as that caller's story.
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import httpx

from demo.admin import Admin, link_in
from funchost.ports import ReservedPort
from funchost.process import HostProcess
from onboarding import records
from onboarding.domain import vault_secret_name
from sandbox import Sandbox, SandboxConfig
from tests.e2e.conftest import ADMIN, FINAL, Evidence, Tenant, assert_no_secret_anywhere
from tests.e2e.test_onboarding import assert_fully_onboarded

ROOT = Path(__file__).resolve().parents[2]
FAST = {"POLL_INITIAL_SECONDS": "1", "POLL_MAX_SECONDS": "2", "ACTIVITY_RETRY_SECONDS": "1"}
log = logging.getLogger("tests.trust")


@dataclass
class ScopedTenant(Tenant):
    """The e2e ``Tenant`` seen through one onboarding: ``assert_fully_onboarded`` then checks that
    onboarding's objects (exactly one app, one secret, its permissions) in a tenant holding others."""

    onboarding_id: str = ""

    def live_apps(self) -> list[Any]:
        tag = f"mail-onboarding:{self.onboarding_id}"
        return [a for a in super().live_apps() if tag in a.tags]

    def live_secrets(self) -> list[Any]:
        return [s for s in super().live_secrets() if s.name == vault_secret_name(self.onboarding_id)]

    def live_records(self) -> list[Any]:
        return [s for s in super().live_records() if s.name == records.record_name(self.onboarding_id)]

    def permissions(self) -> set[tuple[str, str]]:
        apps = {a.app_id for a in self.live_apps()}
        users = {e.object_id for e in self.sandbox.state.exchange_service_principals() if e.app_id in apps}
        return {(m, u) for m, u in super().permissions() if u in users}


@dataclass
class Lane:
    name: str
    root: Path
    mailboxes: tuple[str, ...]
    extra_env: dict[str, str] = field(default_factory=dict)
    configure: Callable[[Sandbox], None] | None = None
    kills: int = 0
    consents: int = 0

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.sandbox = Sandbox(
            SandboxConfig(base_dir=self.root / "sandbox", mailboxes=self.mailboxes)
        ).start()
        if self.configure:
            self.configure(self.sandbox)
        # Held for the lane's life: the host binds beside it, and a restart after a SIGKILL gets the
        # same port back without anything else having taken it (funchost/ports.py).
        self.reserved = ReservedPort()
        self.port = self.reserved.port
        self.hub = self.root / "hub.db"
        self.host_log = self.root / "host.log"
        self.env = {
            **os.environ,
            **self.sandbox.env,
            "PUBLIC_BASE_URL": f"http://127.0.0.1:{self.port}",
            "PYTHONPATH": str(ROOT),
            **FAST,
            **self.extra_env,
        }
        self.sandbox.allow_signin_redirect(self.env["PUBLIC_BASE_URL"])
        self.function_key = self.env["API_FUNCTION_KEY"]  # host key and setting are one (docs/deploy.md)
        self.host: HostProcess | None = None
        self.http = httpx.Client(
            base_url=f"http://127.0.0.1:{self.port}",
            headers={"x-functions-key": self.function_key},
            timeout=10,
        )
        self.evidence = Evidence()
        self.pause_entra_faults_for_admin = False
        self.start_host()

    # -- the host ------------------------------------------------------------------------------
    def start_host(self) -> None:
        self.host = HostProcess(
            ROOT,
            self.hub,
            env=self.env,
            port=self.port,
            reuse_port=True,
            function_key=self.function_key,
            log_path=self.host_log,
        ).start()

    def crash(self) -> None:
        """SIGKILL the host, then start it again on the same hub and port."""
        assert self.host is not None
        self.host.kill()
        self.kills += 1
        self.start_host()

    def close(self) -> None:
        try:
            if self.host is not None:
                self.host.stop()
            self.http.close()
            self.evidence.texts.append(("host log", self.host_log.read_text(errors="replace")))
            assert_no_secret_anywhere(self.sandbox, self.evidence, self.hub)
        finally:
            self.sandbox.stop()
            self.reserved.close()

    # -- the requester -------------------------------------------------------------------------
    def request(self, n: int, **overrides: Any) -> dict[str, Any]:
        return {
            "tenantId": self.sandbox.env["TENANT_ID"],
            "displayName": f"Helpdesk mail connector {self.name}-{n}",
            "protocols": ["IMAP", "POP"],
            "mailboxes": list(self.mailboxes),
            "adminEmails": [ADMIN],
            "idempotencyKey": f"{self.name}-{n}",  # resubmitting after a crash names the same onboarding
            **overrides,
        }

    def submit(self, body: dict[str, Any], timeout: float = 60) -> str:
        give_up = time.monotonic() + timeout
        while True:
            try:
                response = self.http.post("/api/onboardings", json=body)
                if response.status_code == 202:
                    return str(response.headers["location"])
            except httpx.TransportError:
                pass
            if time.monotonic() > give_up:
                raise AssertionError(f"lane {self.name}: the onboarding could not be submitted")
            time.sleep(0.1)

    def status(self, location: str) -> dict[str, Any] | None:
        """The status view, or None while the host is down or restarting."""
        try:
            response = self.http.get(location)
        except httpx.TransportError:
            return None
        return dict(response.json()) if response.status_code == 200 else None

    # -- the admin -----------------------------------------------------------------------------
    def consent(self, app_id: str) -> bool:
        """Follow the consent link of this app's email, accept, confirm. False if anything on the way
        failed (host down, a dropped page): the caller tries again while the status still waits."""
        mails = [m for m in self.sandbox.state.outbox() if ADMIN in m.to and app_id in m.html]
        if not mails:
            return False
        entra = self.sandbox.faults.entra
        rate = entra.error_rate
        if self.pause_entra_faults_for_admin:
            entra.configure(error_rate=0.0)  # faults here are for the function app, not the admin
        user = self.sandbox.people.users[ADMIN]
        admin = Admin(
            self.sandbox.env["SSL_CERT_FILE"], login=user.user_principal_name, password=user.password
        )
        try:
            admin.open(link_in(mails[-1].html, "consent-link"))
            admin.press("accept")
            admin.press("confirm")
            self.consents += 1
            return admin.last_status() < 400
        except (httpx.HTTPError, StopIteration, LookupError):
            return False
        finally:
            admin.close()
            if self.pause_entra_faults_for_admin:
                entra.configure(error_rate=rate)

    # -- a whole onboarding ----------------------------------------------------------------------
    def onboard(
        self,
        body: dict[str, Any],
        *,
        rng: random.Random | None = None,
        kill_budget: int = 0,
        kill_window: tuple[float, float] = (0.05, 1.2),
        timeout: float = 180,
    ) -> dict[str, Any]:
        """Submit, consent when asked, and wait for the end; with ``rng`` and a budget, SIGKILL the
        host at random moments (seconds after it was last ready) until the budget is spent."""
        location = self.submit(body)
        give_up = time.monotonic() + timeout
        kills_left = kill_budget

        def next_kill() -> float:
            return time.monotonic() + rng.uniform(*kill_window) if rng and kills_left else float("inf")

        kill_at = next_kill()
        last_consent = 0.0
        while True:
            if time.monotonic() >= kill_at:
                self.crash()
                kills_left -= 1
                kill_at = next_kill()
            view = self.status(location)
            if view is not None:
                if view["status"] in FINAL:
                    return view
                waiting = view.get("waitingFor") or {}
                if waiting.get("kind") == "admin_consent" and time.monotonic() - last_consent > 2:
                    self.consent(view["app"]["appId"])
                    last_consent = time.monotonic()
            if time.monotonic() > give_up:
                dump = self.dump_history(location)
                raise AssertionError(
                    f"lane {self.name}: {location} did not finish (history in {dump}); last view {view}"
                )
            time.sleep(0.05 if kills_left else 0.2)

    def dump_history(self, location: str) -> Path:
        """Keep the orchestration's history next to the hub, for whoever investigates."""
        assert self.host is not None
        instance = location.rsplit("/", 1)[-1]
        path = self.root / f"history-{instance}.json"
        try:
            response = self.http.get(
                f"/runtime/webhooks/durabletask/instances/{instance}",
                params={"showHistory": "true", "showHistoryOutput": "true"},
                # The lane's client sends the function key as a header, which the host reads first.
                headers={"x-functions-key": self.host.master_key},
            )
            path.write_text(response.text)
        except httpx.HTTPError as exc:
            path.write_text(repr(exc))
        return path

    # -- checks --------------------------------------------------------------------------------
    def scoped(self, view: dict[str, Any]) -> ScopedTenant:
        return ScopedTenant(
            self.sandbox, cast(Any, self.host), self.http, None, self.evidence, onboarding_id=view["id"]
        )

    def assert_fully_onboarded(self, view: dict[str, Any]) -> None:
        steps = [(s["name"], s["state"], s["detail"]) for s in view["steps"] if s["state"] != "done"]
        results = [
            (r["mailbox"], r["state"], r["detail"]) for r in (view["mailboxes"] or {}).get("results") or []
        ]
        assert view["status"] == "succeeded", (view["id"], view["status"], view["errors"], steps, results)
        assert_fully_onboarded(self.scoped(view), view, mailboxes=self.mailboxes)

    def assert_nothing_else(self, succeeded: int) -> None:
        """The tenant holds the objects of ``succeeded`` onboardings and nothing more: no second app,
        no deleted app, no orphan credential, secret version, registration or permission."""
        state = self.sandbox.state
        apps = [a for a in state.applications() if "mail-onboarding" in a.tags]
        assert [a.deleted_at for a in apps] == [None] * succeeded
        assert sum(len(a.passwords) for a in apps) == succeeded
        credentials = [s for s in state.secrets() if not s.name.startswith(records.RECORD_PREFIX)]
        assert [len(s.versions) for s in credentials] == [1] * succeeded
        # One onboarding record per credential, written once however often its activity ran.
        kept = [s for s in state.secrets() if s.name.startswith(records.RECORD_PREFIX)]
        assert sorted((s.name, len(s.versions)) for s in kept) == sorted(
            (records.record_name(s.current.tags["onboardingId"]), 1) for s in credentials
        )
        assert len(state.exchange_service_principals()) == succeeded
        assert len(state.mailbox_permissions()) == succeeded * len(self.mailboxes)
        app_sps = [sp for sp in state.service_principals() if sp.app_id in {a.app_id for a in apps}]
        assert len(app_sps) == succeeded


def close_all(lanes: list[Lane]) -> None:
    """Close every lane even if one's checks fail, then raise the first failure."""
    failures: list[BaseException] = []
    for lane in lanes:
        try:
            lane.close()
        except BaseException as exc:  # keep closing the others: no Dovecot or host left behind
            failures.append(exc)
    if failures:
        raise failures[0]
