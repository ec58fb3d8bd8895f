"""The test bench every benchmark shares: the sandbox tenant and the real function app on the local
host, in this process, with the request log, the episode timings and the admin's consent at hand.

One process on purpose: the sandbox's request log, its faults and the host's episode statistics are
read directly, and the figures include everything the product does (no mocks).
"""

from __future__ import annotations

import contextvars
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from demo.admin import Admin, link_in
from funchost import LocalHost
from funchost.engine import EpisodeStats
from onboarding.settings import load_settings
from sandbox import Sandbox, SandboxConfig

ROOT = Path(__file__).resolve().parent.parent
ADMIN = "it-admin@sandbox.example"
FINAL = {"succeeded", "partial", "rejected", "expired", "cancelled", "failed"}
GRANT = "Add-MailboxPermission"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def mailbox_names(count: int, prefix: str = "box") -> list[str]:
    return [f"{prefix}{i:05d}@sandbox.example" for i in range(count)]


@dataclass(frozen=True)
class Call:
    """One request the sandbox answered: its service, when it started and ended (monotonic-free UTC
    seconds), its status, and the cmdlet when it was a successful Add-MailboxPermission."""

    service: str
    start: float
    end: float
    status: int
    cmdlet: str | None = None


@dataclass
class Recorder:
    """What the bench reads besides the public API: every sandbox request (with Add-MailboxPermission
    marked), every mail login (the sandbox logs none of its own), every orchestrator episode."""

    calls: list[Call] = field(default_factory=list)
    episodes: list[tuple[str, str, EpisodeStats]] = field(default_factory=list)  # (instance, name, stats)
    grants: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self) -> None:
        with self.lock:
            self.calls.clear()
            self.episodes.clear()
            self.grants = 0


_CMDLET: contextvars.ContextVar[str | None] = contextvars.ContextVar("bench_cmdlet", default=None)


def _seconds(moment: datetime) -> float:
    return moment.timestamp()


def instrument(sandbox: Sandbox, host: LocalHost, recorder: Recorder, mail_latency_s: float = 0.0) -> None:
    """Wrap the sandbox's request log, its Add-MailboxPermission and mail login decisions, and the
    host's episodes, so every call and episode is recorded with its times."""
    state = sandbox.state
    log_request = state.log_request
    add_permission = state.add_mailbox_permission

    def logged(entry: Any) -> None:
        log_request(entry)
        end = _seconds(entry.time)
        call = Call(entry.service, end - entry.latency_ms / 1000, end, entry.status, _CMDLET.get())
        _CMDLET.set(None)  # a keep-alive connection may serve its next request in the same task
        with recorder.lock:
            recorder.calls.append(call)

    def granted(*args: Any, **kwargs: Any) -> Any:
        # Runs inside the Exchange request's task: the middleware that logs the request sees the mark.
        _CMDLET.set(GRANT)
        with recorder.lock:
            recorder.grants += 1
        return add_permission(*args, **kwargs)

    state.log_request = logged  # type: ignore[method-assign]
    state.add_mailbox_permission = granted  # type: ignore[method-assign]

    if sandbox.mail is not None:
        authorize = sandbox.mail.authorize

        def login(mailbox: str, token: str, protocol: str) -> str | None:
            # The sandbox has no mail latency knob: Dovecot's auth lookups wait here (one thread each).
            start = time.time()
            if mail_latency_s:
                time.sleep(mail_latency_s)
            verdict = authorize(mailbox, token, protocol)
            with recorder.lock:
                recorder.calls.append(Call(protocol, start, time.time(), 200 if verdict is None else 401))
            return verdict

        sandbox.mail.authorize = login

    engine = host.engine
    run_episode = engine.run_episode
    names: dict[str, str] = {}

    def episode(instance_id: str) -> EpisodeStats | None:
        stats = run_episode(instance_id)
        if stats is not None:
            name = names.get(instance_id)
            if name is None:
                name = names[instance_id] = str(
                    (engine.get_status(instance_id, show_input=False) or {}).get("name", "?")
                )
            with recorder.lock:
                recorder.episodes.append((instance_id, name, stats))
        return stats

    engine.run_episode = episode  # type: ignore[method-assign]


@dataclass
class Rig:
    sandbox: Sandbox
    host: LocalHost
    http: httpx.Client
    recorder: Recorder
    clicked: set[str] = field(default_factory=set)
    refused_early: int = 0  # consent links the callback refused (410) because the wait was not yet recorded

    @property
    def tenant_id(self) -> str:
        return self.sandbox.env["TENANT_ID"]

    def submit(self, mailboxes: list[str], protocols: tuple[str, ...] = ("IMAP", "POP")) -> str:
        """POST an onboarding; returns its instance id."""
        body = {
            "tenantId": self.tenant_id,
            "displayName": "Helpdesk mail connector",
            "protocols": list(protocols),
            "mailboxes": mailboxes,
            "adminEmails": [ADMIN],
        }
        response = self.http.post("/api/onboardings", json=body)
        if response.status_code != 202:
            raise RuntimeError(f"submit answered {response.status_code}: {response.text[:300]}")
        return str(response.headers["location"]).rstrip("/").rsplit("/", 1)[-1]

    def consent_all(self, expected: int, timeout: float = 300, poll: float = 0.01) -> None:
        """Click through every consent email not clicked yet until ``expected`` have been, as an admin
        who acts the moment the email arrives."""
        deadline = time.monotonic() + timeout
        admin = Admin(self.sandbox.env["SSL_CERT_FILE"])
        early: dict[str, float] = {}  # links refused as too early, and when to try them again
        try:
            while len(self.clicked) < expected:
                fresh = False
                state = self.sandbox.state
                with state.lock:  # outbox() deep-copies under the tenant's lock; polling needs no copy
                    mails = list(state._outbox)
                for mail in mails:
                    if ADMIN not in mail.to or "consent-link" not in mail.html:
                        continue
                    link = link_in(mail.html, "consent-link")
                    if link in self.clicked:
                        continue
                    if early.get(link, 0.0) > time.monotonic():
                        continue
                    admin.open(link)
                    admin.press("accept")
                    _, status, _ = admin.pages[-1]
                    if status == 410:
                        # The email left before the orchestration recorded that it waits (its episode
                        # had not run yet): the callback refuses the link for now. An admin tries again.
                        early[link] = time.monotonic() + 0.2
                        self.refused_early += 1
                        continue
                    admin.press("confirm")
                    self.clicked.add(link)
                    fresh = True
                if not fresh:
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"only {len(self.clicked)} of {expected} consent emails arrived")
                    time.sleep(poll)
        finally:
            admin.close()

    def view(self, instance_id: str) -> dict[str, Any]:
        """The status endpoint's answer: what the requester sees, per-mailbox results included."""
        response = self.http.get(f"/api/onboardings/{instance_id}")
        response.raise_for_status()
        return dict(response.json())

    def wait(self, instance_id: str, timeout: float = 1800) -> dict[str, Any]:
        try:
            status = self.host.wait_for(instance_id, timeout=timeout)
        except TimeoutError:
            status = self.host.get_status(instance_id) or {}
            raise TimeoutError(f"{instance_id} did not finish: {status.get('customStatus')}") from None
        output = status.get("output")
        return output if isinstance(output, dict) else {"status": status}


@contextmanager
def rig(
    workdir: Path,
    *,
    mailboxes: list[str],
    extra_env: dict[str, str] | None = None,
    configure: Callable[[Sandbox], None] | None = None,
    mail_latency_s: float = 0.0,
    max_activity_workers: int | None = None,
) -> Iterator[Rig]:
    """A started sandbox and host with the app's settings in the environment (restored afterwards)."""
    sandbox = Sandbox(SandboxConfig(base_dir=workdir / "sandbox", mailboxes=mailboxes)).start()
    saved = dict(os.environ)
    host: LocalHost | None = None
    http: httpx.Client | None = None
    try:
        if configure:
            configure(sandbox)
        port = free_port()
        env = {
            **sandbox.env,
            "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
            "POLL_INITIAL_SECONDS": "1",
            "POLL_MAX_SECONDS": "2",
            **(extra_env or {}),
        }
        os.environ.update(env)
        load_settings.cache_clear()
        host = LocalHost(
            ROOT, db_path=workdir / "hub.db", port=port, max_activity_workers=max_activity_workers
        )
        recorder = Recorder()
        instrument(sandbox, host, recorder, mail_latency_s)
        host.start()
        http = httpx.Client(
            base_url=host.base_url, headers={"x-functions-key": host.function_key}, timeout=60
        )
        yield Rig(sandbox, host, http, recorder)
    finally:
        if http is not None:
            http.close()
        if host is not None:
            host.stop()
        sandbox.stop()
        os.environ.clear()
        os.environ.update(saved)
        load_settings.cache_clear()
