"""Exchange ``$batch`` against single calls: the grant phase of one onboarding, both ways, side by side.

The product's grant step (``steps.grant_mailboxes``) runs over the real adapter in a process of its
own (the sandbox stays in the bench's process, so neither's CPU slows the other through one GIL), as
the batch activities run it in a worker: batches of ``MAILBOX_BATCH_SIZE`` mailboxes, ``MAILBOX_FANOUT``
of them at a time, each with its own adapter over the worker's shared limiter. Against the same
throttled Exchange stand-in as benchmark 1 (10 concurrent calls, 100 calls per second, +50 ms), where
a ``$batch`` counts each of its cmdlets (docs/sandbox-facts.md EX-11), so the two ways have the same
allowed minimum: mailboxes / 100 s. The runs alternate (single, batch, single, batch ...) so that a
busy moment of the shared machine does not fall on one way only; the medians are compared.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from types import SimpleNamespace

from bench.grants import RATE_LIMIT, throttle
from bench.rig import ROOT, mailbox_names
from sandbox import Sandbox, SandboxConfig


@dataclass(frozen=True)
class GrantPhase:
    mode: str
    mailboxes: int
    seconds: float
    requests: int  # HTTP requests that reached Exchange
    throttled: int  # of them answered 429
    cpu_seconds: float  # the granting process's CPU (the product's side only)
    lost: int
    duplicated: int

    @property
    def ratio_to_allowed(self) -> float:
        return self.seconds / (self.mailboxes / RATE_LIMIT)


@dataclass(frozen=True)
class Comparison:
    batch: GrantPhase
    single: GrantPhase
    runs: list[GrantPhase]

    @property
    def ratio(self) -> float:
        """Batch time over single-call time: below 1, $batch is faster."""
        return self.batch.seconds / self.single.seconds

    @property
    def correct(self) -> bool:
        return all(r.lost == 0 and r.duplicated == 0 for r in self.runs)


def run(workdir: Path, count: int, repeats: int = 1) -> Comparison:
    runs: list[GrantPhase] = []
    for i in range(repeats):
        for mode in ("single", "batch"):
            runs.append(grant_phase(workdir / f"{mode}-{i}", count, mode))
    return Comparison(median_of(runs, "batch"), median_of(runs, "single"), runs)


def median_of(runs: list[GrantPhase], mode: str) -> GrantPhase:
    mine = sorted((r for r in runs if r.mode == mode), key=lambda r: r.seconds)
    return mine[len(mine) // 2]


def grant_phase(workdir: Path, count: int, mode: str) -> GrantPhase:
    """Grant ``count`` mailboxes with ``EXCHANGE_CALLS=mode`` against a fresh throttled sandbox."""
    boxes = mailbox_names(count)
    sandbox = Sandbox(SandboxConfig(base_dir=workdir, mailboxes=boxes, start_mail=False)).start()
    saved = dict(os.environ)
    try:
        os.environ.update(sandbox.env)  # the trust store and identity endpoint the client libraries read
        app_id, sp_id, _ = sandbox.create_client_app("Bench mail client", roles=["IMAP.AccessAsApp"])
        sandbox.state.add_exchange_sp(app_id, sp_id, "Bench mail client")
        throttle(sandbox)
        child = subprocess.run(
            [sys.executable, "-m", "bench.exbatch"],
            input=json.dumps({"boxes": boxes, "sp_id": sp_id}),
            env={**os.environ, "EXCHANGE_CALLS": mode, "PYTHONPATH": str(ROOT)},
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=3600,
            check=False,
        )
        if child.returncode != 0:
            raise RuntimeError(f"the {mode} grant phase failed: {child.stderr[-2000:]}")
        measured = json.loads(child.stdout.strip().splitlines()[-1])
        seconds, cpu = measured["seconds"], measured["cpu_seconds"]
        exchange = [e for e in sandbox.state.request_log() if e.service == "exchange"]
        held = Counter(p.mailbox.lower() for p in sandbox.state.mailbox_permissions() if p.user == sp_id)
        return GrantPhase(
            mode=mode,
            mailboxes=count,
            seconds=seconds,
            requests=len(exchange),
            throttled=sum(1 for e in exchange if e.status == 429),
            cpu_seconds=cpu,
            lost=len({b.lower() for b in boxes} - set(held)),
            duplicated=sum(n - 1 for n in held.values() if n > 1),
        )
    finally:
        sandbox.stop()
        os.environ.clear()
        os.environ.update(saved)


def main() -> None:
    """The granting process: reads the mailboxes and principal on stdin, prints its times as JSON."""
    import onboarding.adapters.exchange
    import onboarding.adapters.identity
    import onboarding.steps  # noqa: F401 - imported before the clock starts

    job = json.loads(sys.stdin.read())
    began_cpu, began = time.process_time(), time.perf_counter()
    asyncio.run(_grant_all(dict(os.environ), job["boxes"], job["sp_id"]))
    seconds, cpu = time.perf_counter() - began, time.process_time() - began_cpu
    print(json.dumps({"seconds": seconds, "cpu_seconds": cpu}))


async def _grant_all(env: dict[str, str], boxes: list[str], sp_id: str) -> None:
    from onboarding import steps
    from onboarding.adapters.exchange import ExchangeAdmin
    from onboarding.adapters.identity import function_credential
    from onboarding.domain import MailboxState
    from onboarding.settings import Settings

    settings = Settings.from_env(env)
    credential = function_credential(settings)
    size = settings.mailbox_batch_size
    chunks = [boxes[i : i + size] for i in range(0, len(boxes), size)]
    gate = asyncio.Semaphore(settings.mailbox_fanout)

    async def activity(chunk: list[str]) -> None:
        async with gate:
            exchange = ExchangeAdmin(settings, credential)
            try:
                svc = SimpleNamespace(exchange=exchange, settings=replace(settings))
                results = await steps.grant_mailboxes(
                    svc,
                    service_principal_id=sp_id,
                    mailboxes=chunk,
                    protocols=["IMAP"],
                )
            finally:
                await exchange.close()
            failed = [r for r in results if r.state is not MailboxState.GRANTED]
            if failed:
                raise RuntimeError(f"{len(failed)} grants failed, e.g. {failed[0]}")

    try:
        await asyncio.gather(*(activity(c) for c in chunks))
    finally:
        await credential.close()


def summary(result: Comparison) -> str:
    b, s = result.batch, result.single
    return (
        f"$batch {b.seconds:.1f} s ({b.ratio_to_allowed:.2f}x the allowed minimum) vs single calls "
        f"{s.seconds:.1f} s ({s.ratio_to_allowed:.2f}x) = **{result.ratio:.2f}x**; HTTP requests "
        f"{b.requests:,} vs {s.requests:,}, throttled {b.throttled} vs {s.throttled}, CPU of the granting "
        f"process {b.cpu_seconds:.1f} s vs {s.cpu_seconds:.1f} s (medians of "
        f"{len(result.runs) // 2} alternating runs each: batch "
        f"{', '.join(f'{r.seconds:.1f}' for r in result.runs if r.mode == 'batch')} s; single "
        f"{', '.join(f'{r.seconds:.1f}' for r in result.runs if r.mode == 'single')} s)"
    )


def spread(result: Comparison) -> float:
    """The relative spread of each way's runs, for judging whether a ratio is more than noise."""
    worst = 0.0
    for mode in ("batch", "single"):
        times = [r.seconds for r in result.runs if r.mode == mode]
        if len(times) > 1:
            worst = max(worst, (max(times) - min(times)) / statistics.median(times))
    return worst


if __name__ == "__main__":
    main()
