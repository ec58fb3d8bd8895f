"""Certificate credentials against the sandbox tenant with the real client libraries: Key Vault makes
the certificate (azure-keyvault-certificates), Graph takes its public part into keyCredentials
(msgraph-sdk), and Entra ID gives a token for a client assertion signed with its private key
(azure-identity CertificateCredential), and refuses an assertion it cannot accept with its AADSTS code."""

from __future__ import annotations

import base64
import hashlib
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.identity.aio import ManagedIdentityCredential
from azure.keyvault.certificates import CertificatePolicy
from azure.keyvault.certificates.aio import CertificateClient
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from onboarding.adapters.graph import GraphDirectory
from onboarding.adapters.identity import acquire_token, app_certificate_credential
from onboarding.adapters.kvcertificates import PEM_CONTENT_TYPE, CertificateVault, IssuedCertificate
from onboarding.domain import EXCHANGE_ONLINE_APP_ID, AppRegistration
from onboarding.errors import InvalidRequestError
from onboarding.settings import Settings
from sandbox import Sandbox
from tests.adapters.conftest import RecordingSleep

ROLES = ("IMAP.AccessAsApp", "POP.AccessAsApp")


@pytest.fixture
async def graph(settings: Settings, credential: Any) -> AsyncIterator[GraphDirectory]:
    directory = GraphDirectory(settings, credential, sleep=RecordingSleep())
    yield directory
    await directory.close()


@pytest.fixture
async def certificates(settings: Settings, credential: Any) -> AsyncIterator[CertificateVault]:
    vault = CertificateVault(settings, credential, polling_interval=0.05)
    yield vault
    await vault.close()


async def registered(sb: Sandbox, graph: GraphDirectory) -> AppRegistration:
    """An app of the function app's identity, with its service principal and both Exchange roles."""
    resource = await graph.get_resource(EXCHANGE_ONLINE_APP_ID, ROLES)
    app = await graph.upsert_application(
        unique_name="mail-onboarding-cert",
        display_name="Mail client",
        resource=resource,
        resource_app_id=EXCHANGE_ONLINE_APP_ID,
        role_values=ROLES,
        redirect_uris=["https://func.example/api/consent/callback"],
        notes="created by a test",
        tags=["mail-onboarding"],
    )
    with sb.state.lock:
        found = sb.state.get_application(app.object_id)
        assert found is not None
        found.created_at = datetime(2020, 1, 1, tzinfo=UTC)  # replicated long ago
        sp = sb.state.create_service_principal(found, owner=None)
        sp.created_at = found.created_at
        for value in ROLES:
            sb.state.add_assignment(
                sp.id, sb.state.exchange_sp, sb.state.role_by_value(sb.state.exchange_sp, value).id
            )
    return app


async def issue(
    certificates: CertificateVault, name: str = "mail-cert-t1", label: str = "first"
) -> IssuedCertificate:
    return await certificates.create(
        name, subject="CN=mail-onboarding-t1", validity_months=6, tags={"label": label}
    )


async def on_app(graph: GraphDirectory, app: AppRegistration, cert: IssuedCertificate, label: str) -> str:
    key_id = str(uuid.uuid4())
    await graph.add_key_credential(
        app.object_id,
        key_id=key_id,
        display_name=label,
        certificate=cert.cer,
        start=cert.not_before,
        end=cert.expires_on,
    )
    return key_id


async def exchange_token(settings: Settings, app: AppRegistration, pem: str) -> Any:
    credential = app_certificate_credential(settings, settings.tenant_id, app.app_id, pem)
    try:
        return await acquire_token(credential, settings.exchange_scope)
    finally:
        await credential.close()


async def test_key_vault_creates_a_self_signed_certificate_whose_private_key_is_its_pem_secret(
    sb: Sandbox, certificates: CertificateVault
) -> None:
    made = await issue(certificates)
    cert = x509.load_der_x509_certificate(made.cer)
    assert made.thumbprint == cert.fingerprint(hashes.SHA1()).hex().upper()  # noqa: S303
    assert cert.public_key().key_size == 2048 and cert.issuer == cert.subject
    assert made.expires_on - made.not_before >= timedelta(days=180)
    assert (await certificates.latest("mail-cert-t1")) == made
    pem = await certificates.private_pem("mail-cert-t1", made.version)
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    assert key.public_key().public_numbers() == cert.public_key().public_numbers()  # type: ignore[union-attr]
    assert x509.load_pem_x509_certificate(pem.encode()) == cert
    [secret] = [s for s in sb.state.secrets() if s.name == "mail-cert-t1"]
    assert secret.versions[-1].managed and secret.versions[-1].content_type == PEM_CONTENT_TYPE

    second = await issue(certificates, label="second")
    assert second.version != made.version and (await certificates.latest("mail-cert-t1")) == second
    assert await certificates.latest("no-such-cert") is None

    # Offboarding: a soft delete takes the private key with it; again, or none by that name, is done.
    await certificates.delete("mail-cert-t1")
    await certificates.delete("mail-cert-t1")
    await certificates.delete("no-such-cert")
    assert await certificates.latest("mail-cert-t1") is None
    [gone] = sb.state.vault_certificates()
    [key] = [s for s in sb.state.secrets() if s.name == "mail-cert-t1"]
    assert gone.deleted_at is not None and key.deleted_at is not None


async def test_the_certificates_api_follows_the_sdk_pending_versions_soft_delete_and_policy_checks(
    sb: Sandbox, settings: Settings
) -> None:
    from onboarding.adapters._tls import azure_transport_options

    async with ManagedIdentityCredential(client_id=settings.managed_identity_client_id) as credential:
        client = CertificateClient(
            settings.key_vault_uri, credential, verify_challenge_resource=False, **azure_transport_options()
        )
        async with client:
            policy = CertificatePolicy(
                issuer_name="Self",
                subject="CN=t",
                key_type="RSA",
                key_size=2048,
                validity_in_months=1,
                content_type="application/x-pkcs12",
            )
            made = await client.create_certificate("c1", policy, _polling_interval=0.01)
            assert (await client.get_certificate_operation("c1")).status == "completed"
            await client.create_certificate("c1", policy, _polling_interval=0.01)
            versions = [v.version async for v in client.list_properties_of_certificate_versions("c1")]
            assert len(versions) == 2 and made.properties.version in versions
            assert (await client.get_certificate_version("c1", made.properties.version)).cer == made.cer
            weak = CertificatePolicy(
                issuer_name="Self", subject="CN=t", key_type="RSA", key_size=1024, validity_in_months=1
            )
            with pytest.raises(HttpResponseError) as refused:
                await client.create_certificate("c2", weak, _polling_interval=0.01)
            assert refused.value.status_code == 400
            await client.delete_certificate("c1", _polling_interval=0.01)
            with pytest.raises(ResourceNotFoundError):
                await client.get_certificate("c1")
            assert (await client.get_deleted_certificate("c1")).recovery_id
            await client.recover_deleted_certificate("c1", _polling_interval=0.01)
            assert (await client.get_certificate("c1")).cer == (await client.get_certificate("c1")).cer


async def test_certificates_need_their_own_role_on_the_vault(
    sb: Sandbox, certificates: CertificateVault
) -> None:
    sb.state.set_vault_certificate_role(sb.identity.id, None)
    with pytest.raises(Exception) as refused:
        await issue(certificates)
    assert "Certificates Officer" in getattr(refused.value, "fix", "")


async def test_a_certificate_on_the_app_gets_a_token_and_the_others_stay_when_one_is_added_or_removed(
    sb: Sandbox, settings: Settings, graph: GraphDirectory, certificates: CertificateVault
) -> None:
    app = await registered(sb, graph)
    first = await issue(certificates, label="first")
    first_key = await on_app(graph, app, first, "first")
    await graph.add_key_credential(  # again, same key id: nothing changes
        app.object_id,
        key_id=first_key,
        display_name="first",
        certificate=first.cer,
        start=first.not_before,
        end=first.expires_on,
    )
    pem = await certificates.private_pem("mail-cert-t1", first.version)
    token = await exchange_token(settings, app, pem)
    assert sorted(token.roles) == sorted(ROLES) and token.app_id == app.app_id

    second = await issue(certificates, label="second")
    second_key = await on_app(graph, app, second, "second")
    assert [k.key_id for k in await graph.list_key_credentials(app.object_id)] == [first_key, second_key]
    await exchange_token(settings, app, pem)  # the first still works during the overlap

    await graph.remove_key_credential(app.object_id, first_key)
    await graph.remove_key_credential(app.object_id, first_key)  # already gone: fine
    assert [k.key_id for k in await graph.list_key_credentials(app.object_id)] == [second_key]
    with pytest.raises(InvalidRequestError) as refused:
        await exchange_token(settings, app, pem)
    assert refused.value.code == "AADSTS700027"
    await exchange_token(settings, app, await certificates.private_pem("mail-cert-t1", second.version))


def self_signed() -> tuple[rsa.RSAPrivateKey, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "t")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    return key, cert.public_bytes(serialization.Encoding.DER)


def assertion(key: rsa.RSAPrivateKey, der: bytes, client_id: str, aud: str, **claims: Any) -> str:
    now = int(time.time())
    body = {
        "aud": aud,
        "iss": client_id,
        "sub": client_id,
        "jti": str(uuid.uuid4()),
        "nbf": now,
        "exp": now + 600,
        **claims,
    }
    x5t = base64.urlsafe_b64encode(hashlib.sha1(der).digest()).rstrip(b"=").decode()  # noqa: S324
    return jwt.encode(body, key, algorithm="RS256", headers={"x5t": x5t})


async def test_refused_assertions_carry_entras_codes(
    sb: Sandbox, settings: Settings, graph: GraphDirectory
) -> None:
    app = await registered(sb, graph)
    key, der = self_signed()
    start, end = datetime.now(UTC) - timedelta(days=1), datetime.now(UTC) + timedelta(days=30)
    await graph.add_key_credential(
        app.object_id, key_id=str(uuid.uuid4()), display_name="t", certificate=der, start=start, end=end
    )
    endpoint = settings.token_endpoint(settings.tenant_id)
    stranger_key, stranger = self_signed()

    def post(token: str) -> httpx.Response:
        form = {
            "grant_type": "client_credentials",
            "client_id": app.app_id,
            "scope": settings.exchange_scope,
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": token,
        }
        return httpx.post(endpoint, data=form, verify=sb.client_ssl_context())

    def code(response: httpx.Response) -> int:
        assert response.status_code in (400, 401)
        return int(response.json()["error_codes"][0])

    assert post(assertion(key, der, app.app_id, endpoint)).status_code == 200  # RS256 with x5t: accepted
    assert code(post(assertion(stranger_key, stranger, app.app_id, endpoint))) == 700027  # not on the app
    assert code(post(assertion(stranger_key, der, app.app_id, endpoint))) == 700027  # signed by another key
    past = int(time.time()) - 3600
    assert code(post(assertion(key, der, app.app_id, endpoint, nbf=past - 600, exp=past))) == 700024
    assert code(post(assertion(key, der, app.app_id, "https://elsewhere.example/token"))) == 700023
    assert code(post(assertion(key, der, app.app_id, endpoint, iss="someone-else"))) == 700021
    without_thumbprint = jwt.encode({"iss": app.app_id}, key, algorithm="RS256")
    assert code(post(without_thumbprint)) == 50027


async def test_an_expired_certificate_on_the_app_is_refused(
    sb: Sandbox, settings: Settings, graph: GraphDirectory
) -> None:
    app = await registered(sb, graph)
    key, der = self_signed()
    now = sb.state.now()
    await graph.add_key_credential(
        app.object_id,
        key_id=str(uuid.uuid4()),
        display_name="t",
        certificate=der,
        start=now - timedelta(days=60),
        end=now - timedelta(days=1),
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    pem += x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM)
    with pytest.raises(InvalidRequestError) as refused:
        await exchange_token(settings, app, pem.decode())
    assert refused.value.code == "AADSTS700027"
