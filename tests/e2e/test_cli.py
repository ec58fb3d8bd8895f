"""The operator CLI end to end: ``python -m cli`` (what the ``mailonboard`` console command runs) in its
own process, as an operator's laptop would run it, against the local host and the sandbox tenant.

The operator's identity is an application of the sandbox tenant with a client secret, which
azure-identity's DefaultAzureCredential picks up from AZURE_* variables as it would on a laptop.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from onboarding.links import callback_key
from sandbox import catalog
from sandbox.entra import ApiCaller
from sandbox.state import SecretVersion
from tests.e2e.conftest import MAILBOXES, ROOT, Tenant

READ_WRITE = "Onboardings.ReadWrite"


class Operator:
    """Runs the CLI in a fresh process with only what an operator's shell would hold."""

    def __init__(self, tenant: Tenant, home: Path, identity: ApiCaller) -> None:
        env = tenant.sandbox.env
        self.tenant = tenant
        self.identity = identity
        self.outputs: list[str] = []
        self.base_env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(home),  # no token cache or az login of the machine's user
            "COLUMNS": "200",
            "SSL_CERT_FILE": env["SSL_CERT_FILE"],  # the sandbox's CA, as a laptop trusts the public ones
            "REQUESTS_CA_BUNDLE": env["SSL_CERT_FILE"],
            "MAILONBOARD_URL": tenant.host.base_url,
        }
        self.key_env = {"MAILONBOARD_FUNCTION_KEY": tenant.host.function_key}
        self.entra_env = {
            "AZURE_TENANT_ID": env["TENANT_ID"],
            "AZURE_CLIENT_ID": identity.client_id,
            "AZURE_CLIENT_SECRET": identity.client_secret,
            "AZURE_AUTHORITY_HOST": env["ENTRA_AUTHORITY_HOST"],
            "MAILONBOARD_DISABLE_INSTANCE_DISCOVERY": "true",
            # The sandbox's API app registration is known by its client id (its application ID URI).
            "MAILONBOARD_API_APP_ID_URI": env["API_CLIENT_ID"],
            "MAILONBOARD_VAULT_URL": env["KEY_VAULT_URI"],
        }
        self.secrets = [tenant.host.function_key, identity.client_secret]

    def run(self, *args: str, entra: bool = False) -> subprocess.CompletedProcess[str]:
        # Under the realistic profile the tenant's time moves only when a test moves it: while the
        # CLI waits in its own process, this one moves it to the host's next timer.
        with self.time_moving():
            return self._run(*args, entra=entra)

    @contextlib.contextmanager
    def time_moving(self) -> Iterator[None]:
        stop = threading.Event()

        def drive() -> None:
            while not stop.wait(0.2):
                self.tenant.skip_to_next_timer()

        driver = threading.Thread(target=drive, daemon=True)
        if self.tenant.drives_time:
            driver.start()
        try:
            yield
        finally:
            stop.set()
            if driver.is_alive():
                driver.join()

    def _run(self, *args: str, entra: bool = False) -> subprocess.CompletedProcess[str]:
        env = {**self.base_env, **(self.entra_env if entra else self.key_env)}
        done = subprocess.run(
            [sys.executable, "-m", "cli", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        self.outputs += [done.stdout, done.stderr]
        return done

    def json(self, *args: str, entra: bool = False) -> Any:
        done = self.run("--json", *args, entra=entra)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def printed_no_secret(self) -> bool:
        return not any(secret in text for secret in self.secrets for text in self.outputs)


def store_signing_key(tenant: Tenant) -> str:
    """What the deployment does (docs/deploy.md): LINK_SIGNING_KEY lives in the vault as
    ``link-signing-key`` and the app setting references it."""
    value = tenant.sandbox.env["LINK_SIGNING_KEY"]
    now = datetime.now(UTC)
    tenant.sandbox.state.put_secret(
        "link-signing-key", SecretVersion(version=uuid.uuid4().hex, value=value, created=now, updated=now)
    )
    return value


def test_operator_drives_a_whole_onboarding_its_day_2_and_reads_the_callback_key(
    tenant_factory: Callable[..., Tenant], tmp_path: Path
):
    # No overlap: the rotation removes the old credential as soon as the new one is verified.
    tenant = tenant_factory(extra_env={"ROTATION_OVERLAP_HOURS": "0"})
    operator = Operator(tenant, tmp_path, tenant.sandbox.api_caller(READ_WRITE, display_name="operator"))
    request = tmp_path / "request.json"
    request.write_text(json.dumps(tenant.request(externalReference="CHG-CLI-1", idempotencyKey="chg-cli-1")))

    # start, from a file; again with the same idempotency key: the same onboarding.
    accepted = operator.json("start", "--file", str(request))
    onboarding_id = accepted["id"]
    assert accepted["existing"] is False
    assert operator.json("start", "--file", str(request))["id"] == onboarding_id

    # show while the admin is asked: the steps table names the waiting step.
    tenant.wait_for_decision(f"/api/onboardings/{onboarding_id}")
    shown = operator.run("show", onboarding_id)
    assert shown.returncode == 0, shown.stderr
    assert any("Admin consent" in line and "waiting" in line for line in shown.stdout.splitlines()), (
        shown.stdout
    )

    # The admin decides in the browser (the CLI has no command for it); the operator waits.
    tenant.consent(accept=True)
    waited = operator.run("wait", onboarding_id, "--timeout", "120")
    assert waited.returncode == 0, waited.stderr
    assert "succeeded" in waited.stdout

    view = operator.json("show", onboarding_id)
    assert view["status"] == "succeeded"
    assert {step["state"] for step in view["steps"]} <= {"done", "skipped"}
    assert view["mailboxes"]["counts"] == {"verified": len(MAILBOXES)}

    # list, with the operator's Entra token instead of the key, filtered by the reference.
    listed = operator.json(
        "list", "--external-reference", "CHG-CLI-1", "--status", "succeeded", "--page-size", "1", entra=True
    )
    assert [(i["id"], i["status"]) for i in listed["items"]] == [(onboarding_id, "succeeded")]
    assert listed["continuationToken"] is None

    # cancel after the end: a conflict, on one line, with its exit code.
    cancelled = operator.run("cancel", onboarding_id)
    assert cancelled.returncode == 6
    assert cancelled.stderr.count("\n") == 1 and "409" in cancelled.stderr

    # The callback key: refused until the operator holds a role on the vault, then the same key the
    # app signs callbacks with.
    signing_key = store_signing_key(tenant)
    denied = operator.run("callback-key", entra=True)
    assert denied.returncode == 3
    assert "'Key Vault Secrets User' role" in denied.stderr and denied.stdout == ""
    tenant.sandbox.state.set_vault_role(operator.identity.object_id, catalog.VAULT_SECRETS_USER)
    if tenant.drives_time and tenant.clock is not None:
        # A new role assignment takes up to 10 minutes to reach Key Vault (the realistic profile's
        # vault_role_s); the operator tries again after that.
        tenant.clock.advance(timedelta(minutes=11))
    printed = operator.run("callback-key", entra=True)
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout.strip() == callback_key(signing_key.encode()).hex()

    # Day 2: the diagnosis finds every link working ...
    report = operator.json("diagnose", onboarding_id)
    assert report["status"] == "completed" and report["firstBroken"] is None
    assert [link["state"] for link in report["links"]] == ["ok"] * len(report["links"])
    # ... the secret is rotated: a new credential, verified, and the old one removed ...
    rotation = operator.json("rotate", onboarding_id)
    assert rotation["existing"] is False
    rotated = tenant.wait(
        f"/api/onboardings/{onboarding_id}",
        lambda v: (v.get("rotation") or {}).get("status") not in (None, "running"),
    )
    assert rotated["rotation"]["status"] == "succeeded", rotated["rotation"]
    [app] = tenant.live_apps()
    assert len(app.passwords) == 1  # only the new credential is left
    # ... a FullAccess removed behind the app's back is the first broken link, with its fix ...
    [registration] = tenant.sandbox.state.exchange_service_principals()
    mailbox = tenant.sandbox.state.find_mailbox(MAILBOXES[0])
    assert mailbox is not None
    tenant.sandbox.state.remove_mailbox_permission(mailbox, registration)
    broken = operator.run("diagnose", onboarding_id)
    assert broken.returncode == 11, broken.stderr
    assert "First broken link: mailbox_access" in broken.stdout
    # ... nothing needs a retry (a conflict, on one line) ...
    retried = operator.run("retry", onboarding_id)
    assert retried.returncode == 6 and "409" in retried.stderr
    # ... a mailbox taken off the app: FullAccess removed, its login refused afterwards ...
    removal = operator.json("mailboxes", onboarding_id, "--remove", MAILBOXES[1])
    assert removal["mailboxOperation"]["kind"] == "remove", removal
    done = tenant.wait(
        f"/api/onboardings/{onboarding_id}",
        lambda v: (v.get("mailboxOperation") or {}).get("status") not in (None, "running"),
    )
    assert done["mailboxOperation"]["status"] == "succeeded", done["mailboxOperation"]
    assert (MAILBOXES[1], registration.object_id) not in tenant.permissions()
    # ... and the offboarding removes everything the onboarding made.
    offboarded = operator.json("offboard", onboarding_id, "--yes")
    assert offboarded["offboarding"]["status"] == "succeeded", offboarded
    assert tenant.permissions() == set() and tenant.live_apps() == []
    assert tenant.sandbox.state.exchange_service_principals() == []

    assert operator.printed_no_secret()
