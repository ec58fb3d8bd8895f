"""`make demo`: a real onboarding of three mailboxes, on the sandbox tenant and the local host.

What happens is what happens in Azure: an HTTP request starts the orchestration, the consent email
lands in the (sandbox) outbox, a tenant admin follows its link and accepts on the (sandbox) Entra
consent page, the workflow finishes, and a mail client reads the secret from Key Vault and logs in
over IMAP and POP3.
"""

from __future__ import annotations

import argparse
import os
import ssl
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from demo.admin import Admin, link_in

ROOT = Path(__file__).resolve().parent.parent
MAILBOXES = ["support@sandbox.example", "sales@sandbox.example", "billing@sandbox.example"]
ADMIN = "it-admin@sandbox.example"


def say(text: str) -> None:
    print(text, flush=True)


class Progress:
    """Prints each step once, when its state changes."""

    def __init__(self) -> None:
        self.seen: dict[str, str] = {}

    def show(self, view: dict[str, Any]) -> None:
        for step in view.get("steps", []):
            key = f"{step['state']}|{step['detail']}"
            if step["state"] != "pending" and self.seen.get(step["name"]) != key:
                self.seen[step["name"]] = key
                detail = f" - {step['detail']}" if step["detail"] else ""
                say(f"  [{step['state']:>11}] {step['title']}{detail}")


def wait_until(
    http: httpx.Client, location: str, progress: Progress, done: Any, timeout: float
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        view = http.get(location).json()
        progress.show(view)
        if done(view):
            return view
        if time.monotonic() > deadline:
            raise TimeoutError(f"onboarding did not reach the expected state; last status {view['status']}")
        time.sleep(0.3)


def wait_for_mail(sandbox: Any, app_id: str, timeout: float = 30) -> Any:
    """The consent email about this app, once it has landed in the sandbox outbox."""
    give_up = time.monotonic() + timeout
    while True:
        mails = [m for m in sandbox.state.outbox() if ADMIN in m.to and app_id in m.html]
        if mails:
            return mails[0]
        if time.monotonic() > give_up:
            raise TimeoutError(f"no consent email about app {app_id}")
        time.sleep(0.1)


def mail_client_check(env: dict[str, str], secret_name: str, mailboxes: list[str]) -> list[str]:
    """What the mail product does with the hand-off (demo/mail_client.py, docs/client.md):
    Key Vault -> token -> IMAP/POP XOAUTH2."""
    from azure.identity import ManagedIdentityCredential

    from demo import mail_client

    with ManagedIdentityCredential(client_id=env["AZURE_CLIENT_ID"]) as identity:
        # The sandbox vault is an IP literal, which cannot match the challenge's resource domain.
        handoff = mail_client.read_handoff(
            env["KEY_VAULT_URI"], secret_name, identity, verify_challenge_resource=False
        )
    token = mail_client.app_token(handoff, disable_instance_discovery=True)
    tls = ssl.create_default_context(cafile=env["SSL_CERT_FILE"])
    assert handoff.imap is not None and handoff.pop is not None  # the demo asks for both
    lines = []
    for mailbox in mailboxes:
        in_inbox = mail_client.imap_select_inbox(handoff.imap, mailbox, token, tls)
        count, _size = mail_client.pop_stat(handoff.pop, mailbox, token, tls)
        lines.append(
            f"  {mailbox}: IMAP login ok ({in_inbox} messages in INBOX), POP3 login ok ({count} messages)"
        )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="keep the sandbox directory afterwards")
    args = parser.parse_args()

    from funchost import LocalHost, ReservedPort
    from sandbox import Sandbox, SandboxConfig

    workdir = Path(tempfile.mkdtemp(prefix="mail-onboarding-demo-"))
    say("Starting the sandbox tenant (Entra ID, Graph, Exchange admin API, Key Vault, Dovecot) ...")
    started = time.monotonic()
    with Sandbox(SandboxConfig(base_dir=workdir / "sandbox", mailboxes=MAILBOXES)) as sandbox:
        say(f"  up in {time.monotonic() - started:.2f} s; tenant {sandbox.env['TENANT_ID']}")
        reserved = ReservedPort()  # the host binds beside it; nothing else takes it in between
        port = reserved.port
        env = {**sandbox.env, "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}", "POLL_INITIAL_SECONDS": "1"}
        os.environ.update(env)
        sandbox.allow_signin_redirect(env["PUBLIC_BASE_URL"])  # the sign-in app's redirect URI
        say("Starting the local Functions host on function_app.py ...")
        host = LocalHost(
            ROOT,
            db_path=workdir / "hub.db",
            port=port,
            reuse_port=True,
            function_key=env["API_FUNCTION_KEY"],  # the deployment makes them one key (docs/deploy.md)
        )
        with reserved, host:
            http = httpx.Client(
                base_url=host.base_url, headers={"x-functions-key": host.function_key}, timeout=30
            )
            request = {
                "tenantId": env["TENANT_ID"],
                "displayName": "Helpdesk mail connector",
                "protocols": ["IMAP", "POP"],
                "mailboxes": MAILBOXES,
                "adminEmails": [ADMIN],
                "externalReference": "TICKET-1042",
            }
            say(f"POST /api/onboardings for {len(MAILBOXES)} mailboxes")
            response = http.post("/api/onboardings", json=request)
            response.raise_for_status()
            location = response.headers["location"]
            say(f"  {response.status_code} Accepted, Location: {location}")
            progress = Progress()
            view = wait_until(http, location, progress, lambda v: v.get("waitingFor") is not None, 60)
            mail = wait_for_mail(sandbox, view["app"]["appId"])
            say(f"Email to {ADMIN}: {mail.subject!r}")
            user = sandbox.people.users[ADMIN]
            admin = Admin(env["SSL_CERT_FILE"], login=user.user_principal_name, password=user.password)
            admin.open(link_in(mail.html, "consent-link"))
            say("  the admin opens the consent link: Entra's page lists the permissions; Accept")
            admin.press("accept")
            say("  redirected to the project's page: the admin signs in with Entra ID (Cloud Application")
            say("  Administrator), sees every mailbox and confirms the list")
            admin.press("confirm")
            admin.close()

            view = wait_until(
                http, location, progress, lambda v: v["status"] not in ("running", "waiting"), 120
            )
            say(f"Onboarding {view['status']}:")
            say(f"  app (client) id {view['app']['appId']}")
            say(
                f"  secret in Key Vault: {view['secret']['secretUri']} (expires {view['secret']['expiresOn']})"
            )
            for item in view["mailboxes"].get("results", []):
                say(f"  {item['mailbox']}: {item['state']} {item['detail']}")
            if view["status"] != "succeeded":
                return 1
            say("A mail client with the hand-off (Key Vault -> token -> XOAUTH2):")
            for line in mail_client_check(env, view["secret"]["name"], MAILBOXES):
                say(line)
    if not args.keep:
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)
    say("Done.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
