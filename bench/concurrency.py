"""Benchmark 5: many onboardings submitted at once, on one throttled tenant.

Every onboarding must end succeeded with each of its mailboxes verified and exactly one FullAccess
permission for its own app on each; the busiest service's achieved rate is compared with its limit.
"""

from __future__ import annotations

import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from bench.grants import RATE_LIMIT, throttle
from bench.rig import mailbox_names, rig


@dataclass
class ConcurrencyRun:
    onboardings: int
    mailboxes_each: int
    correct: int
    problems: list[str]
    total_seconds: float
    busiest_service: str
    busiest_requests: int
    exchange_requests: int
    exchange_throttled: int
    exchange_rate: float  # answered (not 429) Exchange calls per second while Exchange was in use
    refused_early: int  # consent clicks refused with 410 before the orchestration recorded its wait

    @property
    def exchange_share(self) -> float:
        return self.exchange_rate / RATE_LIMIT


def run(workdir: Path, onboardings: int = 100, each: int = 20) -> ConcurrencyRun:
    boxes = mailbox_names(onboardings * each)
    groups = [boxes[i * each : (i + 1) * each] for i in range(onboardings)]
    with rig(workdir, mailboxes=boxes, configure=throttle) as r:
        began = time.perf_counter()
        with ThreadPoolExecutor(16) as pool:
            instances = list(pool.map(r.submit, groups))
        r.consent_all(onboardings, timeout=900, poll=0.05)
        outputs = [r.wait(i, timeout=1800) for i in instances]
        total = time.perf_counter() - began

        held = Counter((p.mailbox, p.user) for p in r.sandbox.state.mailbox_permissions())
        problems = []
        for group, output in zip(groups, outputs, strict=True):
            sp_id = str((output.get("app") or {}).get("service_principal_id"))
            states = Counter(output.get("mailbox_counts") or {})
            if output.get("outcome") != "succeeded" or states != Counter({"verified": each}):
                problems.append(f"{output.get('onboarding_id')}: {output.get('outcome')} {dict(states)}")
            wrong = [b for b in group if held[(b.lower(), sp_id)] != 1]
            if wrong:
                problems.append(
                    f"{output.get('onboarding_id')}: {len(wrong)} mailboxes without exactly one grant"
                )
        extra = sum(held.values()) - onboardings * each
        if extra:
            problems.append(f"{extra} permissions beyond one per (mailbox, app)")

        calls = r.recorder.calls
        by_service = Counter(c.service for c in calls)
        busiest, busiest_n = by_service.most_common(1)[0]
        exchange = [c for c in calls if c.service == "exchange"]
        answered = [c for c in exchange if c.status != 429]
        span = max(c.end for c in exchange) - min(c.start for c in exchange)
        return ConcurrencyRun(
            onboardings=onboardings,
            mailboxes_each=each,
            correct=onboardings - len({p.split(":")[0] for p in problems}),
            problems=problems,
            total_seconds=total,
            busiest_service=busiest,
            busiest_requests=busiest_n,
            exchange_requests=len(exchange),
            exchange_throttled=len(exchange) - len(answered),
            exchange_rate=len(answered) / span,
            refused_early=r.refused_early,
        )
