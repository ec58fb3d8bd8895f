"""The adapters one activity needs, built on first use from the settings and closed afterwards.

Adapters are imported lazily: importing the function app must not load msgraph-sdk, Key Vault or
identity clients (cold start), and an activity pays only for what it uses.
"""

from __future__ import annotations

import gc
import sys
from typing import TYPE_CHECKING, Any, Self

from onboarding.settings import Settings

if TYPE_CHECKING:
    from onboarding.adapters.exchange import ExchangeAdmin
    from onboarding.adapters.graph import GraphDirectory
    from onboarding.adapters.keyvault import CredentialVault


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
        self._credential: Any = None
        self._graph: GraphDirectory | None = None
        self._exchange: ExchangeAdmin | None = None
        self._vault: CredentialVault | None = None

    @property
    def credential(self) -> Any:
        """The function app's managed identity."""
        if self._credential is None:
            from onboarding.adapters.identity import function_credential

            self._credential = function_credential(self.settings)
        return self._credential

    @property
    def graph(self) -> GraphDirectory:
        if self._graph is None:
            from onboarding.adapters.graph import GraphDirectory

            self._graph = GraphDirectory(self.settings, self.credential)
        return self._graph

    @property
    def exchange(self) -> ExchangeAdmin:
        if self._exchange is None:
            from onboarding.adapters.exchange import ExchangeAdmin

            self._exchange = ExchangeAdmin(self.settings, self.credential, tenant_id=self.settings.tenant_id)
        return self._exchange

    @property
    def vault(self) -> CredentialVault:
        if self._vault is None:
            from onboarding.adapters.keyvault import CredentialVault

            self._vault = CredentialVault(self.settings, self.credential)
        return self._vault

    async def aclose(self) -> None:
        try:
            for adapter in (self._graph, self._exchange, self._vault):
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
