"""Replay cost of one episode: the SDK alone versus the host's whole episode (load, replay, persist).

Run: `.venv/bin/python bench/replay.py` (about a minute). Histories of ~100, ~1,000 and ~10,000 events
are built by a fan-out, then each measured episode delivers one external event, which makes the SDK
replay the whole history. "SDK" is the time inside the orchestrator's `handle`; "host warm" is the
host's full episode with its in-memory history cache; "host cold" adds loading the history from SQLite.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from funchost import LocalHost, ManualClock  # noqa: E402

APP = ROOT / "tests" / "funchost" / "apps" / "samples"
REPEATS = 9


def build(db: Path, fan: int) -> str:
    with LocalHost(APP, db_path=db, clock=ManualClock(), max_activity_workers=8) as host:
        instance_id = host.engine.start_new("bench_fan", "bench", json.dumps(fan))
        host.idle(timeout=600)
        return instance_id


def episode(host: LocalHost, instance_id: str) -> tuple[float, float, int]:
    host.engine.raise_event(instance_id, "Go", json.dumps("again"))
    stats = host.run_episode_now(instance_id)
    assert stats is not None and stats.status == "Running", stats
    return stats.sdk_seconds, stats.total_seconds, stats.history_len


def measure(events: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "hub.db"
        instance_id = build(db, max(1, events // 2 - 4))
        host = LocalHost(APP, db_path=db, clock=ManualClock())  # not started: episodes run on this thread
        try:
            cold_sdk, cold_total, length = episode(host, instance_id)
            runs = [episode(host, instance_id) for _ in range(REPEATS)]
        finally:
            host.stop()
    sdk = statistics.median(r[0] for r in runs)
    total = statistics.median(r[1] for r in runs)
    return {"events": length, "sdk": sdk, "host": total, "cold": cold_total, "cold_sdk": cold_sdk}


def main() -> None:
    rows = []
    for events in (100, 1_000, 10_000):
        started = time.perf_counter()
        row = measure(events)
        rows.append(row)
        print(f"measured {row['events']} events in {time.perf_counter() - started:.1f}s", file=sys.stderr)
    print(
        "| history events | SDK replay (handle) | host episode, warm | overhead | cold episode (SDK part) |"
    )
    print("|---:|---:|---:|---:|---:|")
    for row in rows:
        overhead = (row["host"] - row["sdk"]) / row["sdk"] * 100
        print(
            f"| {row['events']:,} | {row['sdk'] * 1000:.1f} ms | {row['host'] * 1000:.1f} ms | "
            f"{overhead:+.1f}% | {row['cold'] * 1000:.1f} ms ({row['cold_sdk'] * 1000:.1f} ms) |"
        )


if __name__ == "__main__":
    main()
