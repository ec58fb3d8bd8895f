"""The requester's API: start an onboarding, read its status, list and cancel.

Every trigger is ``api_access``: a function key or an Entra token with the app role (docs/security.md).

Two versions share the handlers (see docs/api.md, "Versions"):

- ``/api/v1/onboardings``: the asynchronous request-reply contract Logic Apps follows. GET on an
  onboarding answers 202 with ``Retry-After`` and the same ``Location`` while it is not final, and 200
  with the final view once it is, whatever the outcome (``?view=current`` always answers 200).
- ``/api/onboardings``: the first, unversioned paths, kept for existing callers: GET always answers 200
  with the current view.

Every URL returned is absolute, built from ``PUBLIC_BASE_URL``.
"""

from __future__ import annotations

import azure.durable_functions as df
import azure.functions as func

from endpoints.http import EngineUnavailable, api_access, engine_unavailable
from endpoints.registry import blueprint
from onboarding.access_tokens import Role

# The triggers only: what they run (endpoints/onboarding_requests.py) is imported inside each on its first
# call, so the worker's start does not compile it (onboarding/lazy.py).


@blueprint.route(route="v1/onboardings", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
@blueprint.durable_client_input(client_name="client")
@api_access(Role.READ_WRITE)
async def start_onboarding_v1(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    from endpoints.onboarding_requests import V1, _guarded, _start

    return await _guarded(_start, req, client, V1)


@blueprint.route(route="v1/onboardings/trigger", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
@blueprint.durable_client_input(client_name="client")
@api_access(Role.READ_WRITE)
async def start_onboarding_trigger_v1(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    """The connector's webhook trigger: an onboarding whose ``callbackUrl`` is the flow's own URL."""
    from endpoints.onboarding_requests import V1, _start

    try:
        return await _start(req, client, V1, callback_required=True)
    except EngineUnavailable:
        return engine_unavailable()


@blueprint.route(route="v1/onboardings", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@blueprint.durable_client_input(client_name="client")
@api_access(Role.READ)
async def list_onboardings_v1(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    from endpoints.onboarding_requests import _guarded, _list

    return await _guarded(_list, req, client)


@blueprint.route(route="v1/onboardings/{id}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@blueprint.durable_client_input(client_name="client")
@api_access(Role.READ)
async def get_onboarding_v1(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    from endpoints.onboarding_requests import V1, _guarded, _status

    return await _guarded(_status, req, client, V1)


@blueprint.route(route="v1/onboardings/{id}/cancel", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
@blueprint.durable_client_input(client_name="client")
@api_access(Role.READ_WRITE)
async def cancel_onboarding_v1(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    from endpoints.onboarding_requests import V1, _cancel, _guarded

    return await _guarded(_cancel, req, client, V1)


@blueprint.route(route="v1/onboardings/{id}", methods=["DELETE"], auth_level=func.AuthLevel.ANONYMOUS)
@blueprint.durable_client_input(client_name="client")
@api_access(Role.READ_WRITE)
async def offboard_onboarding_v1(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    from endpoints.onboarding_requests import V1, _guarded, _offboard

    return await _guarded(_offboard, req, client, V1)


@blueprint.route(route="onboardings/{id}", methods=["DELETE"], auth_level=func.AuthLevel.ANONYMOUS)
@blueprint.durable_client_input(client_name="client")
@api_access(Role.READ_WRITE)
async def offboard_onboarding(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    from endpoints.onboarding_requests import UNVERSIONED, _guarded, _offboard

    return await _guarded(_offboard, req, client, UNVERSIONED)


@blueprint.route(route="onboardings", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
@blueprint.durable_client_input(client_name="client")
@api_access(Role.READ_WRITE)
async def start_onboarding(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    from endpoints.onboarding_requests import UNVERSIONED, _guarded, _start

    return await _guarded(_start, req, client, UNVERSIONED)


@blueprint.route(route="onboardings/{id}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@blueprint.durable_client_input(client_name="client")
@api_access(Role.READ)
async def get_onboarding(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    from endpoints.onboarding_requests import UNVERSIONED, _guarded, _status

    return await _guarded(_status, req, client, UNVERSIONED)


@blueprint.route(route="onboardings/{id}/cancel", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
@blueprint.durable_client_input(client_name="client")
@api_access(Role.READ_WRITE)
async def cancel_onboarding(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    from endpoints.onboarding_requests import UNVERSIONED, _cancel, _guarded

    return await _guarded(_cancel, req, client, UNVERSIONED)


@blueprint.route(route="v1/onboardings/{id}/rotate", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
@blueprint.durable_client_input(client_name="client")
@api_access(Role.READ_WRITE)
async def rotate_onboarding_v1(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    from endpoints.onboarding_requests import V1, _guarded, _rotate

    return await _guarded(_rotate, req, client, V1)


@blueprint.route(route="v1/onboardings/{id}/retry", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
@blueprint.durable_client_input(client_name="client")
@api_access(Role.READ_WRITE)
async def retry_onboarding_mailboxes_v1(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    from endpoints.onboarding_requests import V1, _guarded, _retry

    return await _guarded(_retry, req, client, V1)


@blueprint.route(route="v1/onboardings/{id}/mailboxes", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
@blueprint.durable_client_input(client_name="client")
@api_access(Role.READ_WRITE)
async def change_onboarding_mailboxes_v1(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    from endpoints.onboarding_requests import V1, _change_mailboxes, _guarded

    return await _guarded(_change_mailboxes, req, client, V1)
