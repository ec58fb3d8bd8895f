"""Durable engine: turns the SDK's replies into DTFx history, one SQLite transaction per episode.

The orchestrator is the app's registered `handle`, called with the context JSON the Durable extension
sends. The engine plays the extension's part: it numbers scheduled work with the SDK's sequence numbers,
runs retries (failure, timer, reschedule), detects a reply that no longer matches the recorded actions,
and delivers every message that arrived since the last episode in one batch.
"""

from __future__ import annotations

import gc
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from dateutil.parser import isoparse

from .app_loader import FunctionApp
from .clock import Clock
from .store import Store

log = logging.getLogger("funchost")

# DTFx history event types (DurableTask.Core.History.EventType).
EXECUTION_STARTED, EXECUTION_COMPLETED, EXECUTION_TERMINATED = 0, 1, 3
TASK_SCHEDULED, TASK_COMPLETED, TASK_FAILED = 4, 5, 6
SUB_CREATED, SUB_COMPLETED, SUB_FAILED = 7, 8, 9
TIMER_CREATED, TIMER_FIRED = 10, 11
ORCHESTRATOR_STARTED, ORCHESTRATOR_COMPLETED = 12, 13
EVENT_RAISED = 15

# Action types of the SDK's reply.
CALL_ACTIVITY, CALL_ACTIVITY_RETRY, CALL_SUB, CALL_SUB_RETRY = 0, 1, 2, 3
CONTINUE_AS_NEW, CREATE_TIMER, WAIT_FOR_EVENT = 4, 5, 6
COMPOUND_ACTIONS = (11, 12)

TERMINAL = ("Completed", "Failed", "Terminated")
# The extension's page size when a query names no ``top`` (OrchestrationStatusQueryCondition.PageSize).
DEFAULT_PAGE_SIZE = 100
OUT_OF_PROC_MARKER = "$OutOfProcData$:"

# The real host's defaults for Azure Storage: timers longer than 6 days are split into 3-day timers.
MAX_SHORT_TIMER = "6.00:00:00"
LONG_TIMER_INTERVAL = "3.00:00:00"


def fmt_time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str) -> datetime:
    return isoparse(text)


class NonDeterminismError(Exception):
    pass


@dataclass
class RetryGroup:
    """One call-with-retry: the extension retries, the SDK only sees failures, timers and reschedules."""

    kind: str  # "activity" | "orchestration"
    name: str
    input: str | None
    child_id: str | None
    max_attempts: int
    interval_ms: int
    attempts: int
    current_id: int
    timer_id: int | None = None


@dataclass
class InstanceCache:
    """What an episode needs, kept in memory so an episode does not re-read or re-parse history."""

    execution_id: str
    name: str
    input: str | None
    parent_id: str | None
    history: list[str] = field(default_factory=list)  # serialised events, IsPlayed=true
    actions: list[dict[str, Any]] = field(default_factory=list)  # recorded actions without isCanceled
    action_seq: list[int | None] = field(default_factory=list)
    next_seq: int = 0
    retries: dict[int, RetryGroup] = field(default_factory=dict)  # keyed by the first scheduled id

    def engine_state(self) -> str:
        return json.dumps(
            {"next_seq": self.next_seq, "retries": {k: vars(g) for k, g in self.retries.items()}}
        )


@dataclass
class Message:
    msg_id: int
    execution_id: str | None
    event: dict[str, Any]


@dataclass
class EpisodeStats:
    instance_id: str
    events_in: int
    history_len: int
    sdk_seconds: float
    total_seconds: float
    status: str
    # CPU time of the episode's own thread: the wall times above also count waiting for the GIL
    # while activities run in the same process.
    cpu_seconds: float = 0.0
    name: str = ""  # the orchestrator's
    # Garbage collections that ran in the episode's thread (the collector runs in whichever thread
    # allocates past its threshold, and a full collection walks every object of the process).
    gc_seconds: float = 0.0


_gc_time = threading.local()


def _time_collections(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        _gc_time.started = time.perf_counter()
    elif (started := getattr(_gc_time, "started", None)) is not None:
        _gc_time.total = getattr(_gc_time, "total", 0.0) + time.perf_counter() - started
        _gc_time.started = None


def thread_gc_seconds() -> float:
    """Seconds this thread has spent in garbage collections since the engine was imported."""
    return float(getattr(_gc_time, "total", 0.0))


gc.callbacks.append(_time_collections)


def _action_key(action: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in action.items() if k != "isCanceled"}


def flatten_actions(actions: list[Any]) -> list[dict[str, Any]]:
    flat: list[dict[str, Any]] = []
    for item in actions:
        if isinstance(item, list):
            flat.extend(flatten_actions(item))
        elif item.get("actionType") in COMPOUND_ACTIONS:
            flat.extend(flatten_actions(item.get("compoundActions", [])))
        else:
            flat.append(item)
    return flat


class Engine:
    def __init__(self, store: Store, app: FunctionApp, clock: Clock, notify: Callable[[], None]) -> None:
        self.store = store
        self.app = app
        self.clock = clock
        self._notify = notify
        self._cache: dict[str, InstanceCache] = {}
        self.episodes: dict[str, int] = {}
        # Called with every episode's statistics (``--episode-log`` writes them to a file).
        self.on_episode: Callable[[EpisodeStats], None] | None = None
        self.changed = threading.Condition()

    # ------------------------------------------------------------------ client operations
    def start_new(self, name: str, instance_id: str | None, input_text: str | None) -> str:
        if name not in self.app.orchestrators:
            raise LookupError(
                f"The function '{name}' doesn't exist, is disabled, or is not an orchestrator function."
            )
        instance_id = instance_id or uuid.uuid4().hex
        with self.store.transaction() as db:
            row = db.execute("SELECT status FROM instances WHERE instance_id=?", (instance_id,)).fetchone()
            if row and row[0] not in TERMINAL:
                raise FileExistsError(f"An instance with ID '{instance_id}' already exists and is {row[0]}.")
            self._create_instance(db, instance_id, name, input_text, None, None, None)
        self._after_commit()
        return instance_id

    def _create_instance(
        self,
        db: Any,
        instance_id: str,
        name: str,
        input_text: str | None,
        parent_id: str | None,
        parent_task_id: int | None,
        parent_execution: str | None,
    ) -> None:
        self._delete_instance(db, instance_id)
        now = self.clock.now()
        execution_id = uuid.uuid4().hex
        db.execute(
            "INSERT INTO instances (instance_id, name, execution_id, status, input, created, updated,"
            " parent_id, parent_task_id, parent_execution) VALUES (?,?,?,?,?,?,?,?,?,?)",
            (
                instance_id,
                name,
                execution_id,
                "Pending",
                input_text,
                fmt_time(now),
                fmt_time(now),
                parent_id,
                parent_task_id,
                parent_execution,
            ),
        )
        started = self._execution_started(instance_id, execution_id, name, input_text, parent_id, now)
        self._enqueue(db, instance_id, execution_id, now, started)

    @staticmethod
    def _execution_started(
        instance_id: str,
        execution_id: str,
        name: str,
        input_text: str | None,
        parent_id: str | None,
        now: datetime,
    ) -> dict[str, Any]:
        event: dict[str, Any] = {
            "EventType": EXECUTION_STARTED,
            "EventId": -1,
            "IsPlayed": False,
            "Timestamp": fmt_time(now),
            "Name": name,
            "Input": input_text,
            "Version": "",
            "OrchestrationInstance": {"InstanceId": instance_id, "ExecutionId": execution_id},
        }
        if parent_id:
            event["ParentInstance"] = {"OrchestrationInstance": {"InstanceId": parent_id}}
        return event

    def _delete_instance(self, db: Any, instance_id: str) -> None:
        for table in ("instances", "history", "actions", "inbox", "work"):
            db.execute(f"DELETE FROM {table} WHERE instance_id=?", (instance_id,))  # noqa: S608 - fixed names
        self._cache.pop(instance_id, None)

    def _enqueue(
        self,
        db: Any,
        instance_id: str,
        execution_id: str | None,
        visible: datetime,
        event: dict[str, Any],
        timer_id: int | None = None,
    ) -> None:
        db.execute(
            "INSERT INTO inbox (instance_id, execution_id, visible_at, timer_id, event) VALUES (?,?,?,?,?)",
            (instance_id, execution_id, visible.timestamp(), timer_id, json.dumps(event)),
        )

    def raise_event(self, instance_id: str, name: str, data_text: str | None) -> str:
        """Returns 'ok', 'gone' or 'missing' (the API answers 202, 410, 404)."""
        now = self.clock.now()
        with self.store.transaction() as db:
            row = db.execute("SELECT status FROM instances WHERE instance_id=?", (instance_id,)).fetchone()
            if not row:
                return "missing"
            if row[0] in TERMINAL:
                return "gone"
            event = {
                "EventType": EVENT_RAISED,
                "EventId": -1,
                "IsPlayed": False,
                "Timestamp": fmt_time(now),
                "Name": name,
                "Input": data_text,
            }
            # No execution id: an event raised around a continue-as-new belongs to the next execution.
            self._enqueue(db, instance_id, None, now, event)
        self._after_commit()
        return "ok"

    def terminate(self, instance_id: str, reason: str) -> str:
        now = self.clock.now()
        with self.store.transaction() as db:
            row = db.execute("SELECT status FROM instances WHERE instance_id=?", (instance_id,)).fetchone()
            if not row:
                return "missing"
            if row[0] in TERMINAL:
                return "gone"
            event = {
                "EventType": EXECUTION_TERMINATED,
                "EventId": -1,
                "IsPlayed": False,
                "Timestamp": fmt_time(now),
                "Input": reason,
            }
            self._enqueue(db, instance_id, None, now, event)
        self._after_commit()
        return "ok"

    def purge(self, instance_id: str) -> int:
        with self.store.transaction() as db:
            row = db.execute("SELECT status FROM instances WHERE instance_id=?", (instance_id,)).fetchone()
            if not row or row[0] not in TERMINAL:
                return 0
            self._delete_instance(db, instance_id)
        self._after_commit()
        return 1

    def purge_by(
        self, created_from: datetime | None, created_to: datetime | None, statuses: list[str]
    ) -> int:
        ids = [s["instanceId"] for s in self.query(created_from, created_to, statuses or list(TERMINAL))]
        return sum(self.purge(i) for i in ids)

    # ------------------------------------------------------------------ status
    def get_status(
        self, instance_id: str, show_history: bool = False, show_input: bool = True
    ) -> dict[str, Any] | None:
        rows = self.store.query(
            "SELECT name, status, input, output, custom_status, created, updated FROM instances WHERE instance_id=?",
            (instance_id,),
        )
        if not rows:
            return None
        name, status, input_text, output, custom, created, updated = rows[0]
        result: dict[str, Any] = {
            "name": name,
            "instanceId": instance_id,
            "runtimeStatus": status,
            "input": input_text if show_input else None,  # JSON text, as the real host returns it
            "customStatus": _loads(custom),
            "output": _loads(output),
            "createdTime": _short_time(str(created)),
            "lastUpdatedTime": _short_time(str(updated)),
        }
        if show_history:
            events = [
                json.loads(str(r[0]))
                for r in self.store.query(
                    "SELECT event FROM history WHERE instance_id=? ORDER BY idx", (instance_id,)
                )
            ]
            result["historyEvents"] = result["history"] = [
                _public_event(e) for e in events if e["EventType"] not in (12, 13)
            ]
        return result

    def query(
        self,
        created_from: datetime | None = None,
        created_to: datetime | None = None,
        statuses: list[str] | None = None,
        prefix: str | None = None,
    ) -> list[dict[str, Any]]:
        rows = self.store.query("SELECT instance_id, status, created FROM instances ORDER BY created")
        found = []
        for instance_id, status, created in rows:
            moment = parse_time(str(created))
            if created_from and moment < created_from:
                continue
            if created_to and moment > created_to:
                continue
            if statuses and status not in statuses:
                continue
            if prefix and not str(instance_id).startswith(prefix):
                continue
            status_dict = self.get_status(str(instance_id))
            if status_dict:
                found.append(status_dict)
        return found

    def query_page(
        self,
        created_from: datetime | None = None,
        created_to: datetime | None = None,
        statuses: list[str] | None = None,
        prefix: str | None = None,
        *,
        top: int = DEFAULT_PAGE_SIZE,
        after: tuple[str, str] | None = None,
        show_input: bool = True,
    ) -> tuple[list[dict[str, Any]], tuple[str, str] | None]:
        """One page of the instance query, filtered in SQL (no scan), in (created, id) order.

        Returns the page and the position after its last row when more rows may follow: the extension
        pages the same way (``top``, default 100, and a continuation token for the rest).
        """
        where: list[str] = ["1=1"]
        params: list[object] = []
        if created_from:
            where.append("created >= ?")
            params.append(fmt_time(created_from.astimezone(UTC)))
        if created_to:
            where.append("created <= ?")
            params.append(fmt_time(created_to.astimezone(UTC)))
        if statuses:
            where.append(f"status IN ({','.join('?' * len(statuses))})")
            params.extend(statuses)
        if prefix:
            where.append("substr(instance_id, 1, ?) = ?")
            params.extend([len(prefix), prefix])
        if after:
            where.append("(created > ? OR (created = ? AND instance_id > ?))")
            params.extend([after[0], after[0], after[1]])
        rows = self.store.query(
            # Only the fixed clauses above are joined; every value is a parameter.
            f"SELECT instance_id, created FROM instances WHERE {' AND '.join(where)}"  # noqa: S608
            " ORDER BY created, instance_id LIMIT ?",
            (*params, top + 1),
        )
        page = []
        for instance_id, _created in rows[:top]:
            status = self.get_status(str(instance_id), show_input=show_input)
            if status:
                page.append(status)
        more = len(rows) > top
        return page, (str(rows[top - 1][1]), str(rows[top - 1][0])) if more else None

    # ------------------------------------------------------------------ scheduling queries
    def ready_instances(self) -> list[str]:
        now = self.clock.now().timestamp()
        rows = self.store.query("SELECT DISTINCT instance_id FROM inbox WHERE visible_at <= ?", (now,))
        return [str(r[0]) for r in rows]

    def next_visible_at(self) -> float | None:
        rows = self.store.query("SELECT MIN(visible_at) FROM inbox")
        value = rows[0][0] if rows else None
        return float(value) if isinstance(value, float | int) else None

    def pending_work(self) -> list[tuple[int, str, str, int, str, str | None]]:
        rows = self.store.query("SELECT work_id, instance_id, execution_id, task_id, name, input FROM work")
        return [
            (
                int(str(r[0])),
                str(r[1]),
                str(r[2]),
                int(str(r[3])),
                str(r[4]),
                None if r[5] is None else str(r[5]),
            )
            for r in rows
        ]

    def complete_work(self, work_id: int, result_text: str | None, failure: tuple[str, str] | None) -> None:
        """Record an activity's outcome, unless its orchestration moved on (terminated, purged, restarted)."""
        now = self.clock.now()
        with self.store.transaction() as db:
            row = db.execute(
                "SELECT instance_id, execution_id, task_id FROM work WHERE work_id=?", (work_id,)
            ).fetchone()
            if not row:
                return
            db.execute("DELETE FROM work WHERE work_id=?", (work_id,))
            instance_id, execution_id, task_id = row
            event: dict[str, Any] = {
                "EventId": -1,
                "IsPlayed": False,
                "Timestamp": fmt_time(now),
                "TaskScheduledId": task_id,
            }
            if failure is None:
                event.update(EventType=TASK_COMPLETED, Result=result_text)
            else:
                event.update(EventType=TASK_FAILED, Reason=failure[0], Details=failure[1])
            self._enqueue(db, instance_id, execution_id, now, event)
        self._after_commit()

    def _after_commit(self) -> None:
        with self.changed:
            self.changed.notify_all()
        self._notify()

    # ------------------------------------------------------------------ episodes
    def _load(self, db: Any, instance_id: str, row: tuple[Any, ...]) -> InstanceCache:
        cached = self._cache.get(instance_id)
        if cached and cached.execution_id == row[1]:
            return cached
        name, execution_id, input_text, parent_id, engine_state = row
        state = json.loads(engine_state or "{}")
        cache = InstanceCache(
            execution_id=execution_id,
            name=name,
            input=input_text,
            parent_id=parent_id,
            next_seq=int(state.get("next_seq", 0)),
            retries={int(k): RetryGroup(**v) for k, v in state.get("retries", {}).items()},
        )
        cache.history = [
            str(r[0])
            for r in db.execute("SELECT event FROM history WHERE instance_id=? ORDER BY idx", (instance_id,))
        ]
        for action_text, seq in db.execute(
            "SELECT action, seq FROM actions WHERE instance_id=? ORDER BY idx", (instance_id,)
        ):
            cache.actions.append(json.loads(action_text))
            cache.action_seq.append(seq)
        self._cache[instance_id] = cache
        return cache

    def drop_cache(self) -> None:
        self._cache.clear()

    def run_episode(self, instance_id: str) -> EpisodeStats | None:
        """Deliver every visible message of one instance to its orchestrator in one episode."""
        started = time.perf_counter()
        cpu_started = time.thread_time()
        gc_started = thread_gc_seconds()
        now = self.clock.now()
        with self.store.lock:
            row = self.store.query(
                "SELECT name, execution_id, input, parent_id, engine_state, status FROM instances WHERE instance_id=?",
                (instance_id,),
            )
            msgs_rows = self.store.query(
                "SELECT msg_id, execution_id, event FROM inbox WHERE instance_id=? AND visible_at<=? ORDER BY msg_id",
                (instance_id, now.timestamp()),
            )
            if not row or row[0][5] in TERMINAL:
                with self.store.transaction() as db:
                    db.executemany("DELETE FROM inbox WHERE msg_id=?", [(r[0],) for r in msgs_rows])
                return None
            cache = self._load(self.store._conn, instance_id, row[0][:5])
        messages = [Message(int(r[0]), r[1], json.loads(str(r[2]))) for r in msgs_rows]  # type: ignore[arg-type,call-overload]
        if not messages:
            return None
        episode = _Episode(self, instance_id, cache, messages, now)
        sdk_seconds = episode.run()
        stats = EpisodeStats(
            instance_id,
            len(messages),
            len(cache.history),
            sdk_seconds,
            time.perf_counter() - started,
            episode.status,
            time.thread_time() - cpu_started,
            str(row[0][0]),
            thread_gc_seconds() - gc_started,
        )
        self.episodes[instance_id] = self.episodes.get(instance_id, 0) + 1
        if self.on_episode is not None:
            self.on_episode(stats)
        self._after_commit()
        return stats


class _Episode:
    """One episode's bookkeeping: what to append to history and what work to enqueue, then one commit."""

    def __init__(
        self, engine: Engine, instance_id: str, cache: InstanceCache, messages: list[Message], now: datetime
    ) -> None:
        self.engine = engine
        self.instance_id = instance_id
        self.cache = cache
        self.messages = messages
        self.now = now
        self.new_events: list[dict[str, Any]] = []
        self.recorded: list[dict[str, Any]] = []  # events appended after the SDK ran (scheduling results)
        self.effects: list[Callable[[Any], None]] = []  # database writes applied in the commit
        self.new_actions: list[tuple[dict[str, Any], int | None]] = []
        self.seq = cache.next_seq
        self.retries = {k: RetryGroup(**vars(g)) for k, g in cache.retries.items()}
        self._by_task = {g.current_id: g for g in self.retries.values()}
        self._by_timer = {g.timer_id: g for g in self.retries.values() if g.timer_id is not None}
        self.status = "Running"
        self.output: str | None = None
        self.custom_status: str | None = None
        self.continue_input: str | None = None
        self.continued = False

    # -------------------------------------------------------------- message selection
    def _group_for(self, event: dict[str, Any]) -> RetryGroup | None:
        """The retry group an event belongs to, looked up in indexes built when the episode began.

        An episode holds at most one live event per group (a failure, or the timer it caused), so the
        indexes need no update while the episode's own retry steps change the groups.
        """
        if event["EventType"] == TIMER_FIRED:
            return self._by_timer.get(event.get("TimerId", -1))
        if event["EventType"] in (TASK_COMPLETED, TASK_FAILED, SUB_COMPLETED, SUB_FAILED):
            return self._by_task.get(event.get("TaskScheduledId", -1))
        return None

    def run(self) -> float:
        cache = self.cache
        live = [m for m in self.messages if m.execution_id in (None, cache.execution_id)]
        terminate = next((m for m in live if m.event["EventType"] == EXECUTION_TERMINATED), None)
        if terminate is not None:
            self._terminate(str(terminate.event.get("Input") or ""))
            self._commit()
            return 0.0
        started = [m for m in live if m.event["EventType"] == EXECUTION_STARTED]
        others = [m for m in live if m.event["EventType"] != EXECUTION_STARTED]
        if not cache.history and not started:
            # Messages for an execution that has not started yet wait for it.
            self.messages = [m for m in self.messages if m.execution_id not in (None, cache.execution_id)]
            self._commit_drop_only()
            return 0.0
        # Retry bookkeeping takes sequence numbers when the SDK processes a failure or a retry timer.
        # Delivering those events first means their numbers come before any the user code takes
        # in this episode, which is the order the SDK assigns them.
        allocates = {m.msg_id: self._allocates(m.event) for m in others}
        allocating = [m for m in others if allocates[m.msg_id]]
        rest = [m for m in others if not allocates[m.msg_id]]
        self.new_events.append(self._event(ORCHESTRATOR_STARTED))
        for m in started:
            self.new_events.append(m.event)
            self.status = "Running"
        for m in allocating:
            self.new_events.append(m.event)
            self._retry_step(m.event)
        finished_groups: set[int] = set()
        for m in rest:
            self.new_events.append(m.event)
            group = self._group_for(m.event)
            if group is not None:  # a success, or the last timer after the last failure
                finished_groups.add(id(group))
        if finished_groups:
            self.retries = {k: g for k, g in self.retries.items() if id(g) not in finished_groups}
        sdk_seconds = self._call_orchestrator()
        self._commit()
        return sdk_seconds

    def _allocates(self, event: dict[str, Any]) -> bool:
        group = self._group_for(event)
        if group is None:
            return False
        if event["EventType"] in (TASK_FAILED, SUB_FAILED):
            return True
        return event["EventType"] == TIMER_FIRED and group.attempts < group.max_attempts

    def _retry_step(self, event: dict[str, Any]) -> None:
        group = self._group_for(event)
        assert group is not None
        if event["EventType"] in (TASK_FAILED, SUB_FAILED):
            timer_id = self._next_seq()
            fire_at = self.now + timedelta(milliseconds=group.interval_ms)
            group.timer_id = timer_id
            self._schedule_timer(timer_id, fire_at)
            return
        new_id = self._next_seq()
        group.attempts += 1
        group.current_id = new_id
        group.timer_id = None
        if group.kind == "activity":
            self._schedule_activity(new_id, group.name, group.input)
        else:
            self._schedule_child(new_id, group.name, group.input, group.child_id)

    def _next_seq(self) -> int:
        value = self.seq
        self.seq += 1
        return value

    # -------------------------------------------------------------- the SDK call
    def _context_json(self) -> str:
        cache = self.cache
        history = ",".join([*cache.history, *(json.dumps(e) for e in self.new_events)])
        rest = json.dumps(
            {
                "input": cache.input,
                "instanceId": self.instance_id,
                "isReplaying": False,
                "parentInstanceId": cache.parent_id,
                "upperSchemaVersion": 1,
                "upperSchemaVersionNew": 2,
                "maximumShortTimerDuration": MAX_SHORT_TIMER,
                "longRunningTimerIntervalDuration": LONG_TIMER_INTERVAL,
                "defaultHttpAsyncRequestSleepTimeMillseconds": 30000,
            }
        )
        return '{"history":[' + history + "]," + rest[1:]

    def _call_orchestrator(self) -> float:
        handle = self.engine.app.orchestrators.get(self.cache.name)
        if handle is None:
            self._fail(f"The orchestrator function '{self.cache.name}' doesn't exist.")
            return 0.0
        context_json = self._context_json()
        log.info("Executing 'Functions.%s' (instance=%s)", self.cache.name, self.instance_id)
        begin = time.perf_counter()
        try:
            reply = json.loads(handle(context_json))
            error = None
        except Exception as exc:
            text = str(exc)
            marker = text.find(OUT_OF_PROC_MARKER)
            reply = json.loads(text[marker + len(OUT_OF_PROC_MARKER) :]) if marker >= 0 else {}
            error = text[:marker].rstrip() if marker >= 0 else f"{type(exc).__name__}: {text}"
        sdk_seconds = time.perf_counter() - begin
        try:
            self._apply_reply(reply, error)
        except NonDeterminismError as exc:
            self._fail(str(exc), prefix=False)
        log.info("Executed 'Functions.%s' (instance=%s, %s)", self.cache.name, self.instance_id, self.status)
        return sdk_seconds

    def _apply_reply(self, reply: dict[str, Any], error: str | None) -> None:
        if "customStatus" in reply:
            self.custom_status = json.dumps(reply["customStatus"])
        actions = flatten_actions(reply.get("actions") or [])
        known = self.cache.actions
        for index, action in enumerate(actions[: len(known)]):
            if _action_key(action) != known[index]:
                raise NonDeterminismError(
                    f"Non-Deterministic workflow detected: action {index} of orchestrator "
                    f"'{self.cache.name}' is now {_describe(action)} but history recorded {_describe(known[index])}."
                )
            if action.get("isCanceled") and known[index].get("actionType") == CREATE_TIMER:
                self._cancel_timer(self.cache.action_seq[index])
        if error is not None:
            self._fail(error)
            return
        if len(actions) < len(known):
            # Actions are only ever appended: a replay that stops short no longer does what history says.
            missing = _describe(known[len(actions)])
            raise NonDeterminismError(
                f"Non-Deterministic workflow detected: orchestrator '{self.cache.name}' no longer schedules "
                f"{missing} (action {len(actions)}), which history recorded."
            )
        for action in actions[len(known) :]:
            self._schedule_action(action)
            if self.status != "Running":
                return
        if reply.get("isDone"):
            if self.continued:
                return
            self.status = "Completed"
            self.output = json.dumps(reply.get("output"))

    def _schedule_action(self, action: dict[str, Any]) -> None:
        kind = action.get("actionType")
        seq = None if kind == WAIT_FOR_EVENT else self._next_seq()
        self.new_actions.append((_action_key(action), seq))
        if kind == WAIT_FOR_EVENT:
            return
        assert seq is not None
        if kind in (CALL_ACTIVITY, CALL_ACTIVITY_RETRY):
            self._schedule_activity(seq, action["functionName"], action.get("input"))
        elif kind in (CALL_SUB, CALL_SUB_RETRY):
            child = self._schedule_child(
                seq, action["functionName"], action.get("input"), action.get("instanceId")
            )
            if kind == CALL_SUB_RETRY:
                self._add_retry("orchestration", action, seq, action.get("instanceId") or child)
        elif kind == CREATE_TIMER:
            fire_at = parse_time(action["fireAt"])
            self._schedule_timer(seq, fire_at, cancelled=bool(action.get("isCanceled")))
        elif kind == CONTINUE_AS_NEW:
            self.continued = True
            self.continue_input = action.get("input")
            self.status = "Running"
        else:
            self._fail(f"funchost does not support action type {kind} (entities and durable HTTP).")
            return
        if kind == CALL_ACTIVITY_RETRY:
            self._add_retry("activity", action, seq, None)

    def _add_retry(self, kind: str, action: dict[str, Any], seq: int, child_id: str | None) -> None:
        options = action.get("retryOptions") or {}
        self.retries[seq] = RetryGroup(
            kind=kind,
            name=action["functionName"],
            input=action.get("input"),
            child_id=child_id,
            max_attempts=int(options.get("maxNumberOfAttempts", 1)),
            interval_ms=int(options.get("firstRetryIntervalInMilliseconds", 1000)),
            attempts=1,
            current_id=seq,
        )

    # -------------------------------------------------------------- effects
    def _event(self, kind: int, **fields: Any) -> dict[str, Any]:
        return {
            "EventType": kind,
            "EventId": -1,
            "IsPlayed": False,
            "Timestamp": fmt_time(self.now),
            **fields,
        }

    def _schedule_activity(self, seq: int, name: str, input_text: str | None) -> None:
        event = self._event(TASK_SCHEDULED, Name=name, Input=input_text)
        event["EventId"] = seq
        self.recorded.append(event)
        iid, execution = self.instance_id, self.cache.execution_id
        self.effects.append(
            lambda db: db.execute(
                "INSERT INTO work (instance_id, execution_id, task_id, name, input) VALUES (?,?,?,?,?)",
                (iid, execution, seq, name, input_text),
            )
        )

    def _schedule_child(self, seq: int, name: str, input_text: str | None, child_id: str | None) -> str:
        child = child_id or f"{self.instance_id}:{seq}"
        event = self._event(SUB_CREATED, Name=name, Input=input_text, InstanceId=child)
        event["EventId"] = seq
        self.recorded.append(event)
        engine, parent, execution = self.engine, self.instance_id, self.cache.execution_id

        def start_child(db: Any) -> None:
            row = db.execute("SELECT status FROM instances WHERE instance_id=?", (child,)).fetchone()
            if name not in engine.app.orchestrators or (row and row[0] not in TERMINAL):
                reason = (
                    f"The orchestrator function '{name}' doesn't exist."
                    if name not in engine.app.orchestrators
                    else f"An instance with ID '{child}' already exists."
                )
                failed = self._event(SUB_FAILED, TaskScheduledId=seq, Reason=reason, Details="")
                engine._enqueue(db, parent, execution, self.now, failed)
                return
            engine._create_instance(db, child, name, input_text, parent, seq, execution)

        self.effects.append(start_child)
        return child

    def _schedule_timer(self, seq: int, fire_at: datetime, cancelled: bool = False) -> None:
        event = self._event(TIMER_CREATED, FireAt=fmt_time(fire_at))
        event["EventId"] = seq
        self.recorded.append(event)
        if cancelled:
            return
        fired = {
            "EventType": TIMER_FIRED,
            "EventId": -1,
            "IsPlayed": False,
            "Timestamp": fmt_time(fire_at),
            "TimerId": seq,
            "FireAt": fmt_time(fire_at),
        }
        engine, iid, execution = self.engine, self.instance_id, self.cache.execution_id
        self.effects.append(lambda db: engine._enqueue(db, iid, execution, fire_at, fired, timer_id=seq))

    def _cancel_timer(self, seq: int | None) -> None:
        iid = self.instance_id
        self.effects.append(
            lambda db: db.execute("DELETE FROM inbox WHERE instance_id=? AND timer_id=?", (iid, seq))
        )

    def _fail(self, message: str, prefix: bool = True) -> None:
        self.status = "Failed"
        text = f"Orchestrator function '{self.cache.name}' failed: {message}" if prefix else message
        self.output = json.dumps(text)

    def _terminate(self, reason: str) -> None:
        self.new_events.append(self._event(ORCHESTRATOR_STARTED))
        self.new_events.append(self._event(EXECUTION_TERMINATED, Input=reason))
        self.status = "Terminated"
        self.output = json.dumps(reason)

    # -------------------------------------------------------------- commit
    def _commit_drop_only(self) -> None:
        with self.engine.store.transaction() as db:
            db.executemany("DELETE FROM inbox WHERE msg_id=?", [(m.msg_id,) for m in self.messages])

    def _commit(self) -> None:
        engine, cache, iid = self.engine, self.cache, self.instance_id
        finished = self.status in TERMINAL
        events = [*self.new_events, *self.recorded]
        if self.status != "Terminated":
            events.append(self._event(ORCHESTRATOR_COMPLETED))
        if self.status in ("Completed", "Failed"):
            events.append(
                self._event(EXECUTION_COMPLETED, OrchestrationStatus=self.status, Result=self.output)
            )
        # From the next episode on these events are replayed: the extension marks them IsPlayed.
        played = [json.dumps({**e, "IsPlayed": True}) for e in events]
        with engine.store.transaction() as db:
            db.executemany("DELETE FROM inbox WHERE msg_id=?", [(m.msg_id,) for m in self.messages])
            row = db.execute(
                "SELECT execution_id, parent_id, parent_task_id, parent_execution FROM instances WHERE instance_id=?",
                (iid,),
            ).fetchone()
            if row is None or row[0] != cache.execution_id:
                return  # purged or restarted while the episode ran: its results are void
            base = len(cache.history)
            db.executemany(
                "INSERT INTO history (instance_id, idx, event) VALUES (?,?,?)",
                [(iid, base + i, text) for i, text in enumerate(played)],
            )
            abase = len(cache.actions)
            db.executemany(
                "INSERT INTO actions (instance_id, idx, action, seq) VALUES (?,?,?,?)",
                [(iid, abase + i, json.dumps(a), s) for i, (a, s) in enumerate(self.new_actions)],
            )
            if not finished:
                for effect in self.effects:
                    effect(db)
            new_state = InstanceCache(
                cache.execution_id,
                cache.name,
                cache.input,
                cache.parent_id,
                next_seq=self.seq,
                retries=self.retries,
            )
            updates: dict[str, Any] = {
                "status": self.status,
                "updated": fmt_time(engine.clock.now()),
                "engine_state": new_state.engine_state(),
            }
            if self.custom_status is not None:
                updates["custom_status"] = self.custom_status
            if finished:
                updates["output"] = self.output
                db.execute("DELETE FROM work WHERE instance_id=?", (iid,))
                db.execute("DELETE FROM inbox WHERE instance_id=?", (iid,))
                if row[1]:
                    self._notify_parent(db, str(row[1]), int(row[2]), row[3])
            sets = ", ".join(f"{k}=?" for k in updates)
            db.execute(f"UPDATE instances SET {sets} WHERE instance_id=?", (*updates.values(), iid))  # noqa: S608
            if self.continued and not finished:
                self._continue_as_new(db)
                return
        cache.history.extend(played)
        for action, seq in self.new_actions:
            cache.actions.append(action)
            cache.action_seq.append(seq)
        cache.next_seq = self.seq
        cache.retries = self.retries
        if finished:
            engine._cache.pop(iid, None)

    def _notify_parent(self, db: Any, parent_id: str, task_id: int, parent_execution: str | None) -> None:
        if self.status == "Completed":
            event = self._event(SUB_COMPLETED, TaskScheduledId=task_id, Result=self.output)
        else:
            reason = (
                json.loads(self.output or '""') if self.status == "Failed" else f"Terminated: {self.output}"
            )
            event = self._event(SUB_FAILED, TaskScheduledId=task_id, Reason=str(reason), Details="")
        self.engine._enqueue(db, parent_id, parent_execution, self.now, event)

    def _continue_as_new(self, db: Any) -> None:
        iid, engine = self.instance_id, self.engine
        execution_id = uuid.uuid4().hex
        for table in ("history", "actions", "work"):
            db.execute(f"DELETE FROM {table} WHERE instance_id=?", (iid,))  # noqa: S608
        # Undelivered external events carry over to the new execution; completions of old work do not.
        db.execute("DELETE FROM inbox WHERE instance_id=? AND execution_id IS NOT NULL", (iid,))
        db.execute(
            "UPDATE instances SET execution_id=?, input=?, engine_state='{}', status='Running' WHERE instance_id=?",
            (execution_id, self.continue_input, iid),
        )
        started = Engine._execution_started(
            iid, execution_id, self.cache.name, self.continue_input, self.cache.parent_id, self.now
        )
        engine._enqueue(db, iid, execution_id, self.now, started)
        engine._cache.pop(iid, None)


def _describe(action: dict[str, Any]) -> str:
    kind = action.get("actionType")
    name = action.get("functionName") or action.get("externalEventName") or action.get("fireAt") or ""
    labels = {
        0: "CallActivity",
        1: "CallActivityWithRetry",
        2: "CallSubOrchestrator",
        3: "CallSubOrchestratorWithRetry",
        4: "ContinueAsNew",
        5: "CreateTimer",
        6: "WaitForExternalEvent",
    }
    label = labels.get(kind, f"action type {kind}") if isinstance(kind, int) else "unknown action"
    return f"{label}({name})"


def _loads(text: object) -> Any:
    if text is None:
        return None
    try:
        return json.loads(str(text))
    except ValueError:
        return text


def _short_time(text: str) -> str:
    return text[:19] + "Z"


_EVENT_NAMES = {
    0: "ExecutionStarted",
    1: "ExecutionCompleted",
    3: "ExecutionTerminated",
    4: "TaskScheduled",
    5: "TaskCompleted",
    6: "TaskFailed",
    7: "SubOrchestrationInstanceCreated",
    8: "SubOrchestrationInstanceCompleted",
    9: "SubOrchestrationInstanceFailed",
    10: "TimerCreated",
    11: "TimerFired",
    15: "EventRaised",
}


def _public_event(event: dict[str, Any]) -> dict[str, Any]:
    shown: dict[str, Any] = {
        "EventType": _EVENT_NAMES.get(event["EventType"], str(event["EventType"])),
        "Timestamp": event["Timestamp"],
    }
    for key in (
        "EventId",
        "Name",
        "TaskScheduledId",
        "TimerId",
        "FireAt",
        "InstanceId",
        "OrchestrationStatus",
        "Reason",
    ):
        if key in event and event[key] not in (None, -1):
            shown["FunctionName" if key == "Name" else key] = event[key]
    return shown
