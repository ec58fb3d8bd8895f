"""The offboarding orchestration (instance ``<onboarding id>:offboarding``): undo an onboarding. Its
procedure (``Offboarding``) is in ``orchestrations/offboarding_procedure.py``, compiled on the
orchestrator's first run rather than at the worker's start (``onboarding/lazy.py``)."""

from __future__ import annotations

import azure.durable_functions as df

from onboarding.offboarding import OFFBOARDING_ORCHESTRATOR
from orchestrations.onboarding import Steps

blueprint = df.Blueprint()


@blueprint.orchestration_trigger(context_name="context", orchestration=OFFBOARDING_ORCHESTRATOR)
def offboarding_orchestrator(context: df.DurableOrchestrationContext) -> Steps:
    from orchestrations.offboarding_procedure import Offboarding

    return (yield from Offboarding(context).run())
