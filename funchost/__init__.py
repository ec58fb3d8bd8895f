"""A local Azure Functions host for Python v2 apps, with a Durable engine on SQLite.

It runs function_app.py unchanged: HTTP triggers on a local port, the real Durable SDK replaying
orchestrators, activities on a bounded worker pool, timer triggers, and a controllable clock for tests.
"""

from .clock import Clock, ManualClock, OffsetClock, RealClock
from .host import LocalHost
from .ports import ReservedPort

__all__ = ["Clock", "LocalHost", "ManualClock", "OffsetClock", "RealClock", "ReservedPort"]
