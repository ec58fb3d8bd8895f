"""The diagnosis API: check an app's chain link by link (``onboarding.diagnosis``).

- ``GET /api/v1/onboardings/{id}/diagnosis``: diagnose a succeeded or partial onboarding;
- ``POST /api/v1/diagnoses`` ``{"appId", "mailbox", "tenantId"[, "protocols"]}``: any app of this
  tenant whose credential this deployment keeps in Key Vault, for one mailbox;
- ``GET /api/v1/diagnoses/{diagnosisId}``: the report.

A diagnosis takes seconds (a token, cmdlets, IMAP and POP logins), so the first two start one
(``diagnosis_orchestrator``) and answer 202 with ``Location`` and ``Retry-After``, the project's
contract for long work (docs/api.md); the third answers 202 while it runs and 200 with
``{links: [{name, state, detail, fix}], firstBroken}`` once done. Reading is enough to ask
(``Onboardings.Read``): the diagnosis changes nothing in the tenant, and the report names ids and
fixes, never a secret or a token.
"""

from __future__ import annotations

import azure.durable_functions as df
import azure.functions as func

from endpoints.http import api_access
from endpoints.registry import blueprint
from onboarding.access_tokens import Role

# The triggers only: what they run (endpoints/diagnosis_requests.py) is imported inside each on its first call,
# so the worker's start does not compile it (onboarding/lazy.py).


@blueprint.route(route="v1/onboardings/{id}/diagnosis", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@blueprint.durable_client_input(client_name="client")
@api_access(Role.READ)
async def diagnose_onboarding_v1(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    from endpoints import diagnosis_requests

    return await diagnosis_requests.diagnose_onboarding_v1(req, client)


@blueprint.route(route="v1/diagnoses", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
@blueprint.durable_client_input(client_name="client")
@api_access(Role.READ)
async def diagnose_app_v1(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    from endpoints import diagnosis_requests

    return await diagnosis_requests.diagnose_app_v1(req, client)


@blueprint.route(route="v1/diagnoses/{diagnosisId}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@blueprint.durable_client_input(client_name="client")
@api_access(Role.READ)
async def get_diagnosis_v1(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    from endpoints import diagnosis_requests

    return await diagnosis_requests.get_diagnosis_v1(req, client)
