"""Webhook subscriptions and redelivery of an onboarding's events (function key required).

``POST .../subscriptions`` takes ``{"callbackUrl"}`` and answers the subscription id: the subscribe
call of a Logic Apps HTTP Webhook action, whose body carries ``listCallbackUrl()``. Logic Apps calls
the unsubscribe request when the action finishes, the run is cancelled while waiting, or before the
run times out (learn.microsoft.com/azure/connectors/connectors-native-webhook); it can repeat the
same ``listCallbackUrl()`` there, hence ``POST .../subscriptions/unsubscribe`` with that URL, as well
as ``DELETE .../subscriptions/{subscriptionId}``.
"""

from __future__ import annotations

import azure.durable_functions as df
import azure.functions as func

from endpoints.registry import blueprint

# The triggers only: what they run (endpoints/callback_requests.py) is imported inside each on its first call,
# so the worker's start does not compile it (onboarding/lazy.py).


@blueprint.route(route="onboardings/{id}/subscriptions", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
@blueprint.durable_client_input(client_name="client")
async def subscribe_callbacks(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    from endpoints import callback_requests

    return await callback_requests.subscribe_callbacks(req, client)


@blueprint.route(
    route="onboardings/{id}/subscriptions/unsubscribe", methods=["POST"], auth_level=func.AuthLevel.FUNCTION
)
@blueprint.durable_client_input(client_name="client")
async def unsubscribe_callback_url(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    from endpoints import callback_requests

    return await callback_requests.unsubscribe_callback_url(req, client)


@blueprint.route(
    route="onboardings/{id}/subscriptions/{subscriptionId}",
    methods=["DELETE"],
    auth_level=func.AuthLevel.FUNCTION,
)
@blueprint.durable_client_input(client_name="client")
async def unsubscribe_callbacks(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    from endpoints import callback_requests

    return await callback_requests.unsubscribe_callbacks(req, client)


@blueprint.route(
    route="onboardings/{id}/callbacks/redeliver", methods=["POST"], auth_level=func.AuthLevel.FUNCTION
)
@blueprint.durable_client_input(client_name="client")
async def redeliver_callbacks(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    from endpoints import callback_requests

    return await callback_requests.redeliver_callbacks(req, client)


@blueprint.route(route="onboardings/{id}/callbacks", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@blueprint.durable_client_input(client_name="client")
async def callback_deliveries(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    from endpoints import callback_requests

    return await callback_requests.callback_deliveries(req, client)
