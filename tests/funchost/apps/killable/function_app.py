"""Deterministic orchestrations for crash tests: results depend only on inputs, never on timing."""

import os
import time
from datetime import timedelta

import azure.durable_functions as df
import azure.functions as func

app = df.DFApp(http_auth_level=func.AuthLevel.FUNCTION)


def _record(name: str, value: object) -> None:
    # Every start of an activity is logged, so the test can check at-least-once execution.
    with open(os.environ["KILL_LOG"], "a") as log:
        log.write(f"{name}:{value}\n")


@app.activity_trigger(input_name="value")
def square(value: int) -> int:
    _record("square", value)
    time.sleep(0.02)
    return value * value


@app.activity_trigger(input_name="value")
def always_fails(value: int) -> int:
    _record("always_fails", value)
    raise RuntimeError("nope")


@app.orchestration_trigger(context_name="context")
def sequence(context: df.DurableOrchestrationContext):
    start = context.get_input()
    total = 0
    for i in range(start, start + 8):
        total += yield context.call_activity("square", i)
    return total


@app.orchestration_trigger(context_name="context")
def fan(context: df.DurableOrchestrationContext):
    start = context.get_input()
    values = yield context.task_all([context.call_activity("square", start + i) for i in range(25)])
    return sum(values)


@app.orchestration_trigger(context_name="context")
def timed(context: df.DurableOrchestrationContext):
    yield context.create_timer(context.current_utc_datetime + timedelta(milliseconds=300))
    value = yield context.call_activity("square", context.get_input())
    return value


@app.orchestration_trigger(context_name="context")
def nested(context: df.DurableOrchestrationContext):
    first = yield context.call_sub_orchestrator("sequence", context.get_input())
    second = yield context.call_sub_orchestrator("fan", context.get_input())
    return first + second


@app.orchestration_trigger(context_name="context")
def give_up(context: df.DurableOrchestrationContext):
    options = df.RetryOptions(first_retry_interval_in_milliseconds=100, max_number_of_attempts=3)
    try:
        yield context.call_activity_with_retry("always_fails", options, context.get_input())
    except Exception:
        return "gave up"
    return "impossible"


@app.orchestration_trigger(context_name="context")
def generations(context: df.DurableOrchestrationContext):
    value = context.get_input()
    value += yield context.call_activity("square", value)
    if value < 1000:
        context.continue_as_new(value)
        return None
    return value


@app.activity_trigger(input_name="value")
def slow_square(value: int) -> int:
    _record("slow_square", value)
    time.sleep(1.5)
    return value * value


@app.orchestration_trigger(context_name="context")
def slow(context: df.DurableOrchestrationContext):
    value = yield context.call_activity("slow_square", context.get_input())
    return value
