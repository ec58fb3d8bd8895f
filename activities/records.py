"""The activity that writes an onboarding's record when it finishes (``onboarding.records``).

Idempotent: the record of this very completion is written once however often the activity runs.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import azure.durable_functions as df

from activities import _run
from onboarding import activity_names as A
from onboarding import records
from onboarding.domain import OnboardingRequest
from onboarding.services import Services

blueprint = df.Blueprint()


@blueprint.activity_trigger(input_name="payload", activity=A.RECORD_ONBOARDING)
async def record_onboarding(payload: dict[str, Any]) -> dict[str, Any]:
    async def work(services: Services) -> dict[str, bool]:
        recorded = await records.record_finished(
            services.vault,
            onboarding_id=payload["onboarding_id"],
            request=OnboardingRequest.from_json(payload["request"]),
            mailbox_count=int(payload["mailbox_count"]),
            app=payload["app"],
            outcome=payload["outcome"],
            at=datetime.fromisoformat(payload["at"]),
        )
        return {"recorded": recorded}

    return await _run(A.RECORD_ONBOARDING, work, payload)
