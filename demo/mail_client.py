"""A minimal mail client for the hand-off (docs/client.md): what the mail product does with the
onboarding's Key Vault secret.

1. Read the secret (its value is the JSON document of docs/schemas/credentials-v2.schema.json, or
   of credentials-v1.schema.json for a client secret written by an older service).
2. Get an app-only token with the client credentials flow, for the scope the document names: with
   the certificate (a client assertion signed with its private key) or with the client secret.
3. Log in to a mailbox with SASL XOAUTH2: IMAP ``SELECT INBOX``, POP3 ``STAT``.

Every endpoint (authority, scope, IMAP and POP hosts) comes from the document, which the service
wrote from its cloud configuration, so the client works unchanged in every cloud.

Run it: ``python -m demo.mail_client --vault-url URL --secret-name NAME --mailbox ADDRESS``; it
signs in to Key Vault with ``DefaultAzureCredential`` (the mail product's managed identity in Azure).
The secret and the token are never printed.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import imaplib
import json
import poplib
import ssl
import sys
from dataclasses import dataclass, field
from typing import Any

CONTENT_TYPE = "application/vnd.mail-onboarding.credentials+json"
SUPPORTED_VERSIONS = frozenset({1, 2})
REQUIRED = ("tenantId", "clientId", "authorityHost", "scope")  # the credential's field goes after clientId
# What each credential type needs besides; version 1 documents are client secrets.
CREDENTIAL_FIELDS = {"secret": ("clientSecret",), "certificate": ("clientCertificate",)}


class HandoffError(ValueError):
    """The secret is not a hand-off document this client can use; the message names what is wrong."""


class MailLoginError(RuntimeError):
    """The server refused the login or the mailbox command (no FullAccess, protocol off, propagation)."""


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int


@dataclass(frozen=True)
class Handoff:
    tenant_id: str
    client_id: str
    credential_type: str  # "secret" or "certificate"
    secret: str = field(repr=False)  # the client secret, or the PEM private key and certificate
    authority_host: str
    scope: str
    imap: Endpoint | None
    pop: Endpoint | None
    expires_on: str

    @classmethod
    def from_json(cls, text: str) -> Handoff:
        try:
            document = json.loads(text)
        except ValueError:
            raise HandoffError("the secret's value is not JSON") from None  # never echo the value
        if not isinstance(document, dict):
            raise HandoffError("the secret's value is not a JSON object")
        # Documents written before the field existed are version 1.
        version = document.get("schemaVersion", 1)
        if version not in SUPPORTED_VERSIONS:
            raise HandoffError(
                f"hand-off schema version {version!r} is not supported (this client reads 1 and 2)"
            )
        kind = document.get("credentialType", "secret")
        if kind not in CREDENTIAL_FIELDS:
            raise HandoffError(
                f"credential type {kind!r} is not supported (this client reads secret, certificate)"
            )
        wanted = (*REQUIRED[:2], *CREDENTIAL_FIELDS[kind], *REQUIRED[2:])
        missing = [name for name in wanted if not isinstance(document.get(name), str) or not document[name]]
        if missing:
            raise HandoffError(f"the hand-off document lacks {', '.join(missing)}")
        return cls(
            tenant_id=document["tenantId"],
            client_id=document["clientId"],
            credential_type=kind,
            secret=document[CREDENTIAL_FIELDS[kind][0]],
            authority_host=document["authorityHost"],
            scope=document["scope"],
            imap=_endpoint(document.get("imap")),
            pop=_endpoint(document.get("pop")),
            expires_on=str(document.get("expiresOn", "")),
        )


def _endpoint(value: Any) -> Endpoint | None:
    return Endpoint(str(value["host"]), int(value["port"])) if value else None


def read_handoff(vault_url: str, secret_name: str, credential: Any, **client_options: Any) -> Handoff:
    """The latest version of the secret (no version given, so a rotated secret is followed)."""
    from azure.keyvault.secrets import SecretClient

    with SecretClient(vault_url, credential, **client_options) as vault:
        secret = vault.get_secret(secret_name)
    if secret.properties.content_type != CONTENT_TYPE:
        raise HandoffError(f"secret {secret_name} is not a hand-off document (content type {CONTENT_TYPE})")
    return Handoff.from_json(secret.value or "")


def app_token(handoff: Handoff, **credential_options: Any) -> str:
    """An app-only access token for Exchange Online (client credentials flow)."""
    from azure.identity import CertificateCredential, ClientSecretCredential

    options = {"authority": handoff.authority_host, **credential_options}
    credential: CertificateCredential | ClientSecretCredential
    if handoff.credential_type == "certificate":
        # A client assertion signed with the private key, naming the certificate by its thumbprint.
        pem = handoff.secret.encode("ascii")
        credential = CertificateCredential(
            handoff.tenant_id, handoff.client_id, certificate_data=pem, **options
        )
    else:
        credential = ClientSecretCredential(handoff.tenant_id, handoff.client_id, handoff.secret, **options)
    with credential:
        return credential.get_token(handoff.scope).token


def xoauth2(mailbox: str, token: str) -> bytes:
    """The SASL XOAUTH2 initial response (before base64): the mailbox to open and the bearer token."""
    return f"user={mailbox}\x01auth=Bearer {token}\x01\x01".encode()


def imap_select_inbox(
    endpoint: Endpoint, mailbox: str, token: str, context: ssl.SSLContext | None = None
) -> int:
    """Log in over IMAP (implicit TLS) and SELECT INBOX; the number of messages in it."""
    answers = iter([xoauth2(mailbox, token)])
    with imaplib.IMAP4_SSL(
        endpoint.host, endpoint.port, ssl_context=context or ssl.create_default_context()
    ) as imap:
        try:
            # A refusal comes as an error challenge first: answer it with an empty line.
            imap.authenticate("XOAUTH2", lambda _challenge: next(answers, b""))
            status, data = imap.select("INBOX")
        except imaplib.IMAP4.error:
            raise MailLoginError(f"IMAP login to {mailbox} refused") from None
        if status != "OK":
            raise MailLoginError(f"IMAP SELECT INBOX in {mailbox} refused")
        return int(data[0] or 0)


def pop_stat(
    endpoint: Endpoint, mailbox: str, token: str, context: ssl.SSLContext | None = None
) -> tuple[int, int]:
    """Log in over POP3 (implicit TLS) and STAT: (messages, bytes)."""
    pop: Any = poplib.POP3_SSL(endpoint.host, endpoint.port, context=context or ssl.create_default_context())
    try:
        # poplib has no SASL support; its command helpers carry AUTH: the command, then the
        # base64 initial response after the server's "+" (a token is too long for one command line).
        pop._shortcmd("AUTH XOAUTH2")
        reply = pop._shortcmd(base64.b64encode(xoauth2(mailbox, token)).decode("ascii"))
        if not reply.startswith(b"+OK"):
            raise MailLoginError(f"POP3 login to {mailbox} refused")
        messages, size = pop.stat()
        return int(messages), int(size)
    except poplib.error_proto:
        raise MailLoginError(f"POP3 login to {mailbox} refused") from None
    finally:
        with contextlib.suppress(OSError, poplib.error_proto):
            pop.quit()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--vault-url", required=True, help="the status view's secret.vaultUri")
    parser.add_argument("--secret-name", required=True, help="the status view's secret.name")
    parser.add_argument("--mailbox", required=True, action="append", help="a mailbox to open (repeatable)")
    args = parser.parse_args(argv)

    from azure.identity import DefaultAzureCredential

    with DefaultAzureCredential() as vault_credential:
        handoff = read_handoff(args.vault_url, args.secret_name, vault_credential)
    token = app_token(handoff)
    for mailbox in args.mailbox:
        if handoff.imap:
            print(f"{mailbox}: IMAP ok, {imap_select_inbox(handoff.imap, mailbox, token)} messages in INBOX")
        if handoff.pop:
            messages, size = pop_stat(handoff.pop, mailbox, token)
            print(f"{mailbox}: POP3 ok, {messages} messages ({size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
