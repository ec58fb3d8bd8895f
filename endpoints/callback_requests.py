"""What the callback subscription triggers (``endpoints/callbacks.py``) do, and the delivery view the
onboarding's status shows. A module of its own so that the worker's start does not compile it: each
trigger imports it on its first call (the same reason as ``onboarding/lazy.py``).
"""

from __future__ import annotations

import re
from http import HTTPStatus
from typing import Any

import azure.durable_functions as df
import azure.functions as func

from endpoints.http import (
    ONBOARDING_ID,
    EngineUnavailable,
    engine_unavailable,
    fetch_status,
    header,
    json_response,
    log,
    not_found,
    problem,
)
from onboarding import logcontext, status_view, webhook_hub
from onboarding.settings import load_settings
from onboarding.validation import (
    FieldError,
    RequestRejected,
    callback_url_problem,
    check_body_size,
    check_content_type,
    decode_json,
)
from onboarding.webhooks import MAX_SUBSCRIPTIONS, DeliveryStatus, subscription_id

SUBSCRIPTION_ID = re.compile(r"sub-[0-9a-f]{32}")


def _invalid(errors: list[FieldError]) -> func.HttpResponse:
    detail = "; ".join(f"{e.field}: {e.message}" for e in errors)
    return problem(HTTPStatus.BAD_REQUEST, "invalid-request", "Invalid request", detail, errors)


def _body(req: func.HttpRequest, *, optional: bool) -> dict[str, Any] | func.HttpResponse:
    """The JSON object of the request (``{}`` for an empty optional body), or the problem response."""
    raw = req.get_body() or b""
    if optional and not raw.strip():
        return {}
    try:
        check_body_size(raw, header(req, "Content-Length"))
        check_content_type(header(req, "Content-Type"))
        data = decode_json(raw)
    except RequestRejected as rejected:
        return problem(rejected.status, "invalid-request", rejected.title, rejected.title, rejected.errors)
    if not isinstance(data, dict):
        return _invalid([FieldError("body", "must be a JSON object")])
    return data


def _sequence(data: dict[str, Any], errors: list[FieldError]) -> int | None:
    start = data.get("fromSequence")
    if start is not None and (
        isinstance(start, bool) or not isinstance(start, int) or not 1 <= start <= 1_000_000
    ):
        errors.append(FieldError("/fromSequence", "must be an integer from 1 to 1000000"))
        return None
    return start


def _callback_url(data: dict[str, Any], also: tuple[str, ...] = ()) -> str | func.HttpResponse:
    errors = [FieldError(f"/{k}", "unknown field") for k in data if k not in ("callbackUrl", *also)]
    _sequence(data, errors)
    url = data.get("callbackUrl")
    if not isinstance(url, str):
        errors.append(FieldError("/callbackUrl", "is required and must be a string"))
    else:
        why = callback_url_problem(url, allow_private=load_settings().callback_allow_private_networks)
        if why:
            errors.append(FieldError("/callbackUrl", why))
    return _invalid(errors) if errors else str(url)


async def _onboarding(req: func.HttpRequest, client: Any) -> str | func.HttpResponse:
    onboarding_id = req.route_params.get("id", "")
    logcontext.bind_request(onboarding_id, "callbacks")
    if not ONBOARDING_ID.fullmatch(onboarding_id) or not await fetch_status(client, onboarding_id):
        return not_found(onboarding_id)
    return onboarding_id


async def _control(client: Any, onboarding_id: str, control: dict[str, Any]) -> func.HttpResponse | None:
    try:
        await webhook_hub.send_control(client, onboarding_id, control)
    except Exception as exc:  # the SDK's messages can carry the Durable API's URLs: type only
        log.error("webhook control for %s failed (%s)", onboarding_id, type(exc).__name__)
        raise EngineUnavailable from None
    return None


def _links(onboarding_id: str, sub_id: str) -> dict[str, str]:
    base = status_view.status_url(onboarding_id)
    return {"self": f"{base}/subscriptions/{sub_id}", "deliveries": f"{base}/callbacks"}


async def delivery_view(client: Any, onboarding_id: str) -> dict[str, Any]:
    """``callbackDelivery`` of the status view: delivered, pending, given_up or none, per subscription."""
    try:
        summary = await webhook_hub.read_delivery(client, onboarding_id)
    except Exception as exc:
        log.error("webhook delivery of %s could not be read (%s)", onboarding_id, type(exc).__name__)
        raise EngineUnavailable from None
    if summary is None:
        return {"state": DeliveryStatus.NONE.value, "events": 0, "subscriptions": []}
    return {k: summary[k] for k in ("state", "events", "subscriptions")}


async def _subscribe(req: func.HttpRequest, client: Any) -> func.HttpResponse:
    found = await _onboarding(req, client)
    if isinstance(found, func.HttpResponse):
        return found
    data = _body(req, optional=False)
    if isinstance(data, func.HttpResponse):
        return data
    url = _callback_url(data, also=("fromSequence",))
    if isinstance(url, func.HttpResponse):
        return url
    sub_id = subscription_id(found, url)
    live = [
        s["id"] for s in (await delivery_view(client, found))["subscriptions"] if s["state"] != "unsubscribed"
    ]
    if len(live) >= MAX_SUBSCRIPTIONS and sub_id not in live:
        return problem(
            HTTPStatus.CONFLICT,
            "too-many-subscriptions",
            "Too many subscriptions",
            f"An onboarding has at most {MAX_SUBSCRIPTIONS} live subscriptions. Unsubscribe one first.",
        )
    control = {"op": "subscribe", "subscriptionId": sub_id, "url": url}
    if data.get("fromSequence") is not None:
        control["fromSequence"] = data["fromSequence"]
    await _control(client, found, control)
    links = _links(found, sub_id)
    return json_response(
        {"id": sub_id, "onboardingId": found, "links": links},
        HTTPStatus.CREATED,
        headers={"Location": links["self"]},
    )


async def _unsubscribe(client: Any, onboarding_id: str, sub_id: str) -> func.HttpResponse:
    view = await delivery_view(client, onboarding_id)
    if not any(s["id"] == sub_id for s in view["subscriptions"]):
        return problem(
            HTTPStatus.NOT_FOUND,
            "subscription-not-found",
            "Subscription not found",
            "This onboarding has no subscription with this id or callback URL.",
        )
    await _control(client, onboarding_id, {"op": "unsubscribe", "subscriptionId": sub_id})
    return func.HttpResponse(status_code=int(HTTPStatus.NO_CONTENT), headers={"Cache-Control": "no-store"})


async def _delete(req: func.HttpRequest, client: Any) -> func.HttpResponse:
    found = await _onboarding(req, client)
    if isinstance(found, func.HttpResponse):
        return found
    sub_id = req.route_params.get("subscriptionId", "")
    if not SUBSCRIPTION_ID.fullmatch(sub_id):
        return _invalid([FieldError("subscriptionId", "is not a subscription id (sub- and 32 hex digits)")])
    return await _unsubscribe(client, found, sub_id)


async def _unsubscribe_by_url(req: func.HttpRequest, client: Any) -> func.HttpResponse:
    found = await _onboarding(req, client)
    if isinstance(found, func.HttpResponse):
        return found
    data = _body(req, optional=False)
    if isinstance(data, func.HttpResponse):
        return data
    url = _callback_url(data)
    if isinstance(url, func.HttpResponse):
        return url
    return await _unsubscribe(client, found, subscription_id(found, url))


async def _redeliver(req: func.HttpRequest, client: Any) -> func.HttpResponse:
    found = await _onboarding(req, client)
    if isinstance(found, func.HttpResponse):
        return found
    data = _body(req, optional=True)
    if isinstance(data, func.HttpResponse):
        return data
    errors = [
        FieldError(f"/{k}", "unknown field") for k in data if k not in ("fromSequence", "subscriptionId")
    ]
    start = _sequence(data, errors) or 1
    only = data.get("subscriptionId")
    if only is not None and (not isinstance(only, str) or not SUBSCRIPTION_ID.fullmatch(only)):
        errors.append(FieldError("/subscriptionId", "is not a subscription id (sub- and 32 hex digits)"))
    if errors:
        return _invalid(errors)
    view = await delivery_view(client, found)
    live = [s for s in view["subscriptions"] if s["state"] != "unsubscribed" and only in (None, s["id"])]
    if not live:
        return problem(
            HTTPStatus.CONFLICT,
            "no-subscription",
            "Nothing to redeliver to",
            "The onboarding has no active subscription" + (" with this id." if only else "."),
        )
    control: dict[str, Any] = {"op": "redeliver", "fromSequence": start}
    if only:
        control["subscriptionId"] = only
    await _control(client, found, control)
    url = f"{status_view.status_url(found)}/callbacks"
    return json_response(
        {"onboardingId": found, "fromSequence": start, "subscriptions": [s["id"] for s in live]},
        HTTPStatus.ACCEPTED,
        headers={"Location": url},
    )


async def _deliveries(req: func.HttpRequest, client: Any) -> func.HttpResponse:
    found = await _onboarding(req, client)
    if isinstance(found, func.HttpResponse):
        return found
    return json_response({"onboardingId": found, **await delivery_view(client, found)})


async def _guarded(work: Any, req: func.HttpRequest, client: Any) -> func.HttpResponse:
    try:
        return await work(req, client)
    except EngineUnavailable:
        return engine_unavailable()


async def subscribe_callbacks(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    return await _guarded(_subscribe, req, client)


async def unsubscribe_callback_url(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    return await _guarded(_unsubscribe_by_url, req, client)


async def unsubscribe_callbacks(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    return await _guarded(_delete, req, client)


async def redeliver_callbacks(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    return await _guarded(_redeliver, req, client)


async def callback_deliveries(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    return await _guarded(_deliveries, req, client)
