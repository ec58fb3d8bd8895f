"""The activity that writes an onboarding's record when it finishes (``onboarding.records``).

Idempotent: the record of this very completion is written once however often the activity runs.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

import azure.durable_functions as df

from activities import typed_activity
from onboarding import contracts as C
from onboarding.lazy import lazy
from onboarding.services import Services

if TYPE_CHECKING:
    from onboarding import records
else:  # written by the activity only: loaded with its first run (onboarding/lazy.py)
    records = lazy("onboarding.records")

blueprint = df.Blueprint()


async def _record(services: Services, p: C.RecordOnboarding) -> C.Recorded:
    recorded = await records.record_finished(
        services.vault,
        onboarding_id=p.onboarding_id,
        request=p.request,
        mailbox_count=p.mailbox_count,
        app=p.app.to_json(),
        outcome=p.outcome,
        at=datetime.fromisoformat(p.at),
    )
    return C.Recorded(recorded)


typed_activity(C.RECORD_ONBOARDING, _record, on=blueprint)
