"""The documented mail client's reading of the hand-off document (demo/mail_client.py)."""

import json
import re
from pathlib import Path

import pytest

from demo.mail_client import Endpoint, Handoff, HandoffError, xoauth2

DOCUMENT = {
    "schemaVersion": 1,
    "tenantId": "tenant-1",
    "clientId": "app-1",
    "clientSecret": "s3cr3t-value",
    "authorityHost": "https://login.example",
    "tokenEndpoint": "https://login.example/tenant-1/oauth2/v2.0/token",
    "scope": "https://mail.example/.default",
    "imap": {"host": "imap.example", "port": 993},
    "pop": None,
    "expiresOn": "2027-01-01T00:00:00+00:00",
}


def test_a_version_1_document_gives_the_endpoints_it_names() -> None:
    handoff = Handoff.from_json(json.dumps(DOCUMENT))
    assert (handoff.imap, handoff.pop, handoff.scope) == (
        Endpoint("imap.example", 993),
        None,
        "https://mail.example/.default",
    )
    assert "s3cr3t-value" not in repr(handoff)


def test_a_document_written_before_the_version_field_is_read_as_version_1() -> None:
    older = {k: v for k, v in DOCUMENT.items() if k != "schemaVersion"}
    assert Handoff.from_json(json.dumps(older)).client_id == "app-1"


def test_an_unknown_version_is_refused_by_name() -> None:
    with pytest.raises(HandoffError, match="schema version 3 is not supported"):
        Handoff.from_json(json.dumps({**DOCUMENT, "schemaVersion": 3}))


CERTIFICATE_DOCUMENT = {
    **{k: v for k, v in DOCUMENT.items() if k != "clientSecret"},
    "schemaVersion": 2,
    "credentialType": "certificate",
    "clientCertificate": "-----BEGIN PRIVATE KEY-----\nk3y\n-----END PRIVATE KEY-----\n",
    "certificateThumbprint": "AB" * 20,
}


def test_a_version_2_certificate_document_is_read_as_a_certificate_and_its_key_never_shown() -> None:
    handoff = Handoff.from_json(json.dumps(CERTIFICATE_DOCUMENT))
    assert handoff.credential_type == "certificate" and handoff.secret.startswith("-----BEGIN PRIVATE KEY")
    assert "k3y" not in repr(handoff)
    with pytest.raises(HandoffError, match="lacks clientCertificate"):
        Handoff.from_json(json.dumps({**CERTIFICATE_DOCUMENT, "clientCertificate": ""}))
    with pytest.raises(HandoffError, match="credential type 'password' is not supported"):
        Handoff.from_json(json.dumps({**CERTIFICATE_DOCUMENT, "credentialType": "password"}))


def test_a_missing_field_is_named_and_no_value_is_echoed() -> None:
    with pytest.raises(HandoffError) as caught:
        Handoff.from_json(json.dumps({**DOCUMENT, "clientSecret": "", "scope": None}))
    assert "clientSecret, scope" in str(caught.value)
    with pytest.raises(HandoffError) as not_json:
        Handoff.from_json("s3cr3t-value")
    assert "s3cr3t-value" not in str(not_json.value)


def test_the_xoauth2_response_names_the_mailbox_and_the_bearer_token() -> None:
    assert xoauth2("a@contoso.com", "tok") == b"user=a@contoso.com\x01auth=Bearer tok\x01\x01"


def test_the_code_docs_client_md_shows_is_the_module_the_e2e_test_runs() -> None:
    root = Path(__file__).resolve().parents[2]
    doc = (root / "docs" / "client.md").read_text(encoding="utf-8")
    module = (root / "demo" / "mail_client.py").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", doc, flags=re.DOTALL)
    assert len(blocks) == 5
    assert [b for b in blocks if b.strip() not in module] == []
