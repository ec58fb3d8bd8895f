"""Benchmark 3: one onboarding of 10 mailboxes end to end, with every service slowed to realistic
latencies, against the sum of the latencies on its critical path.

The critical path is read from the calls the sandbox answered (and the mail logins): the chain of
calls, each starting after the previous one ended, whose added latencies sum highest. Calls that
overlap (ten grants at once) count once; that sum is the least any implementation of the procedure
could take with these latencies, given the calls it makes.
"""

from __future__ import annotations

import bisect
import time
from dataclasses import dataclass
from pathlib import Path

from bench.rig import Call, mailbox_names, rig
from sandbox import Sandbox

LATENCY_S = {
    "graph": 0.100,
    "exchange": 0.300,
    "keyvault": 0.050,
    "entra": 0.050,  # token endpoint (client secret) and the consent pages
    "identity": 0.050,  # managed identity token endpoint
    "imap": 0.100,
    "pop": 0.100,
}
MAILBOXES = 10


def slow(sandbox: Sandbox) -> None:
    for service in ("graph", "exchange", "keyvault", "entra", "identity"):
        sandbox.faults[service].configure(latency_ms=LATENCY_S[service] * 1000)


@dataclass
class E2ERun:
    wall_seconds: float
    critical_seconds: float
    critical_calls: int
    calls: int
    outcome: str
    chain: list[str]

    @property
    def ratio(self) -> float:
        return self.wall_seconds / self.critical_seconds


def critical_path(calls: list[Call], since: float, until: float = float("inf")) -> tuple[float, list[Call]]:
    """Weighted interval scheduling: the chain of non-overlapping calls with the largest latency sum."""
    items = sorted(
        (c for c in calls if c.start >= since and c.end <= until and c.service in LATENCY_S),
        key=lambda c: c.end,
    )
    ends = [c.end for c in items]
    best = [0.0] * (len(items) + 1)  # best[i]: the best chain among the first i calls (by end)
    take = [False] * len(items)
    before = [0] * len(items)
    for i, call in enumerate(items):
        before[i] = bisect.bisect_right(ends, call.start, 0, i)
        with_it = best[before[i]] + LATENCY_S[call.service]
        take[i] = with_it > best[i]
        best[i + 1] = with_it if take[i] else best[i]
    chain: list[Call] = []
    i = len(items)
    while i > 0:
        if take[i - 1]:
            chain.append(items[i - 1])
            i = before[i - 1]
        else:
            i -= 1
    return best[-1], chain[::-1]


def run(workdir: Path, count: int) -> list[E2ERun]:
    """``count`` onboardings one after the other on one host; the first is the worker's first (it pays
    for the lazy imports), as in a function app that has just started."""
    boxes = mailbox_names(MAILBOXES)
    runs = []
    with rig(workdir, mailboxes=boxes, configure=slow, mail_latency_s=LATENCY_S["imap"]) as r:
        r.sandbox.state.outbox()  # warm the readers before the clock starts
        for _ in range(count):
            since = time.time()
            began = time.perf_counter()
            instance = r.submit(boxes)
            r.consent_all(len(r.clicked) + 1, poll=0.002)
            output = r.wait(instance, timeout=300)
            wall = time.perf_counter() - began
            total, chain = critical_path(r.recorder.calls, since, time.time())
            runs.append(
                E2ERun(
                    wall_seconds=wall,
                    critical_seconds=total,
                    critical_calls=len(chain),
                    calls=sum(1 for c in r.recorder.calls if since <= c.start),
                    outcome=str(output.get("outcome")),
                    chain=[c.service for c in chain],
                )
            )
    return runs
