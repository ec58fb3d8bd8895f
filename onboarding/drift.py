"""The daily drift check's rules (pure): which breakages are news, and what to remember.

An onboarded app's chain breaks behind the project's back (an admin deletes the service principal,
removes FullAccess, switches IMAP off). The drift check diagnoses every active onboarding once a day
and tells the admins (email) and the requester (webhook event ``onboarding.drift_detected``) about a
breakage once, not every day it lasts: it remembers, per onboarding, the broken link it reported and
through which channels. A healed chain is forgotten, so a later breakage is news again; a diagnosis
that could not run (an outage) changes nothing remembered.

The memory is the drift check orchestration's own output, given to the next day's run as its input
(``schedules.drift_check``): no store of its own, and losing it (a purge of Durable history) costs at
most one repeated report per broken onboarding.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Self

DRIFT_ORCHESTRATOR = "drift_check_orchestrator"
DIAGNOSIS_ORCHESTRATOR = "diagnosis_orchestrator"
DRIFT_INSTANCE = "drift-check"
# Onboardings diagnosed at once: each diagnosis makes a few Graph and Exchange calls per mailbox, and
# the mail product's own traffic shares Exchange's throttling budget.
DRIFT_CONCURRENCY = 5


class Channel(StrEnum):
    WEBHOOK = "webhook"
    EMAIL = "email"


@dataclass(frozen=True)
class Reported:
    """The breakage reported for one onboarding: the broken link, and the channels it went through."""

    link: str
    channels: frozenset[Channel] = frozenset()

    def to_json(self) -> dict[str, Any]:
        return {"link": self.link, "channels": sorted(c.value for c in self.channels)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        return cls(str(data["link"]), frozenset(Channel(c) for c in data.get("channels", ())))


def remembered(state: Any) -> dict[str, Reported]:
    """The previous run's memory from its output (or input); a malformed one is forgotten."""
    reported = state.get("reported") if isinstance(state, dict) else None
    if not isinstance(reported, dict):
        return {}
    out = {}
    for onboarding_id, entry in reported.items():
        try:
            out[str(onboarding_id)] = Reported.from_json(entry)
        except (KeyError, TypeError, ValueError):
            continue
    return out


def channels_due(previous: Reported | None, first_broken: dict[str, Any] | None) -> tuple[Channel, ...]:
    """The channels still to tell about ``first_broken``: all for a new breakage (another link than the
    one reported), the ones that failed last time for the same one, none when healthy."""
    if first_broken is None:
        return ()
    if previous is None or previous.link != first_broken["name"]:
        return tuple(Channel)
    return tuple(c for c in Channel if c not in previous.channels)


def after(
    previous: Reported | None, first_broken: dict[str, Any] | None, told: Iterable[Channel]
) -> Reported | None:
    """What to remember once today's report went out through ``told``."""
    if first_broken is None:
        return None
    kept = (
        previous.channels if previous is not None and previous.link == first_broken["name"] else frozenset()
    )
    return Reported(first_broken["name"], kept | frozenset(told))


def waves(items: Sequence[Any], size: int = DRIFT_CONCURRENCY) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
