"""An app's whole life (issue 11, "Done when"), on a subprocess host SIGKILLed at seeded random moments
during every day-2 operation, with latency and a transient 503/429 burst on Graph, Exchange and Key
Vault: onboard three mailboxes; add two, remove one; rotate the client secret; switch to a certificate;
lose a FullAccess behind the app's back and have the diagnosis name it; offboard.

After each operation the tenant must hold exactly what an uninterrupted run leaves: one app, its
credentials, one service principal and Exchange registration, each FullAccess once, the vault's
versions; the mail client, logging in all along with whatever the vault's hand-off holds, never fails;
and the webhook stream has each event once, in order. The overlap windows (an hour) pass because the
host is killed during them and restarted an hour later (``FUNCHOST_CLOCK_OFFSET_SECONDS``).

Repeat a run with ``TRUST_SEED=<seed printed below> pytest tests/trust/test_whole_life.py -s``.
"""

from __future__ import annotations

import itertools
import json
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from onboarding import records
from onboarding.domain import vault_certificate_name, vault_secret_name
from onboarding.links import callback_key, verify_callback
from tests.e2e.test_diagnosis import first_broken
from tests.e2e.test_rotation import mail_product_logs_in
from tests.trust.lanes import Lane, close_all
from tests.trust.receiver import CallbackReceiver
from tests.trust.test_sigkill import seed_from_env

FIRST = ("support@sandbox.example", "sales@sandbox.example", "billing@sandbox.example")
ADDED = ("extra1@sandbox.example", "extra2@sandbox.example")
REMOVED = "sales@sandbox.example"
DRIFTED = "billing@sandbox.example"  # loses its FullAccess behind the app's back
OVERLAP_HOURS = 1
KILLS_PER_OPERATION = 2
KILL_WINDOW = (0.05, 0.5)  # seconds after the operation started or the host last came back
DAY_2_EVENTS = [
    "mailboxes.add_started",
    "mailboxes.added",
    "mailboxes.remove_started",
    "mailboxes.removed",
    "credential.rotation_started",
    "credential.rotated",
    "credential.rotation_started",
    "credential.rotated",
    "offboarding.started",
    "offboarding.completed",
]


def logs_in(lane: Lane, document: dict[str, Any], mailbox: str = FIRST[0]) -> bool:
    """The mail product with a hand-off document, on the lane's tenant (tests/e2e/test_rotation.py)."""
    return mail_product_logs_in(lane.sandbox.env, document, mailbox)


class Life:
    """One onboarding on a lane, driven through its day-2 operations with kills at seeded moments."""

    def __init__(self, lane: Lane, rng: random.Random) -> None:
        self.lane = lane
        self.rng = rng
        self.id = ""
        self.kills: dict[str, int] = {}
        self.logins = 0
        self.offset_hours = 0

    @property
    def path(self) -> str:
        return f"/api/v1/onboardings/{self.id}"

    def send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """A request the host answers (it is up: kills only come after an operation was accepted)."""
        give_up = time.monotonic() + 60
        while True:
            try:
                return self.lane.http.request(method, path, **kwargs)
            except httpx.TransportError:
                assert time.monotonic() < give_up, f"{method} {path}: the host did not answer"
                time.sleep(0.1)

    def view(self) -> dict[str, Any] | None:
        try:
            response = self.lane.http.get(self.path, params={"view": "current"})
        except httpx.TransportError:
            return None
        return dict(response.json()) if response.status_code == 200 else None

    def handoff(self) -> dict[str, Any]:
        """What the mail product reads: the current version of the onboarding's vault secret."""
        secret = self.lane.sandbox.state.get_secret(vault_secret_name(self.id))
        assert secret is not None and secret.deleted_at is None
        return dict(json.loads(secret.current.value))

    def client_logs_in(self, mailbox: str = FIRST[0]) -> None:
        document = self.handoff()
        assert logs_in(self.lane, document, mailbox), (
            f"the mail client failed to log in at {mailbox} with the hand-off's {document.get('credentialType', 'secret')}"
        )
        self.logins += 1

    def operate(
        self,
        name: str,
        done: Callable[[dict[str, Any]], bool],
        *,
        during: Callable[[dict[str, Any]], None] | None = None,
        timeout: float = 120,
    ) -> dict[str, Any]:
        """Until ``done(view)``: SIGKILL the host at up to KILLS_PER_OPERATION seeded moments, and
        call ``during(view)`` between polls (the mail client logging in)."""
        kills = 0
        kill_at = time.monotonic() + self.rng.uniform(*KILL_WINDOW)
        give_up = time.monotonic() + timeout
        while True:
            if kills < KILLS_PER_OPERATION and time.monotonic() >= kill_at:
                self.lane.crash()
                kills += 1
                kill_at = time.monotonic() + self.rng.uniform(*KILL_WINDOW)
            view = self.view()
            if view is not None:
                if done(view):
                    self.kills[name] = kills
                    return view
                if during is not None:
                    during(view)
            if time.monotonic() > give_up:
                dump = self.lane.dump_history(f"{self.path}")
                raise AssertionError(f"{name} did not end (history in {dump}); last view {view}")
            time.sleep(0.05)

    def restart_later(self, hours: int) -> None:
        """A SIGKILL during the overlap window; the host comes back ``hours`` later."""
        self.offset_hours += hours
        self.lane.env["FUNCHOST_CLOCK_OFFSET_SECONDS"] = str(self.offset_hours * 3600 + 60)
        self.lane.crash()

    # -- what the tenant holds -----------------------------------------------------------------
    def assert_tenant(
        self, mailboxes: tuple[str, ...], *, passwords: int, keys: int, versions: int, certificates: int
    ) -> None:
        """Exactly the objects of one onboarded app, as an uninterrupted run leaves them."""
        state = self.lane.sandbox.state
        apps = [a for a in state.applications() if "mail-onboarding" in a.tags]
        assert [a.deleted_at for a in apps] == [None], "one app, never a second or a deleted one"
        [app] = apps
        assert (len(app.passwords), len(app.keys)) == (passwords, keys), (app.passwords, app.keys)
        assert [sp.app_id for sp in state.service_principals() if sp.app_id == app.app_id] == [app.app_id]
        [esp] = state.exchange_service_principals()
        assert esp.app_id == app.app_id
        permissions = sorted((p.mailbox, p.user, p.access_rights) for p in state.mailbox_permissions())
        assert permissions == sorted((m, esp.object_id, ("FullAccess",)) for m in mailboxes)
        secret = state.get_secret(vault_secret_name(self.id))
        assert secret is not None and secret.deleted_at is None
        assert len(secret.versions) == versions, [v.version for v in secret.versions]
        in_use = {c.key_id for c in (*app.passwords, *app.keys)}
        assert secret.current.tags["keyId"] in in_use
        certificate = state.get_certificate(vault_certificate_name(self.id))
        assert len(certificate.versions if certificate else []) == certificates


def stream_writers(life: Life) -> dict[str, Any]:
    """For a failed stream: each writer's state and the numbers it reported (``webhook_events``, or its
    channel's count ``webhook_channel_events``)."""
    assert life.lane.host is not None
    found: dict[str, Any] = {}
    for suffix in ("", ":mailboxes", ":rotation", ":offboarding", ":webhook"):
        response = life.lane.http.get(
            f"/runtime/webhooks/durabletask/instances/{life.id}{suffix}",
            headers={"x-functions-key": life.lane.host.master_key},
        )
        status = response.json() if response.status_code in (200, 202) else {}
        output = status.get("output")
        found[suffix or "onboarding"] = (
            status.get("runtimeStatus", response.status_code),
            {k: v for k, v in output.items() if k.startswith("webhook_")}
            if isinstance(output, dict)
            else None,
            status.get("customStatus"),
        )
    return found


def start(life: Life, method: str, path: str, json_body: Any = None) -> dict[str, Any]:
    response = life.send(method, path, json=json_body)
    assert response.status_code == 202, response.text
    assert response.json()["existing"] is False, response.text
    return dict(response.json())


def mailbox_operation_ended(view: dict[str, Any]) -> bool:
    return (view.get("mailboxOperation") or {}).get("status") not in (None, "running")


def rotation_step(view: dict[str, Any], name: str) -> str:
    steps = (view.get("rotation") or {}).get("steps") or []
    return str(next((s["state"] for s in steps if s["name"] == name), ""))


def rotate(life: Life, body: Any, previous_versions: int) -> dict[str, Any]:
    """A rotation with kills before and after its overlap window, the client logging in throughout;
    the host is killed once during the window too, and comes back after it."""
    start(life, "POST", f"{life.path}/rotate", body)
    life.client_logs_in()

    def during(view: dict[str, Any]) -> None:
        life.client_logs_in()

    def waiting(view: dict[str, Any]) -> bool:
        rotation = view.get("rotation") or {}
        assert rotation.get("status") in (None, "running"), rotation
        return rotation_step(view, "overlap_window") == "waiting"

    life.operate("rotation (to the overlap)", waiting, during=during)
    # During the overlap: the new credential is the vault's current version, both work.
    secret = life.lane.sandbox.state.get_secret(vault_secret_name(life.id))
    assert secret is not None and len(secret.versions) == previous_versions + 1
    old = json.loads(secret.versions[-2].value)
    assert logs_in(life.lane, old) and logs_in(life.lane, life.handoff())
    life.restart_later(OVERLAP_HOURS)
    final = life.operate(
        "rotation (after the overlap)",
        lambda v: (v.get("rotation") or {}).get("status") not in (None, "running"),
        during=during,
    )
    rotation = final["rotation"]
    assert rotation["status"] == "succeeded", rotation
    assert [s["state"] for s in rotation["steps"]] == ["done"] * 5, rotation["steps"]
    assert not logs_in(life.lane, old), "the old credential still logs in after the overlap"
    for mailbox in (*FIRST, *ADDED):
        if mailbox != REMOVED:
            life.client_logs_in(mailbox)
    return final


def webhook_events(lane: Lane, receiver: CallbackReceiver, last: str) -> list[dict[str, Any]]:
    """The stream as a consumer keeps it: each delivery's signature checked, repeats of an event id
    (at-least-once delivery after a kill) kept once; waits for the ``last`` event type."""
    key = callback_key(lane.sandbox.env["LINK_SIGNING_KEY"].encode())
    give_up = time.monotonic() + 60
    while True:
        bodies: dict[str, dict[str, Any]] = {}
        for delivery in receiver.received():
            signature = delivery.headers["X-Onboarding-Signature"]
            assert verify_callback(key, delivery.body, signature, now=int(signature.split(",")[0][2:]))
            body = json.loads(delivery.body)
            lane.evidence.texts.append((f"webhook {body['id']}", delivery.body.decode()))
            assert bodies.setdefault(body["id"], body) == body, "one event id, two different bodies"
        if any(b["type"] == last for b in bodies.values()):
            return sorted(bodies.values(), key=lambda b: int(b["sequence"]))
        assert time.monotonic() < give_up, sorted(b["type"] for b in bodies.values())
        time.sleep(0.2)


FAULTY = ("graph", "exchange", "keyvault")
ERROR_RATE = 0.04


def fault_seed(seed: int) -> int:
    """The first seed from ``seed`` on that fails one of the first 10 calls of each faulty service
    (``ServiceFaults`` draws one number per request from ``Random(f"{seed}:{service}")``). Any seed
    could draw no fault at all in a whole life, and then the run proves nothing about faults (seed
    1976698647 did)."""
    for candidate in itertools.count(seed):
        draws = [random.Random(f"{candidate}:{service}") for service in FAULTY]
        if all(any(rng.random() < ERROR_RATE for _ in range(10)) for rng in draws):
            return candidate
    raise AssertionError("unreachable")


def inject_faults(lane: Lane, seed: int) -> None:
    """Every call of the function app is slower (so the kills land inside the operations), and
    a few answer 503 or 429 with Retry-After: transient, to be retried."""
    seed = fault_seed(seed)
    for service in FAULTY:
        lane.sandbox.faults[service].configure(
            latency_ms=120, error_rate=ERROR_RATE, errors=(503, 429), retry_after=0.2, seed=seed
        )


@pytest.mark.timeout(400)  # about 90 s alone; a loaded CI machine may take longer
def test_an_apps_whole_life_sigkilled_during_every_operation_ends_exactly_as_an_uninterrupted_one(
    tmp_path: Path, receiver: CallbackReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed = seed_from_env()
    print(f"\nwhole-life SIGKILL seed: TRUST_SEED={seed}")
    started = time.monotonic()
    lane = Lane(
        "life",
        tmp_path / "lane",
        (*FIRST, *ADDED),
        extra_env={"ROTATION_OVERLAP_HOURS": str(OVERLAP_HOURS)},
    )
    # The mail client (logs_in) reads the settings in this process: the lane's tenant.
    for key, value in lane.env.items():
        monkeypatch.setenv(key, value)
    life = Life(lane, random.Random(seed))
    try:
        body = lane.request(0, mailboxes=list(FIRST), callbackUrl=receiver.url, secretLifetimeDays=180)
        view = lane.onboard(body)
        assert view["status"] == "succeeded", view
        life.id = view["id"]
        sp_id = view["app"]["servicePrincipalId"]
        life.assert_tenant(FIRST, passwords=1, keys=0, versions=1, certificates=0)
        life.client_logs_in()
        inject_faults(lane, seed)
        mails = len(lane.sandbox.state.outbox())
        log_start = len(lane.sandbox.state.request_log())

        # -- add two mailboxes, then remove one ---------------------------------------------------
        start(life, "POST", f"{life.path}/mailboxes", {"add": list(ADDED)})
        final = life.operate("add mailboxes", mailbox_operation_ended)
        operation = final["mailboxOperation"]
        assert (operation["kind"], operation["status"]) == ("add", "succeeded"), operation
        assert {r["mailbox"]: r["state"] for r in operation["results"]} == dict.fromkeys(ADDED, "verified")
        life.assert_tenant((*FIRST, *ADDED), passwords=1, keys=0, versions=1, certificates=0)

        start(life, "POST", f"{life.path}/mailboxes", {"remove": [REMOVED]})
        final = life.operate("remove a mailbox", mailbox_operation_ended)
        operation = final["mailboxOperation"]
        assert (operation["kind"], operation["status"]) == ("remove", "succeeded"), operation
        assert [(r["mailbox"], r["state"]) for r in operation["results"]] == [(REMOVED, "removed")]
        kept = tuple(m for m in (*FIRST, *ADDED) if m != REMOVED)
        results = {r["mailbox"]: r["state"] for r in final["mailboxes"]["results"]}
        assert results == dict.fromkeys(kept, "verified"), results
        life.assert_tenant(kept, passwords=1, keys=0, versions=1, certificates=0)
        assert not logs_in(lane, life.handoff(), REMOVED)
        life.client_logs_in(ADDED[0])

        # -- rotate the client secret, then switch to a certificate -------------------------------
        rotate(life, None, previous_versions=1)
        life.assert_tenant(kept, passwords=1, keys=0, versions=2, certificates=0)
        rotate(life, {"credentialType": "certificate"}, previous_versions=2)
        life.assert_tenant(kept, passwords=0, keys=1, versions=3, certificates=1)
        assert life.handoff().get("credentialType") == "certificate"

        # -- a FullAccess removed behind the app's back: the diagnosis names it, with its fix -------
        state = lane.sandbox.state
        [esp] = state.exchange_service_principals()
        box = state.find_mailbox(DRIFTED)
        assert box is not None and state.remove_mailbox_permission(box, esp)
        accepted = life.send("GET", f"{life.path}/diagnosis")
        assert accepted.status_code == 202, accepted.text
        give_up = time.monotonic() + 60
        while (answer := life.send("GET", accepted.headers["location"])).status_code != 200:
            assert answer.status_code == 202 and time.monotonic() < give_up, answer.text
            time.sleep(0.1)
        report = answer.json()
        link, fix = first_broken(report)
        assert link == "mailbox_access", report
        assert f"Add-MailboxPermission -Identity {DRIFTED} -User {sp_id} -AccessRights FullAccess" in fix
        assert DRIFTED in json.dumps(report["links"]), report

        # -- offboard -------------------------------------------------------------------------------
        response = life.send("DELETE", life.path)
        assert response.status_code == 202, response.text
        final = life.operate(
            "offboarding", lambda v: (v.get("offboarding") or {}).get("status") not in (None, "running")
        )
        off = final["offboarding"]
        assert off["status"] == "succeeded" and off["left"] == [] and off["mailboxesFailed"] == [], off
        assert state.mailbox_permissions() == [] and state.exchange_service_principals() == []
        apps = [a for a in state.applications() if "mail-onboarding" in a.tags]
        assert [a.deleted_at is not None for a in apps] == [True], "the one app, soft-deleted"
        assert [sp for sp in state.service_principals() if sp.app_id == apps[0].app_id] == []
        secret = state.get_secret(vault_secret_name(life.id))
        assert secret is not None and secret.deleted_at is not None and len(secret.versions) == 3
        certificate = state.get_certificate(vault_certificate_name(life.id))
        assert certificate is not None and certificate.deleted_at is not None

        # -- nothing lost, nothing duplicated --------------------------------------------------------
        events = webhook_events(lane, receiver, "offboarding.completed")
        assert [e["sequence"] for e in events] == list(range(1, len(events) + 1)), "a gap or a repeat"
        types = [e["type"] for e in events]
        assert types[types.index("onboarding.completed") + 1 :] == DAY_2_EVENTS, (types, stream_writers(life))
        # An email is the one effect that is not idempotent: an activity killed after sending it sends
        # it again. Each operation's email: at least once, at most once more per kill during it.
        subjects = [m.subject for m in state.outbox()[mails:]]
        name = body["displayName"]
        rotation_kills = [life.kills["rotation (to the overlap)"], life.kills["rotation (after the overlap)"]]
        expected = {
            f"Mailboxes added: {name}": life.kills["add mailboxes"],
            f"Client secret rotated: {name}": rotation_kills[0] + rotation_kills[1] + 1,
            f"Certificate rotated: {name}": rotation_kills[0] + rotation_kills[1] + 1,
            f"Mailbox access removed: {name}": life.kills["offboarding"],
        }
        assert set(subjects) == set(expected), subjects
        for subject, kills in expected.items():
            assert 1 <= subjects.count(subject) <= 1 + kills, subjects
        # The onboarding's record (what outlives the history) logs each operation once.
        record = state.get_secret(records.record_name(life.id))
        assert record is not None
        operations = [o["kind"] for o in json.loads(record.current.value)["operations"]]
        assert operations == [
            "onboarded",
            "mailboxes_added",
            "mailboxes_removed",
            "rotated",
            "rotated",
        ], operations  # the offboarding writes no "offboarded" entry (yet): see docs/trust.md
        # Each operation was interrupted (a kill after it ended would prove nothing), and the faults
        # were injected for real.
        assert all(life.kills.values()), f"an operation ended before its first kill: {life.kills}"
        faults = [e for e in state.request_log()[log_start:] if e.fault is not None]
        assert faults, "no fault was injected: the test proved nothing about them"
    finally:
        close_all([lane])
    print(
        f"whole-life figures (seed {seed}): kills {life.kills} (+{life.offset_hours} during overlaps), "
        f"injected faults {sorted((e.service, e.status) for e in faults)}, client logins {life.logins}, "
        f"{time.monotonic() - started:.0f} s"
    )
