"""CPU per mailbox of a whole onboarding in the host's process: its activities, its orchestrator
episodes and the engine that runs them, read from the kernel's account of the process (user + system
time), from the request to the result, divided by the mailboxes.

The host has already served one small onboarding (``WARM_UP`` mailboxes) when the clock starts, so
the figure is a worker's steady state: the first onboarding of a worker also pays for the lazily
imported SDKs (reported apart).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.grants import throttle
from bench.rig import mailbox_names, process_cpu_seconds, rig

WARM_UP = 10


@dataclass(frozen=True)
class CpuRun:
    mailboxes: int
    cpu_seconds: float
    wall_seconds: float
    warm_up_cpu_seconds: float
    outcome: str
    # The same span's CPU of the stand-ins sharing the machine: the sandbox's services (this
    # benchmark's process) and Dovecot's processes (the exited ones counted by their parent).
    stand_in_cpu_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def per_mailbox_ms(self) -> float:
        return self.cpu_seconds / self.mailboxes * 1000


def group_cpu_seconds(group: int | None) -> float:
    """User + system CPU of every process of a process group (Dovecot's), with its reaped children's
    (Linux /proc); 0 without a group."""
    total = 0.0
    for entry in Path("/proc").iterdir() if group is not None else ():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # it exited meanwhile
            continue
        if int(fields[2]) == group:
            total += sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")
    return total


def run(workdir: Path, count: int) -> CpuRun:
    boxes = mailbox_names(count)
    with rig(workdir, mailboxes=boxes, configure=throttle) as r:
        assert r.host.pid is not None
        cpu0 = process_cpu_seconds(r.host.pid)
        instance = r.submit(boxes[:WARM_UP])
        r.consent_all(1)
        r.wait(instance, timeout=600)
        cpu1 = process_cpu_seconds(r.host.pid)
        group = r.sandbox.mail.process_group if r.sandbox.mail is not None else None
        sandbox1, dovecot1 = process_cpu_seconds(os.getpid()), group_cpu_seconds(group)
        began = time.perf_counter()
        instance = r.submit(boxes)
        r.consent_all(2)
        output = r.wait(instance, timeout=3600, quick=False)
        wall = time.perf_counter() - began
        cpu2 = process_cpu_seconds(r.host.pid)
        stand_ins = {
            "the sandbox's services": process_cpu_seconds(os.getpid()) - sandbox1,
            "Dovecot": group_cpu_seconds(group) - dovecot1,
        }
        return CpuRun(count, cpu2 - cpu1, wall, cpu1 - cpu0, str(output.get("outcome")), stand_ins)
