"""Small orchestrations that exercise the local host: one pattern each."""

import asyncio
import json
import threading
import time
from datetime import timedelta

import azure.durable_functions as df
import azure.functions as func

app = df.DFApp(http_auth_level=func.AuthLevel.FUNCTION)

# Test switches and counters; activities and triggers read them, orchestrators read them only in
# the non-determinism sample (on purpose).
STATE: dict = {"attempts": {}, "nondeterministic": False, "timer_runs": 0, "running": 0, "peak": 0}
LOCK = threading.Lock()


# ---------------------------------------------------------------- activities
@app.activity_trigger(input_name="name")
def hello(name: str) -> str:
    return f"Hello {name}"


@app.activity_trigger(input_name="value")
async def double(value: int) -> int:
    await asyncio.sleep(0)
    return value * 2


@app.activity_trigger(input_name="spec")
def flaky(spec: dict) -> str:
    """Fails `spec['failures']` times per key, then succeeds."""
    seen = STATE["attempts"].get(spec["key"], 0) + 1
    STATE["attempts"][spec["key"]] = seen
    if seen <= spec["failures"]:
        raise RuntimeError(f"attempt {seen} failed")
    return f"ok after {seen}"


@app.activity_trigger(input_name="pause")
def slow(pause: float) -> int:
    with LOCK:
        STATE["running"] += 1
        STATE["peak"] = max(STATE["peak"], STATE["running"])
    time.sleep(pause)
    with LOCK:
        STATE["running"] -= 1
    return 1


@app.activity_trigger(input_name="message")
def boom(message: str) -> str:
    raise ValueError(message)


# ---------------------------------------------------------------- orchestrators
@app.orchestration_trigger(context_name="context")
def chain(context: df.DurableOrchestrationContext):
    names = context.get_input() or ["Tokyo", "Seattle", "London"]
    results = []
    for name in names:
        results.append((yield context.call_activity("hello", name)))
    return results


@app.orchestration_trigger(context_name="context")
def fan_out(context: df.DurableOrchestrationContext):
    count = context.get_input()
    activity = "slow" if isinstance(count, dict) else "double"
    inputs = [count["pause"]] * count["n"] if isinstance(count, dict) else list(range(count))
    results = yield context.task_all([context.call_activity(activity, i) for i in inputs])
    return sum(results)


@app.orchestration_trigger(context_name="context")
def approval(context: df.DurableOrchestrationContext):
    settings = context.get_input()
    if settings.get("delay_hours"):
        # A first step during which an early approval has to be buffered.
        yield context.create_timer(context.current_utc_datetime + timedelta(hours=settings["delay_hours"]))
    deadline = context.current_utc_datetime + timedelta(hours=settings["hours"])
    timer = context.create_timer(deadline)
    event = context.wait_for_external_event("Approval")
    winner = yield context.task_any([event, timer])
    if winner == event:
        timer.cancel()
        return {"approved": event.result}
    return "timed out"


@app.orchestration_trigger(context_name="context")
def retrying(context: df.DurableOrchestrationContext):
    spec = context.get_input()
    options = df.RetryOptions(first_retry_interval_in_milliseconds=1000, max_number_of_attempts=3)
    result = yield context.call_activity_with_retry("flaky", options, spec)
    return result


@app.orchestration_trigger(context_name="context")
def catching(context: df.DurableOrchestrationContext):
    try:
        yield context.call_activity("boom", "disk full")
    except Exception as error:
        return f"caught: {error}"
    return "not reached"


@app.orchestration_trigger(context_name="context")
def parent(context: df.DurableOrchestrationContext):
    first = yield context.call_sub_orchestrator("chain", ["Oslo"])
    options = df.RetryOptions(first_retry_interval_in_milliseconds=500, max_number_of_attempts=3)
    second = yield context.call_sub_orchestrator_with_retry("retrying_child", options, context.get_input())
    return [first, second]


@app.orchestration_trigger(context_name="context")
def retrying_child(context: df.DurableOrchestrationContext):
    # No retry here: a failure fails this child, and the parent's retry starts it again.
    result = yield context.call_activity("flaky", context.get_input())
    return result


@app.orchestration_trigger(context_name="context")
def counter(context: df.DurableOrchestrationContext):
    value = context.get_input()
    context.set_custom_status({"value": value})
    yield context.call_activity("hello", str(value))
    if value < 3:
        context.continue_as_new(value + 1)
        return None
    return value


@app.orchestration_trigger(context_name="context")
def waiter(context: df.DurableOrchestrationContext):
    value = yield context.wait_for_external_event("Go")
    return value


@app.orchestration_trigger(context_name="context")
def drifting(context: df.DurableOrchestrationContext):
    # Reads a module switch: deliberately non-deterministic, to show the host refuses the replay.
    if STATE["nondeterministic"] == "skip":
        return "skipped"
    activity = "double" if STATE["nondeterministic"] else "hello"
    yield context.call_activity(activity, 1 if activity == "double" else "x")
    yield context.wait_for_external_event("Go")
    return "done"


@app.orchestration_trigger(context_name="context")
def long_wait(context: df.DurableOrchestrationContext):
    yield context.create_timer(context.current_utc_datetime + timedelta(days=10))
    return context.current_utc_datetime.isoformat()


# ---------------------------------------------------------------- HTTP triggers
@app.route(route="orchestrators/{name}", methods=["POST"])
@app.durable_client_input(client_name="client")
async def http_start(req: func.HttpRequest, client) -> func.HttpResponse:
    body = req.get_body()
    instance_id = await client.start_new(req.route_params["name"], None, json.loads(body) if body else None)
    return client.create_check_status_response(req, instance_id)


@app.route(route="instances/{instance_id}/events/{event}", methods=["POST"])
@app.durable_client_input(client_name="client")
async def http_raise(req: func.HttpRequest, client) -> func.HttpResponse:
    await client.raise_event(req.route_params["instance_id"], req.route_params["event"], req.get_json())
    return func.HttpResponse(status_code=202)


@app.route(route="instances/{instance_id}", methods=["GET"])
@app.durable_client_input(client_name="client")
async def http_status(req: func.HttpRequest, client) -> func.HttpResponse:
    status = await client.get_status(req.route_params["instance_id"])
    if not status:
        return func.HttpResponse(status_code=404)
    body = {"status": status.runtime_status.value, "output": status.output, "custom": status.custom_status}
    return func.HttpResponse(json.dumps(body), mimetype="application/json")


@app.route(route="admin-only", methods=["GET"], auth_level=func.AuthLevel.ADMIN)
def admin_only(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("admin")


@app.route(route="ping", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def ping(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(f"pong {req.params.get('who', '')}")


# ---------------------------------------------------------------- timer trigger
@app.timer_trigger(schedule="0 0 9 * * *", arg_name="timer", run_on_startup=False)
@app.durable_client_input(client_name="client")
async def daily_reminder(timer: func.TimerRequest, client) -> None:
    STATE["timer_runs"] += 1
    await client.start_new("chain", None, ["reminder"])


@app.orchestration_trigger(context_name="context")
def bench_fan(context: df.DurableOrchestrationContext):
    """Benchmark shape: a fan-out builds a long history, then each 'Go' event costs one full replay."""
    count = context.get_input()
    yield context.task_all([context.call_activity("double", i) for i in range(count)])
    while True:
        signal = yield context.wait_for_external_event("Go")
        if signal == "stop":
            return count


@app.orchestration_trigger(context_name="context")
def mixed_retries(context: df.DurableOrchestrationContext):
    """Retries interleaved with plain work: sequence numbers must follow the SDK's order exactly."""
    options = df.RetryOptions(first_retry_interval_in_milliseconds=1000, max_number_of_attempts=4)
    tasks = []
    for i in range(6):
        spec = {"key": f"{context.instance_id}-{i}", "failures": i % 3}
        tasks.append(context.call_activity_with_retry("flaky", options, spec))
        tasks.append(context.call_activity("double", i))
    first = yield context.task_any([context.wait_for_external_event("Never"), context.task_all(tasks)])
    after = yield context.call_activity("hello", "after")
    timer = yield context.create_timer(context.current_utc_datetime + timedelta(seconds=1))
    return [first.result, after, timer is None]


@app.orchestration_trigger(context_name="context")
def race_retry(context: df.DurableOrchestrationContext):
    options = df.RetryOptions(first_retry_interval_in_milliseconds=1000, max_number_of_attempts=2)
    retried = context.call_activity_with_retry("flaky", options, {"key": context.instance_id, "failures": 1})
    plain = context.call_activity("double", 5)
    winner = yield context.task_any([retried, plain])
    follow_up = yield context.call_activity("hello", "next")
    late = yield retried
    return [winner.result, follow_up, late]


@app.orchestration_trigger(context_name="context")
def naive_timer(context: df.DurableOrchestrationContext):
    # A bug Azure catches: a naive datetime. It only surfaces when the host sends the timer settings.
    naive = context.current_utc_datetime.replace(tzinfo=None) + timedelta(hours=1)
    yield context.create_timer(naive)
    return "unreachable"
