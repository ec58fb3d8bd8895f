"""Faults on demand: latency, error statuses, dropped connections, replication and propagation delays,
and Exchange's per-caller throttling. Everything random comes from seeded generators so a failing test
replays the same way."""

from __future__ import annotations

import random
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

SERVICES = ("entra", "graph", "exchange", "keyvault", "identity", "arm")
DROP = "drop"
Fault = int | str  # an HTTP status, or DROP


class ServiceFaults:
    """Faults of one service. ``configure`` changes only what it is given; ``reset`` clears all."""

    def __init__(self, service: str, seed: int) -> None:
        self.service = service
        self._base_seed = seed
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.latency_ms = 0.0
            self.error_rate = 0.0
            self.errors: tuple[Fault, ...] = (429, 500, 503)
            self.retry_after = 1.0
            self._rng = random.Random(f"{self._base_seed}:{self.service}")

    def configure(
        self,
        *,
        latency_ms: float | None = None,
        error_rate: float | None = None,
        errors: Iterable[Fault] | None = None,
        retry_after: float | None = None,
        seed: int | None = None,
    ) -> ServiceFaults:
        with self._lock:
            if latency_ms is not None:
                self.latency_ms = float(latency_ms)
            if error_rate is not None:
                if not 0.0 <= error_rate <= 1.0:
                    raise ValueError("error_rate must be within 0..1")
                self.error_rate = float(error_rate)
            if errors is not None:
                chosen = tuple(errors)
                for e in chosen:
                    if e != DROP and not (isinstance(e, int) and 400 <= e <= 599):
                        raise ValueError(f"unsupported fault {e!r}: an HTTP error status or 'drop'")
                if not chosen:
                    raise ValueError("errors must not be empty")
                self.errors = chosen
            if retry_after is not None:
                self.retry_after = float(retry_after)
            if seed is not None:
                self._rng = random.Random(f"{seed}:{self.service}")
        return self

    def draw(self) -> Fault | None:
        """The fault for the next request, if any (one draw per request keeps runs reproducible)."""
        with self._lock:
            if self.error_rate <= 0.0:
                return None
            if self._rng.random() >= self.error_rate:
                return None
            return self._rng.choice(self.errors)


@dataclass
class Replication:
    """Seconds (tenant clock) before a new object is seen by other directory replicas."""

    application_s: float = 0.0  # POST /servicePrincipals for a new app fails meanwhile
    service_principal_s: float = 0.0  # a new service principal is not found meanwhile
    app_role_assignment_s: float = 0.0  # a new grant is neither listed nor in tokens meanwhile
    # Exchange Online reads Entra through its own copy of the directory, which lags behind Graph:
    # New-ServicePrincipal answers AADServicePrincipalNotFound for a principal this young.
    exchange_service_principal_s: float = 0.0
    application_read_s: float = 0.0  # /applications/{id} (GET, addPassword...) answers 404 meanwhile
    vault_role_s: float = 0.0  # a new Key Vault role assignment is not in effect (403 ForbiddenByRbac)
    vault_delete_s: float = 0.0  # a deleted secret's name answers 409 ObjectIsBeingDeleted meanwhile
    vault_recover_s: float = 0.0  # a recovered secret answers 409 ObjectIsBeingRecovered meanwhile


@dataclass
class Throttle:
    max_concurrency: int | None = None
    requests_per_second: float | None = None
    retry_after: float = 1.0


@dataclass
class _CallerUsage:
    in_flight: int = 0
    recent: deque[float] = field(default_factory=deque)


class Throttler:
    """Per-caller concurrency and rate limits, as Exchange Online applies them to admin API calls."""

    def __init__(self) -> None:
        self.limits = Throttle()
        self._lock = threading.Lock()
        self._usage: dict[str, _CallerUsage] = {}

    def acquire(self, caller: str, cmdlets: int = 1) -> float | None:
        """None when ``cmdlets`` calls may go ahead (then ``release`` them), else the Retry-After in
        seconds. A ``$batch`` counts each of its cmdlets, and is refused whole if they do not all fit."""
        limits = self.limits
        now = time.monotonic()
        with self._lock:
            usage = self._usage.setdefault(caller, _CallerUsage())
            while usage.recent and usage.recent[0] <= now - 1.0:
                usage.recent.popleft()
            if limits.max_concurrency is not None and usage.in_flight + cmdlets > limits.max_concurrency:
                return limits.retry_after
            if (
                limits.requests_per_second is not None
                and len(usage.recent) + cmdlets > limits.requests_per_second
            ):
                return limits.retry_after
            usage.in_flight += cmdlets
            usage.recent.extend([now] * cmdlets)
            return None

    def release(self, caller: str, cmdlets: int = 1) -> None:
        with self._lock:
            self._usage[caller].in_flight -= cmdlets

    def reset(self) -> None:
        with self._lock:
            self.limits = Throttle()
            self._usage.clear()


class Faults:
    """``faults.graph.configure(error_rate=0.5, errors=(429,))``, ``faults["keyvault"].reset()``..."""

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self.entra = ServiceFaults("entra", seed)
        self.graph = ServiceFaults("graph", seed)
        self.exchange = ServiceFaults("exchange", seed)
        self.keyvault = ServiceFaults("keyvault", seed)
        self.identity = ServiceFaults("identity", seed)
        self.arm = ServiceFaults("arm", seed)  # Azure Resource Manager (role assignments)
        self.replication = Replication()
        self.mailbox_permission_delay_s = 0.0
        self.exchange_throttle = Throttler()
        # (cmdlet lowercased, identity lowercased) -> (exception type, message)
        self.cmdlet_failures: dict[tuple[str, str], tuple[str, str]] = {}

    def __getitem__(self, service: str) -> ServiceFaults:
        if service not in SERVICES:
            raise KeyError(service)
        faults: ServiceFaults = getattr(self, service)
        return faults

    def set_replication(
        self,
        *,
        application_s: float | None = None,
        service_principal_s: float | None = None,
        app_role_assignment_s: float | None = None,
        exchange_service_principal_s: float | None = None,
        application_read_s: float | None = None,
        vault_role_s: float | None = None,
        vault_delete_s: float | None = None,
        vault_recover_s: float | None = None,
    ) -> None:
        if exchange_service_principal_s is not None:
            self.replication.exchange_service_principal_s = exchange_service_principal_s
        if application_read_s is not None:
            self.replication.application_read_s = application_read_s
        if vault_role_s is not None:
            self.replication.vault_role_s = vault_role_s
        if vault_delete_s is not None:
            self.replication.vault_delete_s = vault_delete_s
        if vault_recover_s is not None:
            self.replication.vault_recover_s = vault_recover_s
        if application_s is not None:
            self.replication.application_s = application_s
        if service_principal_s is not None:
            self.replication.service_principal_s = service_principal_s
        if app_role_assignment_s is not None:
            self.replication.app_role_assignment_s = app_role_assignment_s

    def set_mailbox_permission_delay(self, seconds: float) -> None:
        self.mailbox_permission_delay_s = seconds

    def throttle_exchange(
        self,
        *,
        max_concurrency: int | None = None,
        requests_per_second: float | None = None,
        retry_after: float = 1.0,
    ) -> None:
        self.exchange_throttle.limits = Throttle(max_concurrency, requests_per_second, retry_after)

    def fail_cmdlet(self, cmdlet: str, identity: str, *, exception_type: str, message: str) -> None:
        """Every ``cmdlet`` call with ``-Identity identity`` fails with this Exchange error (400, the
        usual error shape) until reset: one mailbox's refusal among many that work."""
        self.cmdlet_failures[(cmdlet.lower(), identity.lower())] = (exception_type, message)

    def cmdlet_failure(self, cmdlet: str, identity: str) -> tuple[str, str] | None:
        return self.cmdlet_failures.get((cmdlet.lower(), identity.lower()))

    def reset(self) -> None:
        for service in SERVICES:
            self[service].reset()
        self.replication = Replication()
        self.mailbox_permission_delay_s = 0.0
        self.exchange_throttle.reset()
        self.cmdlet_failures.clear()
