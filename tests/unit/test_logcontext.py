"""The onboarding id and step reach every record logged while an onboarding is worked on, and only those."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from types import SimpleNamespace

import pytest

from onboarding import logcontext

ONBOARDING = "onb-" + "0123456789abcdef" * 2
LOG = logging.getLogger("test.logcontext")


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.name != "asyncio":  # asyncio.run's own debug line
            self.records.append(record)


@pytest.fixture
def captured() -> Iterator[list[logging.LogRecord]]:
    """A handler on the root logger with the filter installed on it, as function_app.py does."""
    root = logging.getLogger()
    handler = Capture()
    root.addHandler(handler)
    level = root.level
    root.setLevel(logging.DEBUG)
    logcontext.install(root)
    yield handler.records
    root.removeHandler(handler)
    root.setLevel(level)


def fields(record: logging.LogRecord) -> tuple[object, object]:
    return getattr(record, "onboarding_id", None), getattr(record, "step", None)


def test_any_logger_inside_a_binding_gets_the_onboarding_and_step(captured: list[logging.LogRecord]):
    with logcontext.bound(ONBOARDING, "register_app"):
        LOG.info("ours")
        logging.getLogger("azure.core.pipeline").debug("a library's")
    LOG.info("after")
    assert [fields(r) for r in captured] == [
        (ONBOARDING, "register_app"),
        (ONBOARDING, "register_app"),
        (None, None),
    ]


def test_a_sub_instance_id_binds_its_onboarding_and_free_text_binds_nothing(
    captured: list[logging.LogRecord],
):
    with logcontext.bound(f"{ONBOARDING}:mailboxes:3", "verify_login"):
        LOG.info("batch")
    with logcontext.bound("admin@contoso.example", "verify_login"):
        LOG.info("not an onboarding")
    assert [fields(r) for r in captured] == [(ONBOARDING, "verify_login"), (None, None)]


def test_fields_passed_in_extra_win_over_the_binding(captured: list[logging.LogRecord]):
    with logcontext.bound(ONBOARDING, "finish"):
        LOG.info("event", extra={"step": "admin_consent"})
    assert fields(captured[0]) == (ONBOARDING, "admin_consent")


def test_threads_started_with_to_thread_and_tasks_keep_the_binding(captured: list[logging.LogRecord]):
    async def in_a_task() -> None:
        LOG.info("in a task")

    async def work() -> None:
        with logcontext.bound(ONBOARDING, "verify_login"):
            await asyncio.to_thread(LOG.info, "imaplib in a thread")
            await asyncio.create_task(in_a_task())

    asyncio.run(work())
    assert [fields(r) for r in captured] == [(ONBOARDING, "verify_login")] * 2


def test_concurrent_activities_each_keep_their_own_onboarding(captured: list[logging.LogRecord]):
    other = "onb-" + "f" * 32

    async def activity(onboarding_id: str) -> None:
        with logcontext.bound(onboarding_id, "grant_mailboxes"):
            for _ in range(3):
                await asyncio.sleep(0)
                LOG.info("working on %s", onboarding_id)

    async def both() -> None:
        await asyncio.gather(activity(ONBOARDING), activity(other))

    asyncio.run(both())
    assert len(captured) == 6
    assert all(r.getMessage().startswith(f"working on {r.onboarding_id} ") for r in captured)  # type: ignore[attr-defined]


def test_an_endpoint_binding_lasts_for_its_own_invocation_only(captured: list[logging.LogRecord]):
    async def endpoint() -> None:
        logcontext.bind_request(ONBOARDING, "cancel")
        LOG.info("cancel requested")

    async def host() -> None:
        await asyncio.create_task(endpoint())  # the worker runs each invocation as a task
        LOG.info("host line")

    asyncio.run(host())
    assert [fields(r) for r in captured] == [(ONBOARDING, logcontext.ENDPOINT_STEP + "cancel"), (None, None)]


@pytest.mark.parametrize(("replaying", "lines"), [(False, 1), (True, 0)])
def test_orchestrator_lines_are_written_once_not_on_replay(
    replaying: bool, lines: int, captured: list[logging.LogRecord]
):
    context = SimpleNamespace(is_replaying=replaying, instance_id=ONBOARDING)
    logcontext.replay_safe(context, "admin_consent", lambda: LOG.info("waiting for the admin"))
    assert [fields(r) for r in captured] == [(ONBOARDING, "admin_consent")] * lines


def test_an_activity_payload_names_its_onboarding_and_step_for_the_wrapper():
    context = SimpleNamespace(instance_id=f"{ONBOARDING}:mailboxes:0")
    payload = logcontext.with_log_fields(context, "verify_login", {"mailboxes": ["a@contoso.example"]})
    assert payload["mailboxes"] == ["a@contoso.example"]
    assert logcontext.fields_of(payload, default_step="verify_mailboxes") == (ONBOARDING, "verify_login")
    # An older payload (in flight before this change) still names its onboarding.
    assert logcontext.fields_of({"onboarding_id": ONBOARDING}, default_step="compensate") == (
        ONBOARDING,
        "compensate",
    )
    assert logcontext.fields_of({"roles": []}, default_step="resolve_exchange") == (None, "resolve_exchange")


def test_the_message_itself_ends_with_the_fields_once_whatever_the_number_of_handlers(
    captured: list[logging.LogRecord],
):
    """The worker's default path sends Application Insights the message only: the fields must be in it."""
    second = Capture()
    logging.getLogger().addHandler(second)
    logcontext.install(second)
    try:
        with logcontext.bound(ONBOARDING, "grant_mailboxes"):
            LOG.warning("granted %d of %d", 2, 3)
            LOG.info("onboarding.waiting onboarding_id=%s kind=admin_consent", ONBOARDING)
    finally:
        logging.getLogger().removeHandler(second)
    assert [r.getMessage() for r in second.records] == [
        f"granted 2 of 3 onboarding_id={ONBOARDING} step=grant_mailboxes",
        f"onboarding.waiting onboarding_id={ONBOARDING} kind=admin_consent",  # names it already
    ]
