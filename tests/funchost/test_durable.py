"""Durable patterns on the local host, driven by the real SDK's replay and a manual clock."""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from funchost import LocalHost, ManualClock

from .conftest import drive


def start(host: LocalHost, name: str, value: Any = None) -> str:
    return host.engine.start_new(name, None, json.dumps(value))


def history_types(host: LocalHost, instance_id: str) -> list[str]:
    status = host.get_status(instance_id, show_history=True)
    assert status is not None
    return [e["EventType"] for e in status["history"]]


def test_chain_runs_activities_in_order(samples: LocalHost) -> None:
    instance_id = start(samples, "chain", ["Tokyo", "Seattle", "London"])
    status = samples.wait_for(instance_id)
    assert status["runtimeStatus"] == "Completed"
    assert status["output"] == ["Hello Tokyo", "Hello Seattle", "Hello London"]
    assert history_types(samples, instance_id).count("TaskScheduled") == 3


def test_fan_out_of_1000_completes_on_the_running_host(samples: LocalHost) -> None:
    instance_id = start(samples, "fan_out", 1000)
    status = samples.wait_for(instance_id, timeout=120)
    assert status["output"] == sum(2 * i for i in range(1000))
    # How many episodes it takes depends on how the activities and replays interleave on a busy
    # machine; one per completion (1,001) would mean no completions were ever delivered together.
    assert samples.episode_count(instance_id) < 1001


def test_completions_that_arrive_between_episodes_are_delivered_in_one(
    tmp_path: Path, clock: ManualClock
) -> None:
    """The batched dequeue, step by step: 1,000 completions recorded while no episode runs are
    replayed once, not 1,000 times (which is what makes a fan-out O(N^2))."""
    from .conftest import SAMPLES

    host = LocalHost(SAMPLES, db_path=tmp_path / "hub.db", clock=clock)  # not started: we dispatch
    try:
        instance_id = start(host, "fan_out", 1000)
        first = host.run_episode_now(instance_id)
        assert first is not None and first.events_in == 1
        work = host.engine.pending_work()
        assert len(work) == 1000
        for work_id, *_ignored, input_text in work:
            host.engine.complete_work(work_id, json.dumps(2 * json.loads(input_text or "0")), None)
        second = host.run_episode_now(instance_id)
        assert second is not None and second.events_in == 1000
        assert host.run_episode_now(instance_id) is None  # nothing left to deliver
        status = host.get_status(instance_id)
        assert status is not None and status["runtimeStatus"] == "Completed"
        assert status["output"] == sum(2 * i for i in range(1000))
        assert host.episode_count(instance_id) == 2
    finally:
        host.stop()


def test_activities_run_concurrently_but_never_beyond_the_pool(
    local_host_factory: Any, sample_state: dict[str, Any], clock: ManualClock
) -> None:
    from .conftest import SAMPLES

    host = local_host_factory(SAMPLES, clock=clock, max_activity_workers=3)
    instance_id = start(host, "fan_out", {"n": 12, "pause": 0.05})
    assert host.wait_for(instance_id)["output"] == 12
    assert sample_state["peak"] == 3


def test_approval_event_wins_and_the_timer_is_cancelled(samples: LocalHost, clock: ManualClock) -> None:
    instance_id = start(samples, "approval", {"hours": 24})
    samples.idle()
    assert samples.engine.raise_event(instance_id, "Approval", json.dumps("yes")) == "ok"
    status = samples.wait_for(instance_id)
    assert status["output"] == {"approved": "yes"}
    clock.advance(timedelta(hours=25))  # the cancelled timer must not wake anything
    samples.idle()
    assert samples.get_status(instance_id)["output"] == {"approved": "yes"}  # type: ignore[index]


@pytest.mark.parametrize("hours", [24, 5 * 24])
def test_approval_timer_wins_at_the_deadline(samples: LocalHost, clock: ManualClock, hours: int) -> None:
    instance_id = start(samples, "approval", {"hours": hours})
    samples.idle()
    clock.advance(timedelta(hours=hours - 1, minutes=59))
    samples.idle()
    assert samples.get_status(instance_id)["runtimeStatus"] == "Running"  # type: ignore[index]
    clock.advance(timedelta(minutes=2))
    assert samples.wait_for(instance_id)["output"] == "timed out"


def test_approval_raised_before_the_wait_is_buffered(samples: LocalHost, clock: ManualClock) -> None:
    instance_id = start(samples, "approval", {"hours": 24, "delay_hours": 1})
    samples.idle()
    samples.engine.raise_event(instance_id, "Approval", json.dumps("early"))
    samples.idle()  # delivered while the orchestrator still waits on its first timer
    assert samples.get_status(instance_id)["runtimeStatus"] == "Running"  # type: ignore[index]
    clock.advance(timedelta(hours=1))
    assert samples.wait_for(instance_id)["output"] == {"approved": "early"}


def test_retry_succeeds_on_the_third_attempt(
    samples: LocalHost, clock: ManualClock, sample_state: dict
) -> None:
    instance_id = start(samples, "retrying", {"key": "ok3", "failures": 2})
    status = drive(samples, clock, instance_id, timedelta(seconds=1))
    assert status["output"] == "ok after 3"
    types = history_types(samples, instance_id)
    assert types.count("TaskScheduled") == 3 and types.count("TimerCreated") == 2


def test_retry_exhausted_fails_the_orchestration(
    samples: LocalHost, clock: ManualClock, sample_state: dict
) -> None:
    instance_id = start(samples, "retrying", {"key": "never", "failures": 99})
    status = drive(samples, clock, instance_id, timedelta(seconds=1))
    assert status["runtimeStatus"] == "Failed"
    assert "attempt 3 failed" in status["output"]
    assert sample_state["attempts"]["never"] == 3


def test_activity_error_is_caught_by_the_orchestrator(samples: LocalHost) -> None:
    status = samples.wait_for(start(samples, "catching"))
    assert status["runtimeStatus"] == "Completed"
    assert status["output"].startswith("caught: ") and "ValueError: disk full" in status["output"]


def test_sub_orchestrations_with_and_without_retry(
    samples: LocalHost, clock: ManualClock, sample_state: dict
) -> None:
    instance_id = start(samples, "parent", {"key": "child", "failures": 1})
    status = drive(samples, clock, instance_id, timedelta(milliseconds=500))
    assert status["output"] == [["Hello Oslo"], "ok after 2"]
    types = history_types(samples, instance_id)
    assert types.count("SubOrchestrationInstanceCreated") == 3
    assert types.count("SubOrchestrationInstanceFailed") == 1


def test_continue_as_new_restarts_with_new_input_and_custom_status(samples: LocalHost) -> None:
    instance_id = start(samples, "counter", 0)
    status = samples.wait_for(instance_id)
    assert status["output"] == 3
    assert status["customStatus"] == {"value": 3}
    # The history is that of the last generation only.
    assert history_types(samples, instance_id).count("TaskScheduled") == 1


def test_terminate_stops_an_instance(samples: LocalHost) -> None:
    instance_id = start(samples, "waiter")
    samples.idle()
    assert samples.engine.terminate(instance_id, "no longer needed") == "ok"
    status = samples.wait_for(instance_id)
    assert status["runtimeStatus"] == "Terminated"
    assert status["output"] == "no longer needed"
    assert samples.engine.raise_event(instance_id, "Go", "1") == "gone"


def test_purge_removes_a_finished_instance(samples: LocalHost) -> None:
    running = start(samples, "waiter")
    done = start(samples, "chain")
    samples.wait_for(done)
    assert samples.engine.purge(running) == 0  # a running instance is not purged
    assert samples.engine.purge(done) == 1
    assert samples.get_status(done) is None


@pytest.mark.parametrize(
    ("change", "described"),
    [
        ("swap", ["is now CallActivity(double)", "recorded CallActivity(hello)"]),
        ("skip", ["no longer schedules CallActivity(hello)"]),
    ],
)
def test_non_deterministic_replay_fails_the_instance(
    samples: LocalHost, sample_state: dict, change: str, described: list[str]
) -> None:
    instance_id = start(samples, "drifting")
    samples.idle()
    sample_state["nondeterministic"] = change  # the code now does something else than history says
    samples.engine.raise_event(instance_id, "Go", "null")
    status = samples.wait_for(instance_id)
    assert status["runtimeStatus"] == "Failed"
    assert status["output"].startswith("Non-Deterministic workflow detected")
    assert all(text in status["output"] for text in described), status["output"]


def test_long_timer_is_split_into_short_timers(samples: LocalHost, clock: ManualClock) -> None:
    began = clock.now()
    instance_id = start(samples, "long_wait")
    status = drive(samples, clock, instance_id, timedelta(days=1), limit=15)
    assert status["runtimeStatus"] == "Completed"
    assert status["output"] >= (began + timedelta(days=10)).isoformat()
    # Longer than maximumShortTimerDuration (6 days): the SDK chains timers of 3 days, 3 days, then 4.
    assert history_types(samples, instance_id).count("TimerCreated") == 3


def test_daily_timer_trigger_fires_by_the_clock_and_on_demand(
    samples: LocalHost, clock: ManualClock, sample_state: dict
) -> None:
    samples.run_timer("daily_reminder")
    assert sample_state["timer_runs"] == 1
    clock.advance(timedelta(hours=1, seconds=1))  # 08:00 -> 09:00:01 passes the 09:00 schedule
    samples.idle()
    for _ in range(100):
        if sample_state["timer_runs"] == 2:
            break
        samples.idle()
    assert sample_state["timer_runs"] == 2
    samples.idle()
    # Like the real host, status shows the input as the JSON text the client sent.
    reminders = [i for i in samples.instances() if json.loads(i["input"] or "null") == ["reminder"]]
    assert len(reminders) == 2
    assert all(samples.wait_for(r["instanceId"])["output"] == ["Hello reminder"] for r in reminders)


def test_logs_name_the_function_and_instance_but_never_the_data(
    samples: LocalHost, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="funchost")
    instance_id = start(samples, "chain", ["s3cr3t-value"])
    assert samples.wait_for(instance_id)["output"] == ["Hello s3cr3t-value"]
    assert f"'Functions.chain' (instance={instance_id}" in caplog.text
    assert f"'Functions.hello' (instance={instance_id}" in caplog.text
    assert "s3cr3t" not in caplog.text


def test_retries_interleaved_with_other_work_keep_sequence_numbers_aligned(
    samples: LocalHost, clock: ManualClock, sample_state: dict
) -> None:
    instance_id = start(samples, "mixed_retries")
    status = drive(samples, clock, instance_id, timedelta(milliseconds=700))
    assert status["runtimeStatus"] == "Completed", status
    results, after, timer_done = status["output"]
    assert results == [r for i in range(6) for r in (f"ok after {i % 3 + 1}", 2 * i)]
    assert after == "Hello after" and timer_done is True
    history = samples.get_status(instance_id, show_history=True)["history"]  # type: ignore[index]
    scheduled = [e["EventId"] for e in history if e["EventType"] in ("TaskScheduled", "TimerCreated")]
    assert len(scheduled) == len(set(scheduled))  # every sequence number used once


def test_retry_failure_and_a_resuming_completion_in_one_episode(
    local_host_factory: Any, tmp_path: Any, clock: ManualClock, sample_state: dict
) -> None:
    """A completion that resumes the code and a retried failure arrive together, completion first.

    The SDK numbers the retry timer when it processes the failure; the host must deliver the
    failure before the completion, or its timer and the code's next activity swap sequence numbers.
    """
    from .conftest import SAMPLES

    host = LocalHost(SAMPLES, db_path=tmp_path / "race.db", clock=clock)  # not started: we pick the order
    instance_id = host.engine.start_new("race_retry", "race", "null")
    host.run_episode_now(instance_id)
    work = {item[4]: item[0] for item in host.engine.pending_work()}
    host.engine.complete_work(work["double"], "10", None)
    host.engine.complete_work(
        work["flaky"], None, ("Activity function 'flaky' failed: RuntimeError: once", "")
    )
    sample_state["attempts"]["race"] = 1  # the failure above was the first attempt
    host.run_episode_now(instance_id)
    host.start()
    try:
        status = drive(host, clock, instance_id, timedelta(seconds=1))
    finally:
        host.stop()
    assert status["output"] == [10, "Hello next", "ok after 2"]


def test_naive_datetime_timer_fails_as_in_azure(samples: LocalHost) -> None:
    status = samples.wait_for(start(samples, "naive_timer"))
    assert status["runtimeStatus"] == "Failed"
    assert "offset-naive" in status["output"]
