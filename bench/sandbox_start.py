"""How long the sandbox tenant takes to start and stop, in-process and as ``python -m sandbox``.

Run: ``.venv/bin/python -m bench.sandbox_start`` (or ``python bench/sandbox_start.py``). The budget is
3 s to start; the pytest fixture pays the in-process figure once per test.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BUDGET_S = 3.0


def in_process(runs: int, start_mail: bool) -> tuple[float, list[float], list[float]]:
    began = time.perf_counter()
    from sandbox import Sandbox, SandboxConfig

    import_s = time.perf_counter() - began
    starts, stops = [], []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            sb = Sandbox(SandboxConfig(base_dir=Path(tmp), start_mail=start_mail)).start()
            t1 = time.perf_counter()
            sb.stop()
            starts.append(t1 - t0)
            stops.append(time.perf_counter() - t1)
    return import_s, starts, stops


def standalone() -> float:
    """From process launch until the settings line is printed (every service listening)."""
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "sandbox", "--base-dir", tmp],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            assert proc.stdout is not None
            env = json.loads(proc.stdout.readline())
            elapsed = time.perf_counter() - t0
            assert "GRAPH_ENDPOINT" in env
        finally:
            proc.terminate()
            proc.wait(timeout=10)
        return elapsed


def main() -> int:
    import_s, starts, stops = in_process(10, start_mail=True)
    _, starts_no_mail, _ = in_process(10, start_mail=False)
    process_s = standalone()
    report = {
        "import_s": round(import_s, 3),
        "start_with_dovecot_median_s": round(statistics.median(starts), 3),
        "start_with_dovecot_max_s": round(max(starts), 3),
        "start_without_mail_median_s": round(statistics.median(starts_no_mail), 3),
        "stop_median_s": round(statistics.median(stops), 3),
        "python_m_sandbox_ready_s": round(process_s, 3),
        "budget_s": BUDGET_S,
    }
    print(json.dumps(report, indent=2))
    return 0 if process_s < BUDGET_S and max(starts) < BUDGET_S else 1


if __name__ == "__main__":
    raise SystemExit(main())
