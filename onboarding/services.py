"""The adapters one activity needs, built on first use from the settings and closed afterwards.

They are typed as the Protocols of ``onboarding.ports``; the managed-identity credential is the
worker's (``identity.worker_credential``: one token cache for every activity of the process), not
the activity's, so an activity asks the identity endpoint for a token only when the worker has none.
Their HTTP clients are the worker's too (``onboarding.adapters._tls``: connections and TLS contexts
shared by every activity on the event loop, no cookies, each request with its own activity's token).

Adapters are imported lazily: importing the function app must not load msgraph-sdk, Key Vault or
identity clients (cold start), and an activity pays only for what it uses.
"""

from __future__ import annotations

import gc
import sys
from typing import TYPE_CHECKING, Self

from onboarding.settings import Settings

if TYPE_CHECKING:
    from azure.core.credentials_async import AsyncTokenCredential

    from onboarding.ports import (
        CertificatePort,
        ExchangePort,
        GraphPort,
        MailProbePort,
        SecretAccessPort,
        VaultPort,
    )


_modules_when_frozen = 0


def freeze_imports() -> bool:
    """Put what the lazy imports loaded out of the garbage collector's way; True if it did.

    Modules, classes and functions live as long as the process, but a full collection walks every one
    of them: msgraph-sdk and the Azure clients bring about 150,000 tracked objects, and one full
    collection then took 80-130 ms on the benchmark machine, inside whichever orchestrator episode
    happened to allocate past the threshold (docs/bench.md, finding 2). ``gc.freeze`` moves every
    object tracked now to a generation that is never collected. It runs after an activity and only
    when modules were imported since the last time, which stops after the first onboardings: the
    few short-lived objects of other activities frozen with them are bounded by that count."""
    global _modules_when_frozen
    loaded = len(sys.modules)
    if loaded <= _modules_when_frozen:
        return False
    _modules_when_frozen = loaded
    gc.freeze()
    return True


class Services:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._credential: AsyncTokenCredential | None = None
        self._graph: GraphPort | None = None
        self._exchange: ExchangePort | None = None
        self._vault: VaultPort | None = None
        self._secret_access: SecretAccessPort | None = None
        self._certificates: CertificatePort | None = None

    @property
    def credential(self) -> AsyncTokenCredential:
        """The function app's managed identity, shared by this worker's activities."""
        if self._credential is None:
            from onboarding.adapters.identity import worker_credential

            self._credential = worker_credential(self.settings)
        return self._credential

    @property
    def mail_probe(self) -> MailProbePort:
        from onboarding.adapters.mailprobe import probe_login

        return probe_login

    @property
    def graph(self) -> GraphPort:
        if self._graph is None:
            from onboarding.adapters.graph import GraphDirectory

            self._graph = GraphDirectory(self.settings, self.credential)
        return self._graph

    @property
    def exchange(self) -> ExchangePort:
        if self._exchange is None:
            from onboarding.adapters.exchange import ExchangeAdmin

            self._exchange = ExchangeAdmin(self.settings, self.credential, tenant_id=self.settings.tenant_id)
        return self._exchange

    @property
    def vault(self) -> VaultPort:
        if self._vault is None:
            from onboarding.adapters.keyvault import CredentialVault

            self._vault = CredentialVault(self.settings, self.credential)
        return self._vault

    @property
    def secret_access(self) -> SecretAccessPort:
        if self._secret_access is None:
            from onboarding.adapters.rbac import SecretAccess

            self._secret_access = SecretAccess(self.settings, self.credential)
        return self._secret_access

    @property
    def certificates(self) -> CertificatePort:
        if self._certificates is None:
            from onboarding.adapters.kvcertificates import CertificateVault

            self._certificates = CertificateVault(self.settings, self.credential)
        return self._certificates

    async def aclose(self) -> None:
        try:
            for adapter in (
                self._graph,
                self._exchange,
                self._vault,
                self._secret_access,
                self._certificates,
            ):
                if adapter is not None:
                    await adapter.close()
            if self._credential is not None:
                await self._credential.close()
        finally:
            freeze_imports()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
