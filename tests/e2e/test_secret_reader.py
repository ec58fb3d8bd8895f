"""The mail product's principal reads its secret and no other (issue 11 item 4, "Done when").

The request names the mail product's principal (``mailProductPrincipalId``); the onboarding gives it
Key Vault Secrets User on that onboarding's secret through Azure Resource Manager. The principal, an
application of the sandbox tenant with its own client secret, then reads the hand-off with
azure-keyvault-secrets as the mail product would, is refused on another onboarding's secret and on
listing the vault, and after the offboarding its role assignment is gone.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from azure.core.exceptions import HttpResponseError
from azure.identity import ClientSecretCredential
from azure.keyvault.secrets import SecretClient

from tests.e2e.conftest import MAILBOXES, Tenant
from tests.e2e.test_offboarding import offboarded, step, v1

DOCUMENT = yaml.safe_load(
    (Path(__file__).resolve().parents[2] / "openapi" / "openapi.yaml").read_text("utf-8")
)


def conforms(view: dict[str, Any]) -> dict[str, Any]:
    """The status view as the OpenAPI document describes it (``secret.readers``, the offboarding's steps)."""
    schema = {**DOCUMENT["components"]["schemas"]["StatusView"], "components": DOCUMENT["components"]}
    jsonschema.validate(view, schema, cls=jsonschema.Draft202012Validator)
    return view


def mail_product_vault(tenant: Tenant, client_id: str, secret: str) -> SecretClient:
    env = tenant.sandbox.env
    credential = ClientSecretCredential(
        env["TENANT_ID"],
        client_id,
        secret,
        authority=env["ENTRA_AUTHORITY_HOST"],
        disable_instance_discovery=True,
    )
    return SecretClient(env["KEY_VAULT_URI"], credential, verify_challenge_resource=False)


def refused(read: object) -> int:
    with pytest.raises(HttpResponseError) as denied:
        read()  # type: ignore[operator]
    assert denied.value.error is not None
    return int(denied.value.status_code or 0)


def test_the_mail_products_principal_reads_its_secret_and_no_other_until_offboarded(tenant: Tenant) -> None:
    sandbox = tenant.sandbox
    client_id, principal_id, client_secret = sandbox.create_client_app("mail product")

    # Another onboarding, for another product: its secret is in the same vault.
    other = tenant.submit(displayName="Other connector", mailboxes=[MAILBOXES[0]])
    other_view = tenant.wait_for_decision(other)
    location = tenant.submit(mailProductPrincipalId=principal_id.upper())  # any case: an object id
    waiting = tenant.wait_for_decision(location)
    mail = next(m for m in tenant.mails_to_admin() if waiting["app"]["appId"] in m.html)
    tenant.consent_from(mail)
    view = conforms(tenant.finished(location))
    assert view["status"] == "succeeded", view
    secret = view["secret"]
    assert secret["readers"] == [
        {"principalId": principal_id, "role": "Key Vault Secrets User", "scope": "secret"}
    ]
    assert "may read this secret" in next(s for s in view["steps"] if s["name"] == "client_secret")["detail"]

    # One assignment: Key Vault Secrets User, on exactly this secret, for exactly this principal.
    [assignment] = sandbox.state.rbac_assignments()
    assert assignment.scope.endswith(
        f"/providers/Microsoft.KeyVault/vaults/kv-sandbox/secrets/{secret['name']}"
    )
    assert (assignment.principal_id, assignment.role_guid, assignment.principal_type) == (
        principal_id,
        "4633458b-17de-408a-b874-0445c86b69e6",
        "ServicePrincipal",
    )

    if tenant.drives_time and tenant.clock is not None:
        # Azure RBAC applies a new assignment within 10 minutes (the realistic profile's vault_role_s).
        tenant.clock.advance(timedelta(minutes=11))
    vault = mail_product_vault(tenant, client_id, client_secret)
    document = json.loads(vault.get_secret(secret["name"]).value or "{}")
    assert document["clientId"] == view["app"]["appId"] and document["schemaVersion"] == 1
    assert vault.get_secret(secret["name"], secret["version"]).properties.version == secret["version"]
    other_secret = f"mail-app-{other_view['id']}"
    assert [s.name for s in sandbox.state.secrets() if s.name == other_secret] == [other_secret]
    assert refused(lambda: vault.get_secret(other_secret)) == 403
    assert refused(lambda: list(vault.list_properties_of_secrets())) == 403

    # Offboarded: the assignment is removed before the secret is soft-deleted.
    assert tenant.http.delete(v1(location)).status_code == 202
    final = conforms(offboarded(tenant, location))
    assert final["offboarding"]["status"] == "succeeded", final["offboarding"]
    assert step(final, "remove_secret_reader")["state"] == "done"
    assert sandbox.state.rbac_assignments() == []
    assert refused(lambda: vault.get_secret(secret["name"])) == 403
    assert tenant.http.post(f"{other}/cancel").status_code == 202


def test_an_identity_that_may_not_assign_the_role_fails_the_onboarding_early_and_nothing_is_left(
    tenant_factory: Any,
) -> None:
    """Without the delegation (MAIL_PRODUCT_ACCESS granted but the role removed, say), the role
    assignment is refused: the onboarding fails at the secret's step with the role to give, before any
    admin is asked, and what it made is undone."""
    tenant = tenant_factory(configure=lambda sb: sb.state.allow_role_assignments(sb.identity.id, None))
    _, principal_id, _ = tenant.sandbox.create_client_app("mail product")
    view = tenant.finished(tenant.submit(mailProductPrincipalId=principal_id))
    assert view["status"] == "failed", view
    [error] = view["errors"]
    assert error["step"] == "client_secret" and error["code"] == "AuthorizationFailed"
    assert "Role Based Access Control Administrator" in error["fix"]
    assert "does not have authorization" not in json.dumps(view)  # ARM's own text stays out
    assert tenant.live_apps() == [] and tenant.live_secrets() == []
    assert tenant.sandbox.state.rbac_assignments() == []
    assert not any("consent" in m.subject.lower() for m in tenant.mails_to_admin()), [
        m.subject for m in tenant.mails_to_admin()
    ]
