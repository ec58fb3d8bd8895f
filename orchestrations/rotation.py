"""The rotation orchestration (instance ``<onboarding id>:rotation``): replace the client secret
without a gap for the mail client (``onboarding/rotation.py``).

Deterministic: time from the context, every effect from an activity, the secret only in Key Vault.

Its procedure (``Rotation``) is in ``orchestrations/rotation_procedure.py``, compiled on the orchestrator's
first run rather than at the worker's start (``onboarding/lazy.py``).
"""

from __future__ import annotations

import azure.durable_functions as df

from onboarding.rotation import ROTATION_ORCHESTRATOR
from orchestrations.onboarding import Steps

blueprint = df.Blueprint()


@blueprint.orchestration_trigger(context_name="context", orchestration=ROTATION_ORCHESTRATOR)
def rotation_orchestrator(context: df.DurableOrchestrationContext) -> Steps:
    from orchestrations.rotation_procedure import Rotation

    return (yield from Rotation(context).run())
