"""Certificate credentials (issue 11 item 3): the step that gives an app a certificate, shared by the
onboarding (``steps.create_secret``) and by rotation (``rotation.add_credential``).

Key Vault creates the certificate from a policy (RSA 2048, self-signed, validity from the request's
lifetime), its public part goes into the app's keyCredentials, and the hand-off document (version 2,
``credentialType: "certificate"``) is written as the next version of the onboarding's vault secret,
holding the PEM private key the mail product signs its client assertions with. The private key goes
from Key Vault to Key Vault inside the activity: only a ``SecretRef`` comes back.

Idempotent, without compensation: the key pair never leaves the vault, so a rerun finds what an
interrupted run made (the certificate version by its ``label`` tag, the keyCredential by its key id,
derived from that version) and finishes it, instead of making another.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from onboarding.domain import (
    AppRegistration,
    CredentialType,
    SecretRef,
    vault_certificate_name,
    vault_secret_name,
)
from onboarding.expiry import CREDENTIALS_CONTENT_TYPE
from onboarding.handoff import CERTIFICATE_SCHEMA_VERSION
from onboarding.ports import IssuedCertificateRecord, ServicesPort

# The hand-off document of a certificate is version 2 (``handoff.CERTIFICATE_SCHEMA_VERSION``): a
# version 1 reader requires clientSecret, which a certificate document has not, and refuses a version
# it does not know, so it fails clearly instead of misreading the document.
LABEL_TAG = "label"
CREDENTIAL_TYPE_TAG = "credentialType"
DAYS_PER_MONTH = 30


def validity_months(lifetime_days: int) -> int:
    """Key Vault's policy takes whole months: the request's lifetime, rounded up (never shorter)."""
    return max(1, math.ceil(lifetime_days / DAYS_PER_MONTH))


def key_id_for(certificate_name: str, version: str) -> str:
    """The keyCredential's id, derived from the certificate version: a rerun adds the same one."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"keyvault-certificate:{certificate_name}/{version}"))


def certificate_document(
    settings: Any,
    tenant_id: str,
    client_id: str,
    pem: str,
    thumbprint: str,
    protocols: Sequence[str],
    expires_on: datetime,
) -> dict[str, Any]:
    """The hand-off document of a certificate credential (docs/handoff.md)."""
    from onboarding.steps import build_document

    document = build_document(settings, tenant_id, client_id, "", protocols, expires_on)
    del document["clientSecret"]
    return {
        **document,
        "schemaVersion": CERTIFICATE_SCHEMA_VERSION,
        "credentialType": CredentialType.CERTIFICATE.value,
        "clientCertificate": pem,
        "certificateThumbprint": thumbprint,
    }


async def _this_version(svc: ServicesPort, name: str, label: str) -> IssuedCertificateRecord | None:
    latest = await svc.certificates.latest(name)
    return latest if latest is not None and latest.tags.get(LABEL_TAG) == label else None


async def issue(
    svc: ServicesPort,
    *,
    onboarding_id: str,
    tenant_id: str,
    app: AppRegistration,
    lifetime_days: int,
    protocols: Sequence[str],
    label: str,
    tags: dict[str, str] | None = None,
) -> SecretRef:
    """Make (or finish making) the certificate credential labelled ``label`` and store its document
    as the vault secret's current version; ``tags`` go on that version too (a rotation's)."""
    settings = svc.settings
    name, certificate_name = vault_secret_name(onboarding_id), vault_certificate_name(onboarding_id)
    current = await svc.vault.get(name)
    on_app = {
        k.key_id for k in await svc.graph.list_key_credentials(app.object_id) if k.display_name == label
    }
    if current is not None and current.tags.get("keyId") in on_app:
        return _ref(svc, name, current.version, current.tags["keyId"], current.expires_on)
    certificate = await _this_version(svc, certificate_name, label) or await svc.certificates.create(
        certificate_name,
        subject=f"CN={app.unique_name}",
        validity_months=validity_months(lifetime_days),
        tags={LABEL_TAG: label, "appId": app.app_id, "onboardingId": onboarding_id},
    )
    key_id = key_id_for(certificate_name, certificate.version)
    await svc.graph.add_key_credential(
        app.object_id,
        key_id=key_id,
        display_name=label,
        certificate=certificate.cer,
        start=certificate.not_before,
        end=certificate.expires_on,
    )
    pem = await svc.certificates.private_pem(certificate_name, certificate.version)
    document = certificate_document(
        settings, tenant_id, app.app_id, pem, certificate.thumbprint, protocols, certificate.expires_on
    )
    version = await svc.vault.put(
        name,
        json.dumps(document),
        content_type=CREDENTIALS_CONTENT_TYPE,
        expires_on=certificate.expires_on,
        tags={
            "keyId": key_id,
            "appId": app.app_id,
            "onboardingId": onboarding_id,
            CREDENTIAL_TYPE_TAG: CredentialType.CERTIFICATE.value,
            **(tags or {}),
        },
    )
    return _ref(svc, name, version, key_id, certificate.expires_on)


def _ref(svc: ServicesPort, name: str, version: str, key_id: str, expires_on: datetime | None) -> SecretRef:
    return SecretRef(
        vault_uri=svc.settings.key_vault_uri,
        name=name,
        version=version,
        expires_on=expires_on.isoformat() if expires_on else "",
        key_id=key_id,
        credential_type=CredentialType.CERTIFICATE.value,
    )
