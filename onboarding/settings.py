"""The one place the function app's configuration is read.

Every cloud endpoint comes from here: a cloud preset (``AZURE_CLOUD``, see ``clouds.json``) gives
defaults and each endpoint has its own setting that overrides it, so the same code serves the public
cloud, national clouds and the local sandbox. Code elsewhere receives a ``Settings``; it never reads
the environment itself.

``SETTINGS`` below is the declaration of every setting the code reads. ``infra/`` sets each of them
as an app setting and a test checks the two lists agree.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from onboarding.access_tokens import TokenConfig, TokenVersion
from onboarding.domain import PROCEDURE_VERSION, WorkflowOptions
from onboarding.errors import ConfigurationError
from onboarding.lazy import lazy

if TYPE_CHECKING:
    from onboarding import validation
else:  # read when settings are checked (onboarding/lazy.py)
    validation = lazy("onboarding.validation")


class ExchangeCalls(StrEnum):
    """``EXCHANGE_CALLS``: how the adapter sends per-mailbox cmdlets."""

    BATCH = "batch"
    SINGLE = "single"


@dataclass(frozen=True)
class SettingSpec:
    name: str
    description: str
    default: str | None = None
    required: bool = False
    secret: bool = False  # set from Key Vault (a reference), never as a plain value


SETTINGS: tuple[SettingSpec, ...] = (
    SettingSpec("TENANT_ID", "Directory (tenant) id this deployment onboards apps into.", required=True),
    SettingSpec(
        "AZURE_CLOUD",
        "Cloud preset giving the endpoint defaults: AzurePublicCloud (also GCC moderate tenants), "
        "AzureUSGovernment (GCC High), AzureUSGovernmentDoD (DoD), AzureChinaCloud.",
        "AzurePublicCloud",
    ),
    SettingSpec("AZURE_CLIENT_ID", "Client id of the function app's user-assigned managed identity."),
    SettingSpec("ENTRA_AUTHORITY_HOST", "Entra ID authority host, e.g. the public cloud's login host."),
    SettingSpec(
        "ENTRA_DISABLE_INSTANCE_DISCOVERY", "Skip MSAL authority validation (private hosts).", "false"
    ),
    SettingSpec(
        "ENTRA_TOKEN_ISSUER_V1_HOST",
        "Issuer host of v1.0 access tokens for this app's API (iss is {host}/{tenant}/).",
    ),
    SettingSpec("GRAPH_ENDPOINT", "Microsoft Graph base URL (no version)."),
    SettingSpec("EXCHANGE_ENDPOINT", "Exchange Online base URL: admin API and the IMAP/POP token resource."),
    SettingSpec("IMAP_HOST", "IMAP host the mail client connects to."),
    SettingSpec("IMAP_PORT", "IMAP port (implicit TLS).", "993"),
    SettingSpec("POP_HOST", "POP3 host the mail client connects to."),
    SettingSpec("POP_PORT", "POP3 port (implicit TLS).", "995"),
    SettingSpec("KEY_VAULT_URI", "URI of the Key Vault that receives the client secrets.", required=True),
    SettingSpec(
        "KEY_VAULT_RESOURCE_ID",
        "Azure resource id of that vault (/subscriptions/.../providers/Microsoft.KeyVault/vaults/{name}): the "
        "scope of the mail product's Key Vault Secrets User role on its secret. Empty: requests naming "
        "mailProductPrincipalId are refused (422).",
        "",
    ),
    SettingSpec(
        "RESOURCE_MANAGER_ENDPOINT",
        "Azure Resource Manager base URL of the vault's cloud (role assignments on the vault's secrets).",
    ),
    SettingSpec("MAIL_SENDER", "Mailbox (UPN) that sends consent and approval emails.", required=True),
    SettingSpec(
        "PUBLIC_BASE_URL",
        "Public https base URL of this function app (consent callback, approval pages).",
        required=True,
    ),
    SettingSpec(
        "LINK_SIGNING_KEY",
        "Key that signs approval links and completion callbacks.",
        required=True,
        secret=True,
    ),
    SettingSpec(
        "LINK_SIGNING_KEY_PREVIOUS",
        "The link-signing key before the last rotation: links it signed are still accepted (never used to "
        "sign); empty or unresolved: none. Remove it CONSENT_DEADLINE_HOURS after the rotation "
        "(docs/operations.md).",
        secret=True,
    ),
    SettingSpec(
        "API_FUNCTION_KEY",
        "Function key the requester's API accepts (the same value as the host key the deployment creates); "
        "empty: no key is accepted.",
        secret=True,
    ),
    SettingSpec(
        "API_APP_ID_URI",
        "Application ID URI of this API's app registration: an accepted token audience; empty (with "
        "API_CLIENT_ID) turns Entra tokens off.",
    ),
    SettingSpec("API_CLIENT_ID", "Client id of this API's app registration: an accepted token audience."),
    SettingSpec(
        "API_ACCESS_TOKEN_VERSION",
        "Access token version the API's app registration requests (requestedAccessTokenVersion): 1 or 2.",
        "2",
    ),
    SettingSpec("MAILBOX_BATCH_SIZE", "Mailboxes handled by one batch activity.", "200"),
    SettingSpec(
        "MAILBOX_FANOUT",
        "Most batches (or groups of batches) one orchestration runs; more are spread over a tree of "
        "group orchestrations so no history grows with the number of mailboxes.",
        "10",
    ),
    SettingSpec(
        "MAILBOX_GRANTS_AT_ONCE",
        "Grant activities one orchestration of batches runs at once, in batch order; each batch verifies "
        "its mailboxes as soon as they are granted, while the next batches are granted.",
        "2",
    ),
    SettingSpec(
        "MAILBOX_CONCURRENCY",
        "Mailboxes one batch activity handles at once: Exchange calls, or verifications (each logs in "
        "over IMAP, then POP).",
        "10",
    ),
    SettingSpec(
        "EXCHANGE_CALLS",
        "How per-mailbox Exchange cmdlets are sent: batch (up to 10 in one $batch request) or single "
        "(one InvokeCommand request each). docs/bench.md compares them.",
        "batch",
    ),
    SettingSpec("CONSENT_DEADLINE_HOURS", "How long to wait for the admin's decision.", "120"),
    SettingSpec("CONSENT_REMINDER_HOURS", "Interval between reminder emails while waiting.", "24"),
    SettingSpec(
        "VERIFY_WINDOW_MINUTES", "How long to retry IMAP/POP logins while permissions propagate.", "120"
    ),
    SettingSpec("POLL_INITIAL_SECONDS", "First wait when polling for replication or propagation.", "10"),
    SettingSpec("POLL_MAX_SECONDS", "Longest wait between two polls.", "600"),
    SettingSpec(
        "CREDENTIAL_EXPIRY_WARNING_DAYS",
        "First expiry warning, this many days before a client secret expires (then 14, 7, 1 days and once at expiry).",
        "30",
    ),
    SettingSpec(
        "HISTORY_RETENTION_DAYS",
        "Finished onboarding histories (with their mailbox and admin addresses) are purged this many days "
        "after they were created; a credential still in Key Vault keeps its onboarding record.",
        "90",
    ),
    SettingSpec(
        "ROTATION_OVERLAP_HOURS",
        "After a rotation verified the new client secret, how long the old one stays valid on the app, so "
        "a mail client still holding it keeps working until it reads the new Key Vault version.",
        "24",
    ),
    SettingSpec(
        "ROTATE_DAYS_BEFORE_EXPIRY",
        "The daily expiry watch rotates a succeeded onboarding's client secret this many days before it "
        "expires (0: never; rotate with POST .../rotate). Only secrets whose lifetime is longer are rotated.",
        "0",
    ),
    SettingSpec("ACTIVITY_RETRY_SECONDS", "Wait before Durable retries a transiently failed step.", "15"),
    SettingSpec(
        "CALLBACK_ALLOW_PRIVATE_NETWORKS",
        "Allow completion callbacks to loopback addresses (sandbox only; other private ranges stay refused).",
        "false",
    ),
    SettingSpec(
        "ENABLE_GRANT_MODE",
        'Accept consentMode "grant" (the identity then assigns app roles itself); else such requests get 422.',
        "false",
    ),
    SettingSpec(
        "SIGNIN_CLIENT_ID",
        "Client id of the app registration approvers sign in with (OpenID Connect); empty: no decision "
        "can be made.",
    ),
    SettingSpec(
        "SIGNIN_CLIENT_SECRET",
        "Client secret of that sign-in app registration.",
        secret=True,
    ),
    SettingSpec(
        "APPROVER_GROUP_ID",
        "Object id of a security group approvers must also belong to (ID token groups claim); empty: "
        "any admin holding one of the approver roles.",
    ),
    SettingSpec(
        "ADMIN_EMAIL_DOMAINS",
        "Comma-separated domains admin addresses may use. Empty: the tenant's verified domains, read from "
        "Microsoft Graph (Domain.Read.All).",
        "",
    ),
    SettingSpec(
        "ONBOARDINGS_PER_REQUESTER_PER_HOUR",
        "New onboardings one requester (function key or Entra caller) may start per hour, per instance.",
        "10",
    ),
    SettingSpec(
        "ONBOARDINGS_PER_HOUR", "New onboardings all requesters may start per hour, per instance.", "50"
    ),
    SettingSpec(
        "EMAILS_PER_HOUR", "Email recipients the sender mailbox may address per hour, per instance.", "200"
    ),
    SettingSpec(
        "BRAND_ORGANIZATION_NAME", "Organisation named as the sender in every email.", "Mail onboarding"
    ),
    SettingSpec("BRAND_LOGO_URL", "https URL of the logo shown in emails and pages. Empty: no logo.", ""),
    SettingSpec(
        "BRAND_SUPPORT_CONTACT", "Who admins contact with questions (an email address or https URL).", ""
    ),
    SettingSpec(
        "PYTHON_ENABLE_OPENTELEMETRY",
        "true: the worker exports its logs itself through OpenTelemetry (with host.json telemetryMode "
        "OpenTelemetry), so their fields become customDimensions; only where "
        "APPLICATIONINSIGHTS_CONNECTION_STRING is set.",
    ),
)

_SPEC_BY_NAME = {spec.name: spec for spec in SETTINGS}

# The settings the orchestrator needs (it may not read the environment): WorkflowOptions field ->
# setting. ``Settings`` has each as the setting's name in lower case.
_WORKFLOW_SETTINGS = {
    "consent_deadline_hours": "CONSENT_DEADLINE_HOURS",
    "consent_reminder_hours": "CONSENT_REMINDER_HOURS",
    "verify_window_minutes": "VERIFY_WINDOW_MINUTES",
    "mailbox_batch_size": "MAILBOX_BATCH_SIZE",
    "mailbox_fanout": "MAILBOX_FANOUT",
    "mailbox_grants_at_once": "MAILBOX_GRANTS_AT_ONCE",
    "poll_initial_seconds": "POLL_INITIAL_SECONDS",
    "poll_max_seconds": "POLL_MAX_SECONDS",
    "retry_interval_seconds": "ACTIVITY_RETRY_SECONDS",
}


def default_of(name: str) -> str:
    """A setting's declared default (``SETTINGS``), the one place it is written."""
    default = _SPEC_BY_NAME[name].default
    if default is None:
        raise KeyError(f"{name} has no default")
    return default


def default_workflow_options() -> WorkflowOptions:
    """The orchestrator's options when nothing overrides a default (an input that carries none)."""
    return _workflow_options({option: int(default_of(name)) for option, name in _WORKFLOW_SETTINGS.items()})


def _workflow_options(values: dict[str, int]) -> WorkflowOptions:
    """The options from the settings' values; the procedure version is the code's, never a setting."""
    return WorkflowOptions(**values, procedure_version=PROCEDURE_VERSION)


_CLOUDS_FILE = Path(__file__).with_name("clouds.json")


@lru_cache(maxsize=1)
def _clouds() -> dict[str, dict[str, str]]:
    data = json.loads(_CLOUDS_FILE.read_text(encoding="utf-8"))
    return {name: preset for name, preset in data.items() if not name.startswith("_")}


@dataclass(frozen=True, kw_only=True)
class Settings:
    tenant_id: str
    cloud: str
    managed_identity_client_id: str | None
    authority_host: str
    disable_instance_discovery: bool
    graph_endpoint: str
    exchange_endpoint: str
    imap_host: str
    imap_port: int
    pop_host: str
    pop_port: int
    key_vault_uri: str
    key_vault_resource_id: str
    resource_manager_endpoint: str
    mail_sender: str
    public_base_url: str
    link_signing_key: bytes = field(repr=False)
    link_signing_key_previous: bytes = field(repr=False)
    # Defaults live in SETTINGS (from_env applies them), not here.
    mailbox_batch_size: int
    mailbox_fanout: int
    mailbox_grants_at_once: int
    mailbox_concurrency: int
    exchange_calls: ExchangeCalls
    consent_deadline_hours: int
    consent_reminder_hours: int
    verify_window_minutes: int
    poll_initial_seconds: int
    poll_max_seconds: int
    activity_retry_seconds: int
    credential_expiry_warning_days: int
    history_retention_days: int
    rotation_overlap_hours: int
    rotate_days_before_expiry: int
    callback_allow_private_networks: bool
    enable_grant_mode: bool
    signin_client_id: str | None = None
    signin_client_secret: str | None = field(default=None, repr=False)
    approver_group_id: str | None = None
    admin_email_domains: frozenset[str]
    onboardings_per_requester_per_hour: int
    onboardings_per_hour: int
    emails_per_hour: int
    brand_organization_name: str
    brand_logo_url: str
    brand_support_contact: str
    api_function_key: bytes = field(default=b"", repr=False)
    api_audiences: tuple[str, ...] = ()
    api_access_token_version: TokenVersion
    token_issuer_v1_host: str = ""

    @property
    def link_verification_keys(self) -> tuple[bytes, ...]:
        """The keys a link, cookie or form token may be signed with: the current one first, then the
        one before the last rotation while it is kept (docs/operations.md, rotating the key)."""
        previous = self.link_signing_key_previous
        return (self.link_signing_key,) + (
            (previous,) if previous and previous != self.link_signing_key else ()
        )

    def token_config(self) -> TokenConfig | None:
        """How Entra tokens for this API are validated; ``None`` when no audience is configured."""
        if not self.api_audiences:
            return None
        return TokenConfig(
            tenant_id=self.tenant_id,
            authority_host=self.authority_host,
            audiences=self.api_audiences,
            token_version=self.api_access_token_version,
            v1_issuer_host=self.token_issuer_v1_host,
        )

    def workflow_options(self) -> WorkflowOptions:
        """The part of the settings the orchestrator needs, passed in its input."""
        return _workflow_options(
            {option: getattr(self, name.lower()) for option, name in _WORKFLOW_SETTINGS.items()}
        )

    @property
    def graph_scope(self) -> str:
        return f"{self.graph_endpoint}/.default"

    @property
    def resource_manager_scope(self) -> str:
        return f"{self.resource_manager_endpoint}/.default"

    @property
    def exchange_scope(self) -> str:
        """Scope for both the Exchange admin API and IMAP/POP XOAUTH2 tokens."""
        return f"{self.exchange_endpoint}/.default"

    def token_endpoint(self, tenant_id: str) -> str:
        return f"{self.authority_host}/{tenant_id}/oauth2/v2.0/token"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Build settings from an environment; every problem is reported at once, by name."""
        env = os.environ if env is None else env
        problems: list[str] = []

        def raw(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        cloud = raw("AZURE_CLOUD") or "AzurePublicCloud"
        preset = _clouds().get(cloud)
        if preset is None:
            problems.append(f"AZURE_CLOUD: unknown cloud {cloud!r}; expected one of {sorted(_clouds())}")
            preset = {}

        def get(name: str) -> str:
            value = raw(name) or preset.get(name) or _SPEC_BY_NAME[name].default
            if value is None:
                problems.append(f"{name}: required setting is missing ({_SPEC_BY_NAME[name].description})")
                return ""
            return value

        def url(name: str) -> str:
            value = get(name).rstrip("/")
            if value and not _is_https_or_loopback(value):
                problems.append(f"{name}: must be an https URL (http only for loopback)")
            return value

        def integer(name: str, low: int, high: int) -> int:
            text = get(name)
            try:
                value = int(text)
            except ValueError:
                problems.append(f"{name}: {text!r} is not a whole number")
                return low
            if not low <= value <= high:
                problems.append(f"{name}: {value} is outside {low}..{high}")
            return value

        def flag(name: str) -> bool:
            text = get(name).lower()
            if text not in {"true", "false", "1", "0", "yes", "no"}:
                problems.append(f"{name}: {text!r} is not true or false")
            return text in {"true", "1", "yes"}

        def optional_url(name: str) -> str:
            value = get(name)
            if value and not _is_https_or_loopback(value):
                problems.append(f"{name}: must be an https URL (http only for loopback)")
            return value

        def domains(name: str) -> frozenset[str]:
            names = frozenset(d.strip().lower() for d in get(name).split(",") if d.strip())
            for domain in sorted(names):
                if validation.email_problem(f"admin@{domain}"):
                    problems.append(f"{name}: {domain!r} is not a domain name")
            return names

        settings = cls(
            tenant_id=get("TENANT_ID"),
            cloud=cloud,
            managed_identity_client_id=raw("AZURE_CLIENT_ID"),
            authority_host=url("ENTRA_AUTHORITY_HOST"),
            disable_instance_discovery=flag("ENTRA_DISABLE_INSTANCE_DISCOVERY"),
            graph_endpoint=url("GRAPH_ENDPOINT"),
            exchange_endpoint=url("EXCHANGE_ENDPOINT"),
            imap_host=get("IMAP_HOST"),
            imap_port=integer("IMAP_PORT", 1, 65535),
            pop_host=get("POP_HOST"),
            pop_port=integer("POP_PORT", 1, 65535),
            key_vault_uri=url("KEY_VAULT_URI"),
            key_vault_resource_id=_vault_resource_id(get("KEY_VAULT_RESOURCE_ID"), problems),
            resource_manager_endpoint=url("RESOURCE_MANAGER_ENDPOINT"),
            mail_sender=get("MAIL_SENDER"),
            public_base_url=url("PUBLIC_BASE_URL"),
            link_signing_key=get("LINK_SIGNING_KEY").encode(),
            link_signing_key_previous=(_resolved_secret(raw("LINK_SIGNING_KEY_PREVIOUS")) or "").encode(),
            mailbox_batch_size=integer("MAILBOX_BATCH_SIZE", 1, 5000),
            mailbox_fanout=integer("MAILBOX_FANOUT", 2, 100),
            mailbox_grants_at_once=integer("MAILBOX_GRANTS_AT_ONCE", 1, 100),
            mailbox_concurrency=integer("MAILBOX_CONCURRENCY", 1, 200),
            exchange_calls=_exchange_calls(get("EXCHANGE_CALLS"), problems),
            consent_deadline_hours=integer("CONSENT_DEADLINE_HOURS", 1, 24 * 30),
            consent_reminder_hours=integer("CONSENT_REMINDER_HOURS", 1, 24 * 30),
            verify_window_minutes=integer("VERIFY_WINDOW_MINUTES", 0, 24 * 60),
            poll_initial_seconds=integer("POLL_INITIAL_SECONDS", 1, 3600),
            poll_max_seconds=integer("POLL_MAX_SECONDS", 1, 6 * 3600),
            activity_retry_seconds=integer("ACTIVITY_RETRY_SECONDS", 1, 3600),
            credential_expiry_warning_days=integer("CREDENTIAL_EXPIRY_WARNING_DAYS", 1, 365),
            history_retention_days=integer("HISTORY_RETENTION_DAYS", 1, 3650),
            rotation_overlap_hours=integer("ROTATION_OVERLAP_HOURS", 0, 24 * 90),
            rotate_days_before_expiry=integer("ROTATE_DAYS_BEFORE_EXPIRY", 0, 365),
            callback_allow_private_networks=flag("CALLBACK_ALLOW_PRIVATE_NETWORKS"),
            enable_grant_mode=flag("ENABLE_GRANT_MODE"),
            signin_client_id=raw("SIGNIN_CLIENT_ID"),
            signin_client_secret=_resolved_secret(raw("SIGNIN_CLIENT_SECRET")),
            approver_group_id=raw("APPROVER_GROUP_ID"),
            admin_email_domains=domains("ADMIN_EMAIL_DOMAINS"),
            onboardings_per_requester_per_hour=integer("ONBOARDINGS_PER_REQUESTER_PER_HOUR", 1, 1_000_000),
            onboardings_per_hour=integer("ONBOARDINGS_PER_HOUR", 1, 1_000_000),
            emails_per_hour=integer("EMAILS_PER_HOUR", 1, 1_000_000),
            brand_organization_name=get("BRAND_ORGANIZATION_NAME"),
            brand_logo_url=optional_url("BRAND_LOGO_URL"),
            brand_support_contact=get("BRAND_SUPPORT_CONTACT"),
            api_function_key=(raw("API_FUNCTION_KEY") or "").encode(),
            api_audiences=tuple(a for a in (raw("API_APP_ID_URI"), raw("API_CLIENT_ID")) if a),
            api_access_token_version=_token_version(get("API_ACCESS_TOKEN_VERSION"), problems),
            token_issuer_v1_host=(
                raw("ENTRA_TOKEN_ISSUER_V1_HOST") or preset.get("ENTRA_TOKEN_ISSUER_V1_HOST", "")
            ).rstrip("/"),
        )
        if settings.api_function_key.startswith(b"@Microsoft.KeyVault("):
            problems.append(
                "API_FUNCTION_KEY: the Key Vault reference did not resolve; "
                "check the identity's access to the vault (keyVaultReferenceIdentity)"
            )
        elif settings.api_function_key and len(settings.api_function_key) < 32:
            problems.append("API_FUNCTION_KEY: must be at least 32 characters")
        if settings.link_signing_key.startswith(b"@Microsoft.KeyVault("):
            # The platform passes the reference text itself when it cannot resolve it; signing with
            # that public string would let anyone who reads app settings forge approval links.
            problems.append(
                "LINK_SIGNING_KEY: the Key Vault reference did not resolve; "
                "check the identity's access to the vault (keyVaultReferenceIdentity)"
            )
        elif settings.link_signing_key and len(settings.link_signing_key) < 32:
            problems.append("LINK_SIGNING_KEY: must be at least 32 characters")
        if settings.link_signing_key_previous and len(settings.link_signing_key_previous) < 32:
            problems.append("LINK_SIGNING_KEY_PREVIOUS: must be at least 32 characters (or empty)")
        if problems:
            raise ConfigurationError(problems)
        return settings


def _resolved_secret(value: str | None) -> str | None:
    """A secret setting's value, or None when unset or when the platform passed an unresolved Key Vault
    reference (its public text is no credential). Sign-in then stays off: decisions are refused."""
    if value is None or value.startswith("@Microsoft.KeyVault("):
        return None
    return value


_VAULT_RESOURCE_ID = re.compile(
    r"/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.KeyVault/vaults/[0-9A-Za-z-]{3,24}",
    re.IGNORECASE,
)


def _vault_resource_id(text: str, problems: list[str]) -> str:
    value = text.strip().rstrip("/")
    if value and not _VAULT_RESOURCE_ID.fullmatch(value):
        problems.append(
            "KEY_VAULT_RESOURCE_ID: must be a vault's resource id, "
            "/subscriptions/{id}/resourceGroups/{group}/providers/Microsoft.KeyVault/vaults/{name}"
        )
        return ""
    return value


def _exchange_calls(text: str, problems: list[str]) -> ExchangeCalls:
    try:
        return ExchangeCalls(text.strip().lower())
    except ValueError:
        choices = " or ".join(c.value for c in ExchangeCalls)
        problems.append(f"EXCHANGE_CALLS: {text!r} is not {choices}")
        return ExchangeCalls.BATCH


def _token_version(text: str, problems: list[str]) -> TokenVersion:
    try:
        return TokenVersion(text)
    except ValueError:
        problems.append("API_ACCESS_TOKEN_VERSION: must be 1 or 2 (the app registration's token version)")
        return TokenVersion.V2


def _is_https_or_loopback(url: str) -> bool:
    """Entra itself allows plain http only for loopback redirect URIs; we apply the same rule."""
    parts = urlsplit(url)
    if parts.scheme == "https":
        return True
    return parts.scheme == "http" and parts.hostname in {"127.0.0.1", "localhost", "::1"}


@lru_cache(maxsize=1)
def load_settings() -> Settings:
    """The process's settings, read once on first use (not at import: cold start stays cheap)."""
    return Settings.from_env()


def opentelemetry_export_enabled(env: Mapping[str, str] | None = None) -> bool:
    """Whether the worker exports its own logs (onboarding/telemetry.py): the platform switch is on and
    there is an Application Insights to send them to. The connection string is the platform's setting
    (infra/app/function.bicep), which the exporter reads itself; it is only looked at here, so that a
    local run or a test without it logs as before."""
    env = os.environ if env is None else env
    switch = env.get("PYTHON_ENABLE_OPENTELEMETRY", "").strip().lower() in {"true", "1", "yes"}
    return switch and bool(env.get("APPLICATIONINSIGHTS_CONNECTION_STRING", "").strip())


def settings_table() -> str:
    """The settings reference in docs/settings.md (``python -m onboarding.settings`` prints it)."""
    lines = [
        "# Settings",
        "",
        "Every app setting the function app reads (`onboarding/settings.py`; `infra/main.bicep` sets each).",
        "Endpoint defaults come from the `AZURE_CLOUD` preset in `onboarding/clouds.json`.",
        "",
        "| setting | default | meaning |",
        "|---|---|---|",
    ]
    for spec in SETTINGS:
        preset = any(spec.name in cloud for cloud in _clouds().values())
        default = (
            "required"
            if spec.required
            else (f"`{spec.default}`" if spec.default else "from the cloud preset" if preset else "optional")
        )
        if spec.secret:
            default += ", a Key Vault reference"
        lines.append(f"| `{spec.name}` | {default} | {spec.description} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(settings_table(), end="")
