"""Cheaper replays: the Durable SDK reads its history timestamps with the standard library.

At every episode, azure-functions-durable (1.7.0) builds each event of the orchestration's history
again and parses its timestamp with dateutil's general-purpose parser (``HistoryEvent.__init__``
calls ``dt_parse``), about 45 us an event here. On the onboarding orchestrator at 66 events that was
about 60% of the SDK's 5.7 ms per episode (cProfile, `bench/` findings), paid again at every step of
every onboarding, on the critical path.

The Functions host writes those timestamps in ISO 8601 (``2026-12-02T23:03:25.6705231Z``;
``...T08:30:00Z`` without a fraction, azure-functions-durable-python issue #220), which
``datetime.fromisoformat`` reads on Python 3.11+ (``Z``, and a fraction of any length, cut to
microseconds as dateutil does) in under a microsecond. Anything else still goes to dateutil. The
value is the same instant; only its ``tzinfo`` object differs (``timezone.utc`` rather than
dateutil's), which prints, compares and serialises the same.

Written by hand because the SDK offers no hook for its parser: ``install`` replaces the name the
SDK's history module calls, and ``installed`` lets a test prove it still does after an upgrade.
"""

from __future__ import annotations

import importlib
from datetime import datetime
from types import ModuleType
from typing import Any

from dateutil.parser import parse as _dateutil_parse


def parse_timestamp(text: Any) -> datetime:
    """``text`` as ``dateutil.parser.parse`` reads it, by the standard library when it is ISO 8601."""
    if isinstance(text, str):
        try:
            return datetime.fromisoformat(text)
        except ValueError:
            pass
    return _dateutil_parse(text)


def _history_module() -> ModuleType:
    # The module, not the class of the same name that the package exports.
    return importlib.import_module("azure.durable_functions.models.history.HistoryEvent")


def install() -> None:
    module = _history_module()
    if getattr(module, "dt_parse", None) is not None:
        module.dt_parse = parse_timestamp  # type: ignore[attr-defined]


def installed() -> bool:
    return getattr(_history_module(), "dt_parse", None) is parse_timestamp
