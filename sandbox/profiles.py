"""Delay profiles of the sandbox tenant: how long replication and propagation take.

``fast`` (the default) has no delays, so a unit test sees every write at once. ``realistic`` draws each
delay from the range that Microsoft documents or that public threads observed (docs/sandbox-facts.md,
"Profile and strictness"), with a generator seeded by the tenant's seed, so a failing run replays the
same way. The delays are measured on the tenant clock: a test with a manual clock moves time instead of
sleeping for the hour a FullAccess grant may take.

A profile names its delays by *knob*: the fields of ``faults.Replication`` and ``mailbox_permission_s``.
A knob added to ``Replication`` later is picked up by name; a profile range for a knob the faults do not
have (yet) is reported, not applied.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, fields

from sandbox.faults import Faults, Replication

PROFILE_ENV = "SANDBOX_PROFILE"
FAST = "fast"
REALISTIC = "realistic"
MAILBOX_PERMISSION = "mailbox_permission_s"


@dataclass(frozen=True)
class DelayRange:
    low_s: float
    high_s: float
    source: str  # where the range comes from; docs/sandbox-facts.md cites it in full

    def draw(self, rng: random.Random) -> float:
        return round(rng.uniform(self.low_s, self.high_s), 1)


REALISTIC_DELAYS: dict[str, DelayRange] = {
    # A new application is not yet seen by the replica that serves POST /servicePrincipals.
    "application_s": DelayRange(
        2, 90, "Entra eventual consistency (devblogs); Q&A NoBackingApplicationObject"
    ),
    # A new service principal is not found by reads on other replicas.
    "service_principal_s": DelayRange(
        2, 90, "Entra eventual consistency (devblogs); aaddevsup 404 after create"
    ),
    # A new app role assignment is neither listed nor in newly issued tokens.
    "app_role_assignment_s": DelayRange(30, 300, "microsoft-graph-docs#15855 (30-60 s), #4765 (retries)"),
    # Exchange's copy of the directory does not know a new service principal (f15-fixes adds the knob).
    "exchange_service_principal_s": DelayRange(
        60, 900, "issue 15 item 2: AADServicePrincipalNotFound for minutes"
    ),
    # /applications/{id} answers 404 right after creation (GET, addPassword); no published duration.
    "application_read_s": DelayRange(2, 60, "msgraph-sdk-javascript#1999 (404 on addPassword after create)"),
    # Key Vault: a soft delete or recovery still under way answers 409; no published duration.
    "vault_delete_s": DelayRange(1, 20, "terraform-provider-azurerm#10454 (409 'currently being deleted')"),
    "vault_recover_s": DelayRange(1, 20, "azure-sdk-for-net#31581 (ObjectIsBeingRecovered after recovery)"),
    # A new Key Vault role assignment takes effect within 10 minutes.
    "vault_role_s": DelayRange(60, 600, "Learn: Key Vault RBAC, up to 10 minutes after an assignment"),
    # FullAccess does not let the app open the mailbox yet.
    MAILBOX_PERMISSION: DelayRange(300, 3600, "Learn: give mailbox permissions, up to 60 minutes"),
}

PROFILES: dict[str, dict[str, DelayRange]] = {FAST: {}, REALISTIC: REALISTIC_DELAYS}


def profile_from_env() -> str:
    """The profile the scenario suites run under: ``SANDBOX_PROFILE`` or ``fast``."""
    name = os.environ.get(PROFILE_ENV, "").strip() or FAST
    if name not in PROFILES:
        raise ValueError(
            f"{PROFILE_ENV}={name!r} is not a sandbox profile; expected one of {sorted(PROFILES)}"
        )
    return name


def delay_knobs(faults: Faults) -> tuple[str, ...]:
    """Every delay a profile can set on these faults."""
    return (*(f.name for f in fields(faults.replication)), MAILBOX_PERMISSION)


def set_delay(faults: Faults, knob: str, seconds: float) -> None:
    if knob == MAILBOX_PERMISSION:
        faults.set_mailbox_permission_delay(seconds)
    elif knob in {f.name for f in fields(Replication)}:
        setattr(faults.replication, knob, seconds)
    else:
        raise KeyError(f"no delay knob {knob!r}; expected one of {delay_knobs(faults)}")


@dataclass(frozen=True)
class AppliedProfile:
    name: str
    delays: dict[str, float]  # knob -> seconds, as drawn and set
    not_modelled: tuple[str, ...]  # knobs of the profile the faults do not have


def apply_profile(faults: Faults, name: str, *, seed: int) -> AppliedProfile:
    """Draw the profile's delays (seeded) and set them on ``faults``."""
    if name not in PROFILES:
        raise ValueError(f"unknown sandbox profile {name!r}; expected one of {sorted(PROFILES)}")
    known = set(delay_knobs(faults))
    delays: dict[str, float] = {}
    missing: list[str] = []
    for knob, delay_range in sorted(PROFILES[name].items()):
        if knob not in known:
            missing.append(knob)
            continue
        delays[knob] = delay_range.draw(random.Random(f"{seed}:profile:{name}:{knob}"))
        set_delay(faults, knob, delays[knob])
    return AppliedProfile(name, delays, tuple(missing))
