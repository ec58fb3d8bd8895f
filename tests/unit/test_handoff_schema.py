"""The Key Vault secret's JSON document (the hand-off to the mail product) against its published schema."""

import json
from datetime import datetime

import pytest
from jsonschema import Draft202012Validator, FormatChecker

from onboarding import steps
from onboarding.domain import AppRegistration, CredentialType
from onboarding.handoff import CREDENTIALS_SCHEMA, CREDENTIALS_SCHEMA_V2, CREDENTIALS_SCHEMA_VERSION
from tests.unit.fakes import FakeServices, settings

# Shaped as Key Vault's PEM export of a certificate (the schema checks the shape, not the key).
PEM = "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n-----BEGIN CERTIFICATE-----\nMIIC\n-----END CERTIFICATE-----\n"
APP = AppRegistration(object_id="obj-1", app_id="app-1", unique_name="u", service_principal_id="sp-1")
SCHEMA = json.loads(CREDENTIALS_SCHEMA.read_text(encoding="utf-8"))
VALIDATOR = Draft202012Validator(SCHEMA, format_checker=FormatChecker())


async def written_document(protocols: list[str]) -> dict:
    svc = FakeServices(settings())
    ref = await steps.create_secret(
        svc, onboarding_id="onb-1", tenant_id="tenant-1", app=APP, lifetime_days=180, protocols=protocols
    )
    return json.loads(svc.vault.versions[ref.name][0].value)


def test_the_schema_is_a_valid_json_schema():
    Draft202012Validator.check_schema(SCHEMA)


@pytest.mark.parametrize("protocols", [["IMAP"], ["POP"], ["IMAP", "POP"]])
async def test_every_document_the_product_writes_validates_against_the_schema(protocols):
    document = await written_document(protocols)
    assert list(VALIDATOR.iter_errors(document)) == []
    assert document["schemaVersion"] == CREDENTIALS_SCHEMA_VERSION
    assert datetime.fromisoformat(document["expiresOn"]).tzinfo is not None
    assert (document["imap"] is None) is ("IMAP" not in protocols)
    assert (document["pop"] is None) is ("POP" not in protocols)


async def test_the_writer_writes_exactly_the_documented_fields():
    # Readers ignore unknown fields, so the schema allows them; the writer must still document each one.
    document = await written_document(["IMAP", "POP"])
    assert set(document) == set(SCHEMA["properties"])


@pytest.mark.parametrize(
    "change",
    [
        {"schemaVersion": 2},
        {"imap": {"host": "imap.example", "port": "993"}},
        {"authorityHost": "https://login.example/tenant"},
        {"scope": "https://outlook.example"},
    ],
)
async def test_the_schema_refuses_a_document_a_version_1_reader_could_not_use(change):
    document = {**await written_document(["IMAP"]), **change}
    assert list(VALIDATOR.iter_errors(document)) != []


async def test_the_schema_refuses_a_document_without_the_client_secret():
    document = await written_document(["IMAP"])
    del document["clientSecret"]
    [error] = VALIDATOR.iter_errors(document)
    assert "'clientSecret' is a required property" in error.message


SCHEMA_V2 = json.loads(CREDENTIALS_SCHEMA_V2.read_text(encoding="utf-8"))
VALIDATOR_V2 = Draft202012Validator(SCHEMA_V2, format_checker=FormatChecker())


async def certificate_document(protocols: list[str]) -> dict:
    svc = FakeServices(settings())
    svc.certificates.pem = PEM
    ref = await steps.create_secret(
        svc,
        onboarding_id="onb-1",
        tenant_id="tenant-1",
        app=APP,
        lifetime_days=180,
        protocols=protocols,
        credential_type=CredentialType.CERTIFICATE,
    )
    return json.loads(svc.vault.versions[ref.name][0].value)


def test_the_version_2_schema_is_a_valid_json_schema():
    Draft202012Validator.check_schema(SCHEMA_V2)


@pytest.mark.parametrize("protocols", [["IMAP"], ["IMAP", "POP"]])
async def test_every_certificate_document_validates_against_version_2_and_is_refused_by_version_1(protocols):
    document = await certificate_document(protocols)
    assert list(VALIDATOR_V2.iter_errors(document)) == []
    assert document["schemaVersion"] == 2 and document["credentialType"] == "certificate"
    assert list(VALIDATOR.iter_errors(document)) != []  # a version 1 reader could not use it


async def test_the_certificate_writer_writes_exactly_the_documented_fields_of_its_type():
    document = await certificate_document(["IMAP"])
    assert set(document) == set(SCHEMA_V2["properties"]) - {"clientSecret"}


async def test_version_2_also_describes_a_secret_and_refuses_a_document_with_neither_credential():
    secret = {**await written_document(["IMAP"]), "schemaVersion": 2, "credentialType": "secret"}
    assert list(VALIDATOR_V2.iter_errors(secret)) == []
    neither = {k: v for k, v in secret.items() if k != "clientSecret"}
    assert list(VALIDATOR_V2.iter_errors(neither)) != []
