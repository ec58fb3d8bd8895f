"""LocalHost: loads an app, serves its HTTP triggers, runs its orchestrations, activities and timers."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import secrets
import threading
import time
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from aiohttp import web
from azure.functions import meta
from azure.functions.durable_functions import ActivityTriggerConverter
from azure.functions.timer import TimerRequest

from ._loop import shared_loop
from .app_loader import FunctionApp, HttpFunction, load_app
from .clock import Clock, RealClock
from .cron import CronSchedule
from .engine import TERMINAL, Engine, EpisodeStats
from .http_api import (
    _aiohttp_route,
    _key_matches,
    durable_routes,
    invoke,
    method_dispatch,
    request_key,
)
from .store import Store

log = logging.getLogger("funchost")


class LocalHost:
    def __init__(
        self,
        app_dir: Path,
        *,
        db_path: Path,
        port: int = 0,
        reuse_port: bool = False,
        clock: Clock | None = None,
        max_activity_workers: int | None = None,
        function_key: str | None = None,
        master_key: str | None = None,
    ) -> None:
        self.app: FunctionApp = load_app(Path(app_dir))
        self.clock: Clock = clock or RealClock()
        self.port = port
        # True when the caller holds a reservation of the port (funchost/ports.py) to bind beside.
        self.reuse_port = reuse_port
        self.function_key = function_key or secrets.token_urlsafe(24)
        self.master_key = master_key or secrets.token_urlsafe(24)
        # The durable extension's system key: it signs the management URLs handed to clients.
        self.system_key = secrets.token_urlsafe(24)
        settings = self.app.durable_settings
        self.max_activity_workers = max_activity_workers or int(
            settings.get("maxConcurrentActivityFunctions", 10)
        )
        self.max_orchestrators = max(1, min(2, int(settings.get("maxConcurrentOrchestratorFunctions", 2))))
        self.store = Store(Path(db_path))
        self.loop = shared_loop()
        self.engine = Engine(self.store, self.app, self.clock, self._wake_threadsafe)
        self.activity_pool = concurrent.futures.ThreadPoolExecutor(
            self.max_activity_workers, "funchost-activity"
        )
        self.orchestrator_pool = concurrent.futures.ThreadPoolExecutor(
            self.max_orchestrators, "funchost-orch"
        )
        # Database calls made on behalf of the event loop, so a slow commit never blocks HTTP.
        self.io_pool = concurrent.futures.ThreadPoolExecutor(2, "funchost-io")
        self.clock.subscribe(self._wake_threadsafe)
        self._wake: asyncio.Event | None = None
        self._runner: web.AppRunner | None = None
        self._rpc_runner: web.AppRunner | None = None
        self._dispatcher: asyncio.Task[None] | None = None
        self._running_episodes: set[str] = set()
        # Finished runs per timer function (tests wait on it); runs of one timer never overlap, as
        # Azure's singleton lock for timer triggers guarantees.
        self.timer_runs: dict[str, int] = {}
        self._timer_locks: dict[str, asyncio.Lock] = {}
        self._running_work: set[int] = set()
        self._busy_lock = threading.Lock()
        self._next_cron: dict[str, datetime] = {}
        self._cron = {name: CronSchedule.parse(t.schedule) for name, t in self.app.timers.items()}
        self.rpc_port = 0
        self.started = False
        self._stopping = False
        self._tasks: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ lifecycle
    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LocalHost:
        asyncio.run_coroutine_threadsafe(self._astart(), self.loop).result(timeout=30)
        self.started = True
        log.info("funchost listening on %s", self.base_url)
        return self

    def stop(self) -> None:
        if self.started:
            asyncio.run_coroutine_threadsafe(self._astop(), self.loop).result(timeout=30)
            self.started = False
        self.activity_pool.shutdown(wait=True, cancel_futures=True)
        self.orchestrator_pool.shutdown(wait=True, cancel_futures=True)
        self.io_pool.shutdown(wait=True, cancel_futures=True)
        self.store.close()

    def __enter__(self) -> LocalHost:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    async def _astart(self) -> None:
        self._wake = asyncio.Event()
        rpc = web.Application()
        rpc.add_routes(durable_routes(self, "/durabletask", lambda request: True))
        self._rpc_runner = web.AppRunner(rpc, access_log=None)
        await self._rpc_runner.setup()
        rpc_site = web.TCPSite(self._rpc_runner, "127.0.0.1", 0)
        await rpc_site.start()
        self.rpc_port = _bound_port(self._rpc_runner)

        public = web.Application()
        prefix = self.app.route_prefix
        # Azure lets several functions share a route with different methods: dispatch per path.
        by_path: dict[str, list[HttpFunction]] = {}
        for function in self.app.http:
            for path in _aiohttp_route(function.route):
                by_path.setdefault("/" + "/".join(p for p in (prefix, path) if p), []).append(function)
        # Literal segments win over parameters, as in ASP.NET Core routing: register them first.
        for full, functions in sorted(by_path.items(), key=lambda item: "{" in item[0]):
            public.router.add_route("*", full, method_dispatch(self, functions))
        public.add_routes(durable_routes(self, "/runtime/webhooks/durabletask", self._system_authorized))
        self._runner = web.AppRunner(public, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_port=self.reuse_port)
        await site.start()
        self.port = _bound_port(self._runner)

        now = self.clock.now()
        for name, schedule in self._cron.items():
            self._next_cron[name] = schedule.next_after(now)
            if self.app.timers[name].run_on_startup:
                self._track(asyncio.get_running_loop().create_task(self._run_timer(name, past_due=False)))
        self._dispatcher = asyncio.get_running_loop().create_task(self._dispatch())

    async def _astop(self) -> None:
        # A flag rather than Task.cancel(): asyncio.wait_for in 3.11 can swallow a cancellation.
        self._stopping = True
        if self._wake is not None:
            self._wake.set()
        if self._dispatcher:
            await self._dispatcher
        # In-flight work is abandoned, as in a crash: its messages and work items stay in the hub.
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for runner in (self._runner, self._rpc_runner):
            if runner:
                await runner.cleanup()
        # The SDK's durable client keeps one aiohttp session per process, bound to this loop; the
        # worker never closes it (process exit does), but a host stopping inside a live process should.
        from azure.durable_functions.models.utils import http_utils

        await http_utils._close_session()

    # ------------------------------------------------------------------ auth
    def authorized(self, request: web.Request, level: str) -> bool:
        if level == "anonymous":
            return True
        key = request_key(request)
        if level == "admin":
            return _key_matches(key, self.master_key)
        return _key_matches(key, self.function_key, self.master_key)

    def _system_authorized(self, request: web.Request) -> bool:
        return _key_matches(request_key(request), self.system_key, self.master_key)

    # ------------------------------------------------------------------ durable client binding
    def management_payload(self, instance_id: str) -> dict[str, str]:
        urls = self._management_urls()
        return {k: v.replace("INSTANCEID", instance_id) for k, v in urls.items()}

    def _management_urls(self) -> dict[str, str]:
        base = f"{self.base_url}/runtime/webhooks/durabletask"
        qs = f"taskHub={self.app.hub_name}&connection=Storage&code={self.system_key}"
        instance = f"{base}/instances/INSTANCEID"
        return {
            "id": "INSTANCEID",
            "statusQueryGetUri": f"{instance}?{qs}",
            "sendEventPostUri": f"{instance}/raiseEvent/{{eventName}}?{qs}",
            "terminatePostUri": f"{instance}/terminate?reason={{text}}&{qs}",
            "rewindPostUri": f"{instance}/rewind?reason={{text}}&{qs}",
            "purgeHistoryDeleteUri": f"{instance}?{qs}",
            "restartPostUri": f"{instance}/restart?{qs}",
            "suspendPostUri": f"{instance}/suspend?reason={{text}}&{qs}",
            "resumePostUri": f"{instance}/resume?reason={{text}}&{qs}",
        }

    def client_binding_json(self) -> str:
        base = f"{self.base_url}/runtime/webhooks/durabletask"
        code = f"code={self.system_key}"
        return json.dumps(
            {
                "taskHubName": self.app.hub_name,
                "creationUrls": {
                    "createNewInstancePostUri": f"{base}/orchestrators/{{functionName}}[/{{instanceId}}]?{code}",
                    "createAndWaitOnNewInstancePostUri": f"{base}/orchestrators/{{functionName}}[/{{instanceId}}]?timeout={{timeoutInSeconds}}"
                    f"&pollingInterval={{intervalInSeconds}}&{code}",
                },
                "managementUrls": self._management_urls(),
                "baseUrl": base,
                "requiredQueryStringParameters": code,
                "rpcBaseUrl": f"http://127.0.0.1:{self.rpc_port}/durabletask/",
                "httpBaseUrl": "",
                "maxGrpcMessageSizeInBytes": 0,
                "grpcHttpClientTimeout": "00:01:40",
            }
        )

    # ------------------------------------------------------------------ dispatcher
    def _wake_threadsafe(self) -> None:
        wake = self._wake
        if wake is not None:
            self.loop.call_soon_threadsafe(wake.set)

    async def _dispatch(self) -> None:
        assert self._wake is not None
        loop = asyncio.get_running_loop()
        while not self._stopping:
            self._wake.clear()
            try:
                await self._dispatch_once(loop)
            except Exception as exc:
                # Type only: an exception text may quote data, and logs never carry data.
                log.error("funchost dispatcher error: %s", type(exc).__name__)
            if self._stopping:
                break
            waiter = loop.create_task(self._wake.wait())
            await asyncio.wait({waiter}, timeout=self._sleep_seconds())
            waiter.cancel()

    async def _dispatch_once(self, loop: asyncio.AbstractEventLoop) -> None:
        ready = await loop.run_in_executor(self.io_pool, self.engine.ready_instances)
        for instance_id in ready:
            with self._busy_lock:
                if (
                    instance_id in self._running_episodes
                    or len(self._running_episodes) >= self.max_orchestrators
                ):
                    continue
                self._running_episodes.add(instance_id)
            self._track(loop.create_task(self._episode(instance_id)))
        work = await loop.run_in_executor(self.io_pool, self.engine.pending_work)
        for item in work:
            with self._busy_lock:
                if item[0] in self._running_work or len(self._running_work) >= self.max_activity_workers:
                    continue
                self._running_work.add(item[0])
            self._track(loop.create_task(self._activity(*item)))
        now = self.clock.now()
        for name, due in list(self._next_cron.items()):
            if now >= due:
                self._next_cron[name] = self._cron[name].next_after(now)
                self._track(loop.create_task(self._run_timer(name, past_due=(now - due).total_seconds() > 1)))

    def _track(self, task: asyncio.Task[None]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _sleep_seconds(self) -> float:
        if not isinstance(self.clock, RealClock):
            return 0.5  # a manual clock wakes the dispatcher itself when advanced
        now = self.clock.now().timestamp()  # an OffsetClock's time, as the engine's
        candidates = [1.0]
        visible = self.engine.next_visible_at()
        if visible is not None:
            candidates.append(visible - now)
        candidates.extend((due.timestamp() - now) for due in self._next_cron.values())
        return max(0.005, min(candidates))

    async def _episode(self, instance_id: str) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self.orchestrator_pool, self.engine.run_episode, instance_id)
        except Exception as exc:
            log.error("episode of instance %s failed: %s", instance_id, type(exc).__name__)
        finally:
            with self._busy_lock:
                self._running_episodes.discard(instance_id)
            self._wake_threadsafe()

    async def _activity(
        self,
        work_id: int,
        instance_id: str,
        execution_id: str,
        task_id: int,
        name: str,
        input_text: str | None,
    ) -> None:
        loop = asyncio.get_running_loop()
        result_text: str | None = None
        failure: tuple[str, str] | None = None
        activity = self.app.activities.get(name)
        log.info("Executing 'Functions.%s' (instance=%s)", name, instance_id)
        try:
            if activity is None:
                # The extension's wording (TaskNonexistentActivityShim).
                failure = (
                    f"Activity function '{name}' failed: Activity function '{name}' does not exist.",
                    "",
                )
                raise LookupError(name)
            value = ActivityTriggerConverter.decode(meta.Datum(input_text, "json"), trigger_metadata=None)
            kwargs: dict[str, Any] = {activity.input_param: value}
            if activity.client_param:
                kwargs[activity.client_param] = self.client_binding_json()
            result = await invoke(self, activity.fn, name, kwargs)
            result_text = ActivityTriggerConverter.encode(result, expected_type=None).value
            log.info("Executed 'Functions.%s' (instance=%s, Succeeded)", name, instance_id)
        except Exception as exc:
            # TaskActivityShim's Reason: "Activity function 'NAME' failed: <the worker's exception>".
            failure = failure or (f"Activity function '{name}' failed: {type(exc).__name__}: {exc}", "")
            log.info("Executed 'Functions.%s' (instance=%s, Failed)", name, instance_id)
        try:
            await loop.run_in_executor(self.io_pool, self.engine.complete_work, work_id, result_text, failure)
        finally:
            with self._busy_lock:
                self._running_work.discard(work_id)
            self._wake_threadsafe()

    async def _run_timer(self, name: str, past_due: bool, reraise: bool = False) -> None:
        timer = self.app.timers[name]
        kwargs: dict[str, Any] = {timer.trigger_param: TimerRequest(past_due=past_due)}
        if timer.client_param:
            kwargs[timer.client_param] = self.client_binding_json()
        async with self._timer_locks.setdefault(name, asyncio.Lock()):
            log.info("Executing 'Functions.%s'", name)
            try:
                await invoke(self, timer.fn, name, kwargs)
                log.info("Executed 'Functions.%s' (Succeeded)", name)
            except Exception as exc:
                log.error("Executed 'Functions.%s' (Failed: %s)", name, type(exc).__name__)
                if reraise:
                    raise
            finally:
                self.timer_runs[name] = self.timer_runs.get(name, 0) + 1

    # ------------------------------------------------------------------ public helpers
    def run_timer(self, name: str) -> None:
        """Run a timer trigger now, as the admin API's manual run does; returns when it finishes."""
        if name not in self.app.timers:
            raise KeyError(name)
        asyncio.run_coroutine_threadsafe(
            self._run_timer(name, past_due=False, reraise=True), self.loop
        ).result()

    def wait_timer_runs(self, name: str, count: int, timeout: float = 30) -> None:
        """Until the timer function ``name`` has finished ``count`` runs in all (scheduled or manual)."""
        deadline = time.monotonic() + timeout
        while self.timer_runs.get(name, 0) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"timer {name} ran {self.timer_runs.get(name, 0)} time(s), not {count}")
            time.sleep(0.02)

    def get_status(self, instance_id: str, show_history: bool = False) -> dict[str, Any] | None:
        return self.engine.get_status(instance_id, show_history=show_history)

    def instances(self) -> list[dict[str, Any]]:
        return self.engine.query()

    def wait_for(self, instance_id: str, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self.engine.changed:
            while True:
                status = self.engine.get_status(instance_id)
                if status and status["runtimeStatus"] in TERMINAL:
                    return status
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(
                        f"instance {instance_id} not finished: {status and status['runtimeStatus']}"
                    )
                self.engine.changed.wait(min(remaining, 0.2))

    def idle(self, timeout: float = 30) -> None:
        """Wait until nothing is runnable now: no visible message, no episode, no activity pending."""
        deadline = time.monotonic() + timeout
        settled = 0
        while True:
            with self._busy_lock:
                busy = bool(self._running_episodes or self._running_work)
            busy = busy or bool(self.engine.ready_instances()) or bool(self.engine.pending_work())
            settled = 0 if busy else settled + 1
            if settled >= 2:  # twice in a row, so a wake-up in flight is not missed
                return
            if time.monotonic() > deadline:
                raise TimeoutError("host still busy")
            self._wake_threadsafe()
            time.sleep(0.02)

    def episode_count(self, instance_id: str) -> int:
        """How many episodes (orchestrator replays) an instance has had since this host started."""
        return self.engine.episodes.get(instance_id, 0)

    def run_episode_now(self, instance_id: str) -> EpisodeStats | None:
        """Run one episode on the caller's thread (benchmarks; the host need not be started)."""
        return self.engine.run_episode(instance_id)


def _bound_port(runner: web.AppRunner) -> int:
    for site in runner.sites:
        server = getattr(site, "_server", None)
        if server is not None and server.sockets:
            return int(server.sockets[0].getsockname()[1])
    raise RuntimeError("site not bound")
