"""The status view of an onboarding: Durable Functions' status JSON turned into what people and
machines need to know. Pure: the HTTP trigger fetches the status and serialises the result.

The view never carries Durable management URLs (their system key would let a requester approve its
own request), a secret, or Durable's own failure text (an unexpected exception might echo anything):
only what the orchestrator deliberately published (``Progress``) and returned (``OnboardingResult``).
"""

from __future__ import annotations

import json
from typing import Any

from onboarding.domain import (
    STEPS,
    MailboxState,
    OnboardingRequest,
    OnboardingResult,
    Outcome,
    Progress,
    StepState,
)
from onboarding.durable_status import RUNNING_STATES, is_running
from onboarding.expiry import CREDENTIALS_CONTENT_TYPE
from onboarding.handoff import CERTIFICATE_SCHEMA_VERSION, CREDENTIALS_SCHEMA_VERSION

# Statuses a caller sees; "running" and "waiting" are not final.
STATUSES = ("running", "waiting", "succeeded", "partial", "rejected", "expired", "cancelled", "failed")
FINAL_STATUSES = frozenset(STATUSES) - {"running", "waiting"}

_FIXES: dict[str, str] = {
    "expired": "Submit the request again and ask a tenant admin to answer before the deadline.",
    "rejected": "Talk to the tenant admin who declined; submit a new request if they agree.",
    "cancelled": "Submit a new request if the onboarding is still needed.",
}


def status_url(onboarding_id: str) -> str:
    return f"/api/onboardings/{onboarding_id}"


def build_view(status: dict[str, Any]) -> dict[str, Any]:
    """Map a Durable status document (``runtimeStatus``, ``customStatus``, ``output``, ``input``,
    ``createdTime``, ``lastUpdatedTime``, ``instanceId``) to the onboarding status view."""
    onboarding_id = str(status.get("instanceId", ""))
    runtime = status.get("runtimeStatus")
    progress = _progress(status.get("customStatus"))
    result = _result(status.get("output")) if runtime == "Completed" else None
    request = _request(status.get("input"))

    view: dict[str, Any] = {
        "id": onboarding_id,
        "status": "running",
        "createdAt": _text_or_none(status.get("createdTime")),
        "updatedAt": _text_or_none(status.get("lastUpdatedTime")),
        "request": _request_summary(request),
        "externalReference": request.external_reference if request else None,
        "steps": _steps(progress),
        "waitingFor": None,
        "mailboxes": _mailboxes(progress, result, request),
        "errors": [],
        "app": None,
        "secret": None,
        "compensation": [],
        "links": {"self": status_url(onboarding_id), "cancel": f"{status_url(onboarding_id)}/cancel"},
    }

    if runtime in RUNNING_STATES:
        if progress and progress.waiting:
            view["status"] = "waiting"
            view["waitingFor"] = {
                "kind": progress.waiting.kind,
                "deadline": progress.waiting.deadline,
                "remindersSent": progress.waiting.reminders_sent,
            }
        if progress and progress.app_id:
            view["app"] = {"appId": progress.app_id, "servicePrincipalId": None}
    elif result is not None:
        view["status"] = result.outcome.value
        if result.error:
            fix = result.error.fix or _FIXES.get(result.outcome.value, "")
            view["errors"].append(
                {
                    "step": result.error.step,
                    "code": result.error.code,
                    "message": result.error.message,
                    "fix": fix,
                }
            )
        if result.app:
            view["app"] = {"appId": result.app.app_id, "servicePrincipalId": result.app.service_principal_id}
        if result.secret:
            base = f"{result.secret.vault_uri.rstrip('/')}/secrets/{result.secret.name}"
            view["secret"] = {
                "vaultUri": result.secret.vault_uri,
                "name": result.secret.name,
                "version": result.secret.version,
                "expiresOn": result.secret.expires_on,
                "secretUri": f"{base}/{result.secret.version}",
                # Versionless, so a reader follows a rotated secret. No App Service Key Vault
                # reference: it would resolve to the whole JSON document, not the client secret.
                "latestSecretUri": base,
                "contentType": CREDENTIALS_CONTENT_TYPE,
                "schemaVersion": CERTIFICATE_SCHEMA_VERSION
                if result.secret.credential_type == "certificate"
                else CREDENTIALS_SCHEMA_VERSION,
                "credentialType": result.secret.credential_type,
                # Who may read it besides this service: the request's mail product principal, with
                # Key Vault Secrets User on this secret only (docs/handoff.md, "Access").
                "readers": _readers(request),
            }
        view["compensation"] = list(result.compensation)
    else:
        view["status"] = "failed"
        view["errors"].append(_unexpected_failure(runtime))
    return view


def _unexpected_failure(runtime: Any) -> dict[str, str]:
    if runtime == "Terminated":
        return {
            "step": "",
            "code": "terminated",
            "message": "An operator terminated the workflow; nothing was cleaned up.",
            "fix": "Remove the app registration and Key Vault secret named after this onboarding id, "
            "then submit the request again.",
        }
    return {
        "step": "",
        "code": "workflow_failed",
        "message": "The workflow stopped unexpectedly.",
        "fix": "Look up this onboarding id in the function app's logs, then submit the request again.",
    }


def _progress(custom: Any) -> Progress | None:
    data = _as_object(custom)
    if data is None:
        return None
    try:
        return Progress.from_json(data)
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


def _result(output: Any) -> OnboardingResult | None:
    data = _as_object(output)
    if data is None:
        return None
    try:
        return OnboardingResult.from_json(data)
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


def _request(raw_input: Any) -> OnboardingRequest | None:
    data = _as_object(raw_input)
    if data is None or not isinstance(data.get("request"), dict):
        return None
    try:
        return OnboardingRequest.from_json(data["request"])
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


def _as_object(value: Any) -> dict[str, Any] | None:
    """Durable returns JSON values either decoded or as JSON text, depending on how they were set."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return None
    return value if isinstance(value, dict) else None


def _readers(request: OnboardingRequest | None) -> list[dict[str, str]]:
    if request is None or not request.mail_product_principal_id:
        return []
    return [
        {
            "principalId": request.mail_product_principal_id,
            "role": "Key Vault Secrets User",
            "scope": "secret",
        }
    ]


def _request_summary(request: OnboardingRequest | None) -> dict[str, Any] | None:
    if request is None:
        return None
    return {
        "displayName": request.display_name,
        "protocols": [p.value for p in request.protocols],
        "consentMode": request.consent_mode.value,
        "mailboxCount": len(request.mailboxes),
        "secretLifetimeDays": request.secret_lifetime_days,
    }


def _steps(progress: Progress | None) -> list[dict[str, Any]]:
    recorded = progress.steps if progress else {}
    steps = []
    for name, title in STEPS:
        entry = recorded.get(name, {})
        state = entry.get("state", StepState.PENDING.value)
        steps.append(
            {
                "name": name.value,
                "title": title,
                "state": state if state in {s.value for s in StepState} else StepState.PENDING.value,
                "at": entry.get("at") or None,
                "detail": entry.get("detail", ""),
            }
        )
    return steps


def _mailboxes(
    progress: Progress | None, result: OnboardingResult | None, request: OnboardingRequest | None
) -> dict[str, Any]:
    if result is not None and result.mailbox_counts and request is not None:
        results = result.mailbox_results(request)
        return {
            "total": len(results),
            "counts": dict(result.mailbox_counts),
            "results": [
                {
                    "mailbox": item.mailbox,
                    "state": item.state.value,
                    "protocols": dict(item.protocols),
                    "detail": item.detail,
                    "needsAction": item.state is not MailboxState.VERIFIED,
                }
                for item in results
            ],
        }
    counts = {k: int(v) for k, v in (progress.mailbox_counts if progress else {}).items()}
    total = len(request.mailboxes) if request else sum(counts.values())
    return {"total": total, "counts": counts, "results": None}


def outcome_is_final(view: dict[str, Any]) -> bool:
    return view.get("status") in FINAL_STATUSES


def stored_request(status: dict[str, Any]) -> OnboardingRequest | None:
    """The request an existing onboarding was started with (for idempotent resubmission)."""
    return _request(status.get("input"))


def waiting_progress(status: dict[str, Any]) -> Progress | None:
    return _progress(status.get("customStatus")) if is_running(status) else None


STALE_LINK = "This link was already used or has expired: the onboarding no longer waits for this decision."


def decision_refusal(status: dict[str, Any], *, nonce: str, kind: str) -> str | None:
    """Why a decision carrying ``nonce`` cannot be handed to this onboarding now, or None.

    The orchestration waits for one decision at a time, identified by the nonce it published in its
    custom status; a link for an earlier wait, a finished onboarding or another kind of wait is stale.
    """
    if not status:
        return "This link belongs to an onboarding that does not exist (any more)."
    progress = waiting_progress(status)
    if progress is None or progress.waiting is None:
        return STALE_LINK
    if progress.waiting.kind != kind or progress.waiting.nonce != nonce:
        return STALE_LINK
    return None


def _text_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


__all__ = [
    "FINAL_STATUSES",
    "STATUSES",
    "Outcome",
    "build_view",
    "decision_refusal",
    "is_running",
    "outcome_is_final",
    "stored_request",
]
