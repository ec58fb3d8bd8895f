"""The offboarding's activities (``onboarding/offboarding.py``), under the shared error policy.

All run at least once, and each is idempotent: what is already removed counts as removed. The one
that reads the onboarding uses the Durable client (an orchestrator cannot read another instance, nor
raise an event to one); the others are thin over ``onboarding.offboarding``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import azure.durable_functions as df

from activities import ActivityFailed, register, typed_activity
from onboarding import activity_names as A
from onboarding import contracts as C
from onboarding import logcontext, mailbox_ops, offboarding, rotation
from onboarding.domain import EVENT_CANCEL, AppRegistration, OnboardingRequest
from onboarding.durable_status import RUNNING_STATES, json_object, runtime_name
from onboarding.lazy import lazy
from onboarding.services import Services
from onboarding.webhooks import Channel

if TYPE_CHECKING:
    from onboarding import webhook_hub
else:  # loaded by the first activity that needs it (onboarding/lazy.py)
    webhook_hub = lazy("onboarding.webhook_hub")

blueprint = df.Blueprint()
log = logging.getLogger("onboarding.activities")


# --- the onboarding, through the Durable client ------------------------------------------------------


register(offboarding.READ_ONBOARDING)


@blueprint.activity_trigger(input_name="payload", activity=A.OFFBOARD_READ_ONBOARDING)
@blueprint.durable_client_input(client_name="client")
async def offboard_read_onboarding(
    payload: dict[str, Any], client: df.DurableOrchestrationClient
) -> dict[str, Any]:
    """The onboarding's state; with ``cancel``, first ask a running onboarding to cancel (it undoes
    what it made and ends at its next wait: the cancellation the requester's API sends)."""
    p = offboarding.ReadOnboarding.from_json(payload)
    with logcontext.bound(p.onboarding_id, A.OFFBOARD_READ_ONBOARDING):
        try:
            snapshot = await _read(client, p.onboarding_id, cancel=p.cancel, earlier=p.events_reported)
            return {"ok": snapshot.to_json()}
        except Exception as exc:  # the SDK's messages can carry the Durable API's URLs: type only
            log.warning(
                "activity %s: Durable client failed (%s)", A.OFFBOARD_READ_ONBOARDING, type(exc).__name__
            )
            raise ActivityFailed(
                "The onboarding's state could not be read from the workflow engine."
            ) from None


async def _read(
    client: df.DurableOrchestrationClient, onboarding_id: str, *, cancel: bool, earlier: int = 0
) -> offboarding.OnboardingSnapshot:
    status = await client.get_status(onboarding_id, show_input=True)
    runtime = runtime_name(status)
    if runtime is None:
        return offboarding.OnboardingSnapshot(final=True)
    raw_input = json_object(status.input_)
    request = raw_input.get("request")
    if runtime in RUNNING_STATES:
        if cancel:
            try:
                await client.raise_event(onboarding_id, EVENT_CANCEL, {})
            except Exception:  # it finished meanwhile: the next read says so
                log.info("onboarding %s finished before the cancellation arrived", onboarding_id)
        return offboarding.OnboardingSnapshot(final=False, request=request)
    waiting_for = await _stop_day_2(client, onboarding_id)
    if waiting_for:
        return offboarding.OnboardingSnapshot(final=False, request=request, waiting_for=waiting_for)
    output = json_object(status.output)
    # An earlier run's report comes with the input (the instance's status is this run's now).
    stream = await webhook_hub.writer_position(
        client, onboarding_id, Channel.OFFBOARDING, None, earlier=earlier
    )
    return offboarding.OnboardingSnapshot(
        final=True,
        request=request,
        app=output.get("app"),
        events_sent=stream.sent,
        webhook_channel=stream.channel_name,
        mailboxes=await _mailboxes_with_access(client, onboarding_id, request),
    )


async def _stop_day_2(client: df.DurableOrchestrationClient, onboarding_id: str) -> str:
    """The day-2 operation the offboarding waits for, "" when none runs.

    A mailbox operation is waited for: a grant must not land after the removals. A rotation waiting
    out its overlap window (a day by default) is terminated: none of its activities is in flight
    then, and the app goes with both credentials. In another step it is waited for, as an activity
    adding a credential or a vault version must not land after the deletions. Either way no event of
    it follows the offboarding's, which are numbered after its last."""
    operation = await client.get_status(mailbox_ops.mailbox_operation_instance_id(onboarding_id))
    if runtime_name(operation) in RUNNING_STATES:
        return "the mailbox operation"
    instance_id = rotation.rotation_instance_id(onboarding_id)
    rotating = await client.get_status(instance_id)
    if runtime_name(rotating) not in RUNNING_STATES:
        return ""
    if rotation.waits_out_overlap(json_object(rotating.custom_status)):
        try:
            await client.terminate(instance_id, rotation.STOPPED_BY_OFFBOARDING)
        except Exception:  # it ended meanwhile (or a first try already stopped it): the next read says
            log.info("rotation of %s ended before the termination arrived", onboarding_id)
    return "the rotation"


async def _mailboxes_with_access(
    client: df.DurableOrchestrationClient, onboarding_id: str, request: Any
) -> tuple[str, ...]:
    """The request's mailboxes as the last mailbox operation left them (it carries every earlier
    one's results): mailboxes added after the onboarding lose their FullAccess too."""
    requested = list((request or {}).get("mailboxes") or []) if isinstance(request, dict) else []
    operated = await client.get_status(mailbox_ops.mailbox_operation_instance_id(onboarding_id))
    runtime = runtime_name(operated)
    output = json_object(operated.output) if operated and runtime == "Completed" else {}
    result = mailbox_ops.MailboxOperationResult.from_json(output) if output else None
    return mailbox_ops.holding_access(requested, result)


# --- the removals ---------------------------------------------------------------------------------


def _known_app(p: offboarding.FindApp) -> AppRegistration | None:
    return AppRegistration.from_json(p.known_app) if p.known_app else None


async def _remove_exchange_sp(s: Services, p: offboarding.RemoveExchangeServicePrincipal) -> dict[str, bool]:
    await offboarding.remove_exchange_service_principal(s, app_id=p.app_id)
    return {"removed": True}


async def _remove_secret_reader(s: Services, p: C.SecretReaderRef) -> dict[str, bool]:
    # "The assignment is gone", whichever run removed it: a run again answers as the first did.
    await offboarding.remove_secret_reader(s, onboarding_id=p.onboarding_id, principal_id=p.principal_id)
    return {"removed": True}


async def _delete_secret(s: Services, p: C.OnboardingRef) -> offboarding.DeletedSecret:
    return offboarding.DeletedSecret(await offboarding.delete_secret(s, onboarding_id=p.onboarding_id))


async def _notify(s: Services, p: offboarding.NotifyOffboarded) -> None:
    await offboarding.notify_admins(
        s,
        request=OnboardingRequest.from_json(p.request),
        result=p.result,
        mailbox_count=p.mailbox_count,
    )


typed_activity(
    offboarding.FIND_APP,
    lambda s, p: offboarding.find_app(s, onboarding_id=p.onboarding_id, known=_known_app(p)),
    on=blueprint,
)
typed_activity(
    offboarding.REMOVE_MAILBOX_ACCESS,
    lambda s, p: offboarding.remove_mailbox_access(
        s, service_principal_id=p.service_principal_id, mailboxes=list(p.mailboxes)
    ),
    on=blueprint,
)
typed_activity(offboarding.REMOVE_EXCHANGE_SP, _remove_exchange_sp, on=blueprint)
typed_activity(
    offboarding.DELETE_APP,
    lambda s, p: offboarding.delete_app(
        s, object_id=p.object_id, service_principal_id=p.service_principal_id, purge=p.purge
    ),
    on=blueprint,
)
typed_activity(offboarding.REMOVE_SECRET_READER, _remove_secret_reader, on=blueprint)
typed_activity(offboarding.DELETE_SECRET, _delete_secret, on=blueprint)
typed_activity(offboarding.NOTIFY, _notify, on=blueprint)
