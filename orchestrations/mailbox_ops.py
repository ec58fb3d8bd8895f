"""The mailbox operation orchestration (instance ``<onboarding id>:mailboxes``): retry the mailboxes
of a finished onboarding that need attention (``onboarding/mailbox_ops.py``).

Deterministic: time from the context, every effect from an activity, the secret only in Key Vault.

Its procedure (``MailboxOperation``) is in ``orchestrations/mailbox_ops_procedure.py``, compiled on the orchestrator's
first run rather than at the worker's start (``onboarding/lazy.py``).
"""

from __future__ import annotations

import azure.durable_functions as df

from onboarding.mailbox_ops import MAILBOX_OPERATION_ORCHESTRATOR
from orchestrations.onboarding import Steps

blueprint = df.Blueprint()


@blueprint.orchestration_trigger(context_name="context", orchestration=MAILBOX_OPERATION_ORCHESTRATOR)
def mailbox_operation_orchestrator(context: df.DurableOrchestrationContext) -> Steps:
    from orchestrations.mailbox_ops_procedure import MailboxOperation

    return (yield from MailboxOperation(context).run())
