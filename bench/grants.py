"""Benchmarks 1 and 2: one onboarding of many mailboxes against a throttled Exchange stand-in.

The sandbox's Exchange is limited as Exchange Online limits an app (per caller: 10 concurrent calls,
100 calls per second, HTTP 429 with Retry-After otherwise; a ``$batch`` counts each of its cmdlets)
and adds 50 ms to every call. The grant phase is read from the request log: from the start of the
first request with a successful Add-MailboxPermission to the end of the last. The whole mailbox
phase runs from there to the end of the last IMAP/POP login. The same run gives the history and
replay figures (benchmark 2) and the host's CPU for the whole onboarding.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.rig import GRANT, Call, Recorder, mailbox_names, process_cpu_seconds, rig
from sandbox import Sandbox

CONCURRENCY_LIMIT = 10
RATE_LIMIT = 100.0  # requests per second per caller
EXCHANGE_LATENCY_MS = 50
RETRY_AFTER_S = 1.0


def throttle(sandbox: Sandbox) -> None:
    sandbox.faults.throttle_exchange(
        max_concurrency=CONCURRENCY_LIMIT, requests_per_second=RATE_LIMIT, retry_after=RETRY_AFTER_S
    )
    sandbox.faults["exchange"].configure(latency_ms=EXCHANGE_LATENCY_MS)


@dataclass
class GrantRun:
    mailboxes: int
    grant_seconds: float
    rate: float
    throttled: int
    lost: int
    duplicated: int
    results_recorded: int
    results_unique: int
    outcome: str
    total_seconds: float
    parent_history: int
    longest_episode_s: float
    longest_episode_sdk_s: float
    longest_episode_instance: str
    longest_episode_cpu_s: float  # that episode's own thread CPU time (the wall time adds GIL waits)
    most_episode_cpu_s: float  # the largest thread CPU time of any episode
    longest_episode_gc_s: float  # garbage collection inside the longest episode
    most_episode_gc_s: float  # the longest garbage collection time inside any episode
    episodes: int
    host_cpu_seconds: float  # the host process's CPU from the request to the result
    mailbox_seconds: float  # first grant request's start to the last login's end
    logins: int  # IMAP and POP logins made
    protocols: int
    # Exchange requests: (start, end, status, successful grants in it)
    timeline: list[tuple[float, float, int, int]] = field(default_factory=list)

    @property
    def nothing_lost(self) -> bool:
        """No permission lost or duplicated, and every mailbox's result recorded once."""
        return (
            self.lost == 0
            and self.duplicated == 0
            and self.results_unique == self.mailboxes == self.results_recorded
        )

    @property
    def allowed_seconds(self) -> float:
        return self.mailboxes / RATE_LIMIT

    @property
    def time_ratio(self) -> float:
        return self.grant_seconds / self.allowed_seconds


def grant_window(calls: list[Call]) -> tuple[float, float, int]:
    """When the first request granting a mailbox started, when the last ended, and how many
    Add-MailboxPermission cmdlets succeeded (a ``$batch`` request carries up to 10)."""
    grants = [c for c in calls if c.cmdlet == GRANT]
    if not grants:
        raise RuntimeError("no Add-MailboxPermission reached the sandbox")
    return min(c.start for c in grants), max(c.end for c in grants), sum(c.cmdlets for c in grants)


def run_onboarding(workdir: Path, count: int, extra_env: dict[str, str] | None = None) -> GrantRun:
    """One onboarding of ``count`` mailboxes."""
    boxes = mailbox_names(count)
    with rig(workdir, mailboxes=boxes, configure=throttle, extra_env=extra_env) as r:
        assert r.host.pid is not None
        cpu = process_cpu_seconds(r.host.pid)
        began = time.perf_counter()
        instance = r.submit(boxes)
        r.consent_all(1)
        output = r.wait(instance, timeout=3600, quick=False)
        total = time.perf_counter() - began
        cpu = process_cpu_seconds(r.host.pid) - cpu
        results = r.view(instance)["mailboxes"]["results"] or []
        return _summarise(r.sandbox, r.recorder, instance, boxes, output, results, total, cpu)


def _summarise(
    sandbox: Sandbox,
    recorder: Recorder,
    instance: str,
    boxes: list[str],
    output: dict[str, Any],
    results: list[dict[str, Any]],
    total: float,
    cpu: float,
) -> GrantRun:
    first, last, _ = grant_window(recorder.calls)
    logins = [c for c in recorder.calls if c.service in ("imap", "pop")]
    sp_id = (output.get("app") or {}).get("servicePrincipalId") or (output.get("app") or {}).get(
        "service_principal_id"
    )
    held = Counter((p.mailbox, p.user) for p in sandbox.state.mailbox_permissions() if p.user == sp_id)
    wanted = {(b.lower(), sp_id) for b in boxes}
    lost = len(wanted - set(held))
    duplicated = sum(n - 1 for n in held.values() if n > 1) + len(set(held) - wanted)
    recorded = [item.get("mailbox", "").lower() for item in results]
    exchange = [c for c in recorder.calls if c.service == "exchange" and c.end >= first - 1]
    parent = [s for i, _, s in recorder.episodes if i == instance]
    longest = max(recorder.episodes, key=lambda e: e[2].total_seconds)
    return GrantRun(
        mailboxes=len(boxes),
        grant_seconds=last - first,
        rate=len(boxes) / (last - first),
        throttled=sum(1 for c in exchange if c.status == 429),
        lost=lost,
        duplicated=duplicated,
        results_recorded=len(recorded),
        results_unique=len(set(recorded) & {b.lower() for b in boxes}),
        outcome=str(output.get("outcome", output.get("status"))),
        total_seconds=total,
        parent_history=max(s.history_len for s in parent),
        longest_episode_s=longest[2].total_seconds,
        longest_episode_sdk_s=longest[2].sdk_seconds,
        longest_episode_instance=longest[1],
        longest_episode_cpu_s=longest[2].cpu_seconds,
        most_episode_cpu_s=max(e[2].cpu_seconds for e in recorder.episodes),
        longest_episode_gc_s=longest[2].gc_seconds,
        most_episode_gc_s=max(e[2].gc_seconds for e in recorder.episodes),
        episodes=len(recorder.episodes),
        host_cpu_seconds=cpu,
        mailbox_seconds=max(c.end for c in logins) - first,
        logins=len(logins),
        protocols=len({c.service for c in logins}),
        timeline=[(c.start - first, c.end - first, c.status, c.cmdlets) for c in exchange],
    )


@dataclass
class ManualRun:
    mailboxes: int
    seconds: float
    rate: float


def run_manual(workdir: Path, count: int) -> ManualRun:
    """The manual procedure's way: one Add-MailboxPermission after the other (a PowerShell loop), through
    the same adapter and against the same throttled stand-in."""
    boxes = mailbox_names(count, prefix="manual")
    with rig(workdir, mailboxes=boxes, configure=throttle) as r:
        state = r.sandbox.state
        app_id, sp_id, _ = r.sandbox.create_client_app("Manual mail connector", roles=["IMAP.AccessAsApp"])
        state.add_exchange_sp(app_id, sp_id, "Manual mail connector")
        asyncio.run(_grant_one_by_one(boxes, sp_id))
        first, last, done = grant_window(r.recorder.calls)
        if done < count:
            raise RuntimeError(f"the manual loop granted {done} of {count}")
        return ManualRun(count, last - first, count / (last - first))


async def _grant_one_by_one(boxes: list[str], sp_id: str) -> None:
    from onboarding.adapters.exchange import ExchangeAdmin
    from onboarding.adapters.identity import function_credential
    from onboarding.settings import Settings

    settings = Settings.from_env()
    credential = function_credential(settings)
    exchange = ExchangeAdmin(settings, credential, max_concurrency=1)
    try:
        for box in boxes:
            await exchange.grant_full_access(box, sp_id)
    finally:
        await exchange.close()
        await credential.close()
