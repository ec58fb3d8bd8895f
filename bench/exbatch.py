"""Exchange ``$batch`` against single calls: whole onboardings of the same mailboxes, both ways, side
by side.

Each run is one onboarding through the product, as benchmark 1 runs it (the function app on the local
host, the throttled Exchange stand-in: 10 concurrent calls, 100 calls per second, +50 ms, where a
``$batch`` counts each of its cmdlets, docs/sandbox-facts.md EX-11), with ``EXCHANGE_CALLS`` set one
way or the other; nothing else differs. Both ways have the same allowed minimum for the grants,
mailboxes / 100 s. What is compared is the mailbox phase a requester waits for: from the first grant
to the last verified login, the grants and the verification that runs beside them in the same worker.

The comparison used to time the grant step alone, over the adapter in a process of its own. There
single calls were the faster by 4% (both bound by the throttling), but that left out what shares the
worker with the grants in an onboarding: single calls use about four times the CPU of ``$batch``
(docs/bench.md), which the verification needs at the same time. The runs alternate (single, batch,
single, batch ...) so that a busy moment of the shared machine does not fall on one way only; the
medians are compared.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path

from bench.grants import RATE_LIMIT, GrantRun, run_onboarding


@dataclass(frozen=True)
class Way:
    """One onboarding with ``EXCHANGE_CALLS=mode``."""

    mode: str
    mailboxes: int
    seconds: float  # the mailbox phase: first grant request to the last login's end
    grant_seconds: float  # first grant request to the last grant's answer
    requests: int  # HTTP requests that reached Exchange
    throttled: int  # of them answered 429
    cpu_seconds: float  # the host process's CPU over the onboarding (the product's side only)
    correct: bool  # nothing lost or duplicated, every result recorded, the onboarding succeeded

    @property
    def grant_ratio_to_allowed(self) -> float:
        return self.grant_seconds / (self.mailboxes / RATE_LIMIT)

    @classmethod
    def of(cls, mode: str, run: GrantRun) -> Way:
        return cls(
            mode=mode,
            mailboxes=run.mailboxes,
            seconds=run.mailbox_seconds,
            grant_seconds=run.grant_seconds,
            requests=len(run.timeline),
            throttled=run.throttled,
            cpu_seconds=run.host_cpu_seconds,
            correct=run.nothing_lost and run.outcome == "succeeded",
        )


@dataclass(frozen=True)
class Comparison:
    batch: Way
    single: Way
    runs: list[Way]

    @property
    def ratio(self) -> float:
        """Batch time over single-call time for the mailbox phase: below 1, $batch is faster."""
        return self.batch.seconds / self.single.seconds

    @property
    def correct(self) -> bool:
        return all(r.correct for r in self.runs)


def run(workdir: Path, count: int, repeats: int = 1) -> Comparison:
    runs: list[Way] = []
    for i in range(repeats):
        for mode in ("single", "batch"):
            here = workdir / f"{mode}-{i}"
            here.mkdir(parents=True)
            onboarding = run_onboarding(here, count, extra_env={"EXCHANGE_CALLS": mode})
            runs.append(Way.of(mode, onboarding))
    return Comparison(median_of(runs, "batch"), median_of(runs, "single"), runs)


def median_of(runs: list[Way], mode: str) -> Way:
    mine = sorted((r for r in runs if r.mode == mode), key=lambda r: r.seconds)
    return mine[len(mine) // 2]


def summary(result: Comparison) -> str:
    b, s = result.batch, result.single
    return (
        f"grants and verification: $batch {b.seconds:.1f} s vs single calls {s.seconds:.1f} s = "
        f"**{result.ratio:.2f}x**; grant phase {b.grant_seconds:.1f} s ({b.grant_ratio_to_allowed:.2f}x the "
        f"allowed minimum) vs {s.grant_seconds:.1f} s ({s.grant_ratio_to_allowed:.2f}x); HTTP requests to "
        f"Exchange {b.requests:,} vs {s.requests:,}, throttled {b.throttled} vs {s.throttled}; host CPU "
        f"{b.cpu_seconds:.1f} s vs {s.cpu_seconds:.1f} s (medians of {len(result.runs) // 2} alternating "
        f"runs each: batch {', '.join(f'{r.seconds:.1f}' for r in result.runs if r.mode == 'batch')} s; "
        f"single {', '.join(f'{r.seconds:.1f}' for r in result.runs if r.mode == 'single')} s)"
    )


def spread(result: Comparison) -> float:
    """The relative spread of each way's runs, for judging whether a ratio is more than noise."""
    worst = 0.0
    for mode in ("batch", "single"):
        times = [r.seconds for r in result.runs if r.mode == mode]
        if len(times) > 1:
            worst = max(worst, (max(times) - min(times)) / statistics.median(times))
    return worst
