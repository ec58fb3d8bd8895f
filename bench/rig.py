"""The test bench every benchmark shares: the sandbox tenant in this process, and the real function
app on the local host in a process of its own, with the request log, the episode timings and the
admin's consent at hand.

The sandbox stays here so that its request log and faults are read and set directly. The host runs
apart, as the function app runs apart from Microsoft's services: its episodes then do not share a
GIL with the sandbox's servers, nor a heap whose collections (10,000 mailboxes, every request
logged) would stop them. It writes each episode's statistics to a file (``--episode-log``).
"""

from __future__ import annotations

import contextvars
import json
import os
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
from funchost.engine import EpisodeStats
from funchost.ports import ReservedPort
from funchost.process import HostProcess
from onboarding.settings import load_settings
from sandbox import Sandbox, SandboxConfig

ROOT = Path(__file__).resolve().parent.parent
ADMIN = "it-admin@sandbox.example"
FINAL = {"succeeded", "partial", "rejected", "expired", "cancelled", "failed"}
TERMINAL = {"Completed", "Failed", "Terminated", "Canceled"}
GRANT = "Add-MailboxPermission"


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its threads (Linux /proc), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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
    cmdlets: int = 0  # successful Add-MailboxPermission cmdlets in it (up to 10 in a $batch)


@dataclass
class Recorder:
    """What the bench reads besides the public API: every sandbox request (with Add-MailboxPermission
    marked), every mail login (the sandbox logs none of its own), and every orchestrator episode
    (read from the host's episode log by ``Rig.wait``)."""

    calls: list[Call] = field(default_factory=list)
    episodes: list[tuple[str, str, EpisodeStats]] = field(default_factory=list)  # (instance, name, stats)
    grants: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self) -> None:
        with self.lock:
            self.calls.clear()
            self.episodes.clear()
            self.grants = 0


_GRANTS: contextvars.ContextVar[int] = contextvars.ContextVar("bench_grants", default=0)


def _seconds(moment: datetime) -> float:
    return moment.timestamp()


def instrument(sandbox: Sandbox, recorder: Recorder, mail_latency_s: float = 0.0) -> None:
    """Wrap the sandbox's request log, its Add-MailboxPermission and mail login decisions, so every
    call is recorded with its times."""
    state = sandbox.state
    log_request = state.log_request
    add_permission = state.add_mailbox_permission

    def logged(entry: Any) -> None:
        log_request(entry)
        end = _seconds(entry.time)
        grants = _GRANTS.get()
        call = Call(
            entry.service, end - entry.latency_ms / 1000, end, entry.status, GRANT if grants else None, grants
        )
        _GRANTS.set(0)  # a keep-alive connection may serve its next request in the same task
        with recorder.lock:
            recorder.calls.append(call)

    def granted(*args: Any, **kwargs: Any) -> Any:
        # Runs inside the Exchange request's task: the middleware that logs the request sees the count
        # (a $batch request runs its cmdlets one after the other in that task).
        result = add_permission(*args, **kwargs)
        _GRANTS.set(_GRANTS.get() + 1)
        with recorder.lock:
            recorder.grants += 1
        return result

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


@dataclass
class Rig:
    sandbox: Sandbox
    host: HostProcess
    http: httpx.Client
    recorder: Recorder
    clicked: set[str] = field(default_factory=set)
    refused_early: int = 0  # consent links the callback refused (410) because the wait was not yet recorded
    # The consent links found so far, and how much of the sandbox's outbox (append-only) was read for
    # them: each email is parsed once, not on every poll.
    links: list[str] = field(default_factory=list)
    mails_read: int = 0
    admin: Admin | None = None

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
        admin = self._browser()
        early: dict[str, float] = {}  # links refused as too early, and when to try them again
        while len(self.clicked) < expected:
            fresh = False
            self._read_new_mail()
            for link in self.links:
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

    def _browser(self) -> Admin:
        """The admin's browser, signed out and with no pages: each consent goes through Entra's
        sign-in as the first did. It is kept for the rig's life, as a browser keeps its connections;
        building one (a trust store and a TLS handshake with Entra) took a few milliseconds of the
        onboarding being timed."""
        if self.admin is None:
            user = self.sandbox.people.users[ADMIN]
            self.admin = Admin(
                self.sandbox.env["SSL_CERT_FILE"], login=user.user_principal_name, password=user.password
            )
        self.admin.http.cookies.clear()
        self.admin.pages.clear()
        return self.admin

    def _read_new_mail(self) -> None:
        """Adds the consent links of the emails sent since the last read. Parsing every email on
        every poll took the bench process's CPU (and its GIL, which the stand-ins share) from the
        onboarding being timed, more with each onboarding run before."""
        state = self.sandbox.state
        with state.lock:  # outbox() deep-copies under the tenant's lock; polling needs no copy
            mails = state._outbox[self.mails_read :]
        self.mails_read += len(mails)
        for mail in mails:
            if ADMIN in mail.to and "consent-link" in mail.html:
                self.links.append(link_in(mail.html, "consent-link"))

    def view(self, instance_id: str) -> dict[str, Any]:
        """The status endpoint's answer: what the requester sees, per-mailbox results included."""
        response = self.http.get(f"/api/onboardings/{instance_id}")
        response.raise_for_status()
        return dict(response.json())

    def status(self, instance_id: str) -> dict[str, Any]:
        """The Durable management API's answer for one instance (the master key's view)."""
        response = self.http.get(
            f"/runtime/webhooks/durabletask/instances/{instance_id}",
            params={"showInput": "false"},
            headers={"x-functions-key": self.host.master_key},
        )
        response.raise_for_status()
        return dict(response.json())

    def wait(self, instance_id: str, timeout: float = 1800, *, quick: bool = True) -> dict[str, Any]:
        """The instance's output once it has finished; then the episodes so far are in the recorder.

        ``quick`` (the end-to-end benchmark's wall time is read from this): the host's episode log is
        watched for the instance's last episode, every 2 ms, which costs the host nothing; then the
        status is read. Polling the status every 10 ms instead took the host's CPU and GIL from the
        onboarding being timed. Otherwise the status is read every 250 ms: a status read costs the
        host CPU, and benchmarks that measure the host's CPU or a long run must not add to it."""
        began = time.monotonic()
        deadline = began + timeout
        if quick and self.host.episode_log is not None:
            self._await_last_episode(instance_id, self.host.episode_log, deadline)
        while True:
            status = self.status(instance_id)
            if status.get("runtimeStatus") in TERMINAL:
                break
            now = time.monotonic()
            if now > deadline:
                raise TimeoutError(f"{instance_id} did not finish: {status.get('customStatus')}")
            time.sleep(0.01 if quick and now - began < 10 else 0.25)  # quick: the last episode is written
        self.read_episodes()
        output = status.get("output")
        return output if isinstance(output, dict) else {"status": status}

    @staticmethod
    def _await_last_episode(instance_id: str, log: Path, deadline: float) -> None:
        """Until the episode log (JSON lines, appended by the host) has an episode of ``instance_id``
        that ended it (a terminal status)."""
        offset = 0
        pending = b""
        while time.monotonic() < deadline:
            if log.exists():
                with log.open("rb") as handle:
                    handle.seek(offset)
                    chunk = handle.read()
                offset += len(chunk)
                *lines, pending = (pending + chunk).split(b"\n")
                for line in lines:
                    if instance_id.encode() in line:
                        record = json.loads(line)
                        if record["instance_id"] == instance_id and record["status"] in TERMINAL:
                            return
            time.sleep(0.002)

    def read_episodes(self) -> None:
        episodes = []
        log = self.host.episode_log
        if log is not None and log.exists():
            for line in log.read_text().splitlines():
                if line.strip():
                    record = json.loads(line)
                    name = record.pop("name")
                    episodes.append((record["instance_id"], name, EpisodeStats(**record)))
        with self.recorder.lock:
            self.recorder.episodes[:] = episodes


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
    host: HostProcess | None = None
    http: httpx.Client | None = None
    made: Rig | None = None
    reserved = ReservedPort()  # the host binds beside it; nothing else takes the port in between
    try:
        if configure:
            configure(sandbox)
        port = reserved.port
        env = {
            **sandbox.env,
            "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
            "POLL_INITIAL_SECONDS": "1",
            "POLL_MAX_SECONDS": "2",
            **(extra_env or {}),
        }
        os.environ.update(env)  # for what the bench itself builds from the settings (the manual loop)
        sandbox.allow_signin_redirect(env["PUBLIC_BASE_URL"])
        load_settings.cache_clear()
        recorder = Recorder()
        instrument(sandbox, recorder, mail_latency_s)
        host = HostProcess(
            ROOT,
            workdir / "hub.db",
            {**os.environ, "PYTHONPATH": str(ROOT)},
            port,
            reuse_port=True,
            log_path=workdir / "host.log",
            episode_log=workdir / "episodes.jsonl",
            max_activity_workers=max_activity_workers,
            function_key=env["API_FUNCTION_KEY"],  # host key and setting are one (docs/deploy.md)
        ).start()
        http = httpx.Client(
            base_url=host.base_url, headers={"x-functions-key": host.function_key}, timeout=60
        )
        made = Rig(sandbox, host, http, recorder)
        yield made
    finally:
        if made is not None and made.admin is not None:
            made.admin.close()
        if http is not None:
            http.close()
        if host is not None:
            host.stop()
        sandbox.stop()
        reserved.close()
        os.environ.clear()
        os.environ.update(saved)
        load_settings.cache_clear()
