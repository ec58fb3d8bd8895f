"""Load a Python v2 model app the way the worker does: import function_app.py, index its functions."""

from __future__ import annotations

import importlib.util
import inspect
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import azure.functions as func


@dataclass
class HttpFunction:
    name: str
    route: str
    methods: list[str]
    auth_level: str  # "anonymous" | "function" | "admin"
    trigger_param: str
    client_param: str | None
    fn: Callable[..., Any]


@dataclass
class TimerFunction:
    name: str
    schedule: str
    run_on_startup: bool
    trigger_param: str
    client_param: str | None
    fn: Callable[..., Any]


@dataclass
class ActivityFunction:
    name: str
    input_param: str
    fn: Callable[..., Any]
    is_async: bool
    client_param: str | None = None  # a durable client input binding, as on any function


@dataclass
class FunctionApp:
    app_dir: Path
    host_json: dict[str, Any]
    http: list[HttpFunction] = field(default_factory=list)
    timers: dict[str, TimerFunction] = field(default_factory=dict)
    orchestrators: dict[str, Callable[[str], str]] = field(default_factory=dict)
    activities: dict[str, ActivityFunction] = field(default_factory=dict)

    @property
    def route_prefix(self) -> str:
        prefix = self.host_json.get("extensions", {}).get("http", {}).get("routePrefix", "api")
        return str(prefix).strip("/")

    @property
    def durable_settings(self) -> dict[str, Any]:
        return dict(self.host_json.get("extensions", {}).get("durableTask", {}))

    @property
    def hub_name(self) -> str:
        return str(self.durable_settings.get("hubName", "TestHubName"))


_loaded: dict[Path, FunctionApp] = {}


def _find_app(module: Any) -> func.FunctionRegister:
    app = getattr(module, "app", None)
    if isinstance(app, func.FunctionRegister):
        return app
    for value in vars(module).values():
        if isinstance(value, func.FunctionRegister):
            return value
    raise LookupError("function_app.py defines no FunctionApp/DFApp")


def load_app(app_dir: Path) -> FunctionApp:
    """Import `app_dir/function_app.py` once per process (DFApp.get_functions() may run only once)."""
    app_dir = app_dir.resolve()
    if app_dir in _loaded:
        return _loaded[app_dir]
    host_json_path = app_dir / "host.json"
    host_json = json.loads(host_json_path.read_text()) if host_json_path.exists() else {}
    source = app_dir / "function_app.py"
    if str(app_dir) not in sys.path:
        sys.path.insert(0, str(app_dir))
    module = _already_imported(source) or _import(source)
    loaded = FunctionApp(app_dir=app_dir, host_json=host_json)
    for function in _functions(_find_app(module)):
        _index(loaded, function)
    _loaded[app_dir] = loaded
    return loaded


def _already_imported(source: Path) -> Any:
    """A test may have imported the app itself; executing it twice would register its blueprints twice."""
    target = source.resolve()
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if path and Path(path).resolve() == target:
            return module
    return None


def _import(source: Path) -> Any:
    # "function_app" as the worker names it, unless taken: then a unique name, so several sample
    # apps can live in one pytest process.
    module_name = "function_app" if "function_app" not in sys.modules else f"_funchost_app_{len(_loaded)}"
    spec = importlib.util.spec_from_file_location(module_name, source)
    if spec is None or spec.loader is None:
        raise FileNotFoundError(source)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def _functions(app: func.FunctionRegister) -> list[Any]:
    # get_functions() refuses a second call (it records names); if someone indexed the app already,
    # build the functions from its builders as that call does.
    if not app.functions_bindings:
        return app.get_functions()
    return [builder.build(app.auth_level) for builder in app._function_builders]


def _index(app: FunctionApp, function: Any) -> None:
    trigger = function.get_trigger()
    name = function.get_function_name()
    fn = function.get_user_function()
    client_param = next((b.name for b in function.get_bindings() if b.type == "durableClient"), None)
    if trigger.type == "httpTrigger":
        methods = [str(getattr(m, "value", m)).upper() for m in (trigger.methods or [])]
        auth = getattr(trigger.auth_level, "value", trigger.auth_level) or "function"
        app.http.append(
            HttpFunction(
                name, trigger.route or name, methods, str(auth).lower(), trigger.name, client_param, fn
            )
        )
    elif trigger.type == "timerTrigger":
        app.timers[name] = TimerFunction(
            name, trigger.schedule, bool(trigger.run_on_startup), trigger.name, client_param, fn
        )
    elif trigger.type == "orchestrationTrigger":
        app.orchestrators[trigger.orchestration or name] = fn
    elif trigger.type == "activityTrigger":
        real = inspect.unwrap(fn)
        activity = ActivityFunction(name, trigger.name, fn, inspect.iscoroutinefunction(real), client_param)
        app.activities[name] = activity
        if trigger.activity and trigger.activity != name:
            app.activities[trigger.activity] = activity
