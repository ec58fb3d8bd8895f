"""Modules loaded on first use instead of at the worker's start.

The Functions worker imports ``function_app`` on every cold start, and the host must see every function
then, so the blueprints and their decorators load at once. The code the functions run need not: each
module of that first import is compiled (when no bytecode cache is at hand, as under ``make``) and
executed, dataclasses and all, so every module left out of it is time a cold start does not spend
(``make bench``, row "coldstart"; ``tests/unit/test_cold_start.py`` keeps them out).

A module that uses another only inside its functions writes::

    if TYPE_CHECKING:
        from onboarding import steps
    else:
        steps = lazy("onboarding.steps")

and goes on writing ``steps.resolve_exchange(...)``: the type checker sees the module, the interpreter
imports it on the first attribute read (``importlib.import_module``, under the import system's own lock,
so two threads asking at once get one module).
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any


class LazyModule:
    """Stands for a module until an attribute is read; each read goes to the real module, so a test that
    replaces one of the module's attributes is seen here too. The module is imported once, then kept."""

    __slots__ = ("_module", "_name")

    def __init__(self, name: str) -> None:
        self._name = name
        self._module: ModuleType | None = None

    def __getattr__(self, attribute: str) -> Any:
        if self._module is None:
            self._module = importlib.import_module(self._name)
        return getattr(self._module, attribute)

    def __repr__(self) -> str:
        return f"<lazy module {self._name!r}>"


def lazy(name: str) -> Any:
    """A stand-in for module ``name`` (absolute), imported when first used."""
    return LazyModule(name)
