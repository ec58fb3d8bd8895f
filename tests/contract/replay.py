"""Replay a recorded exchange against the sandbox and say where the sandbox answers differently.

Compared: the status, the error code (Graph/Key Vault ``error.code``, OAuth ``error`` and
``error_codes``), the headers a client acts on (media type; presence of Retry-After, Location,
WWW-Authenticate), and the JSON shape (every key the real service sent must be there, at any depth;
values are not compared: ids, dates and redacted values differ by nature). Keys the sandbox sends on
top are not reported: documented examples are shortened ("truncated" in the Graph docs).
"""

from __future__ import annotations

import base64
import json
import re
import socket
from dataclasses import dataclass, field
from typing import Any

import httpx

from sandbox import Sandbox, SandboxConfig
from sandbox.catalog import EXCHANGE_APP_ID
from tests.contract.recording import REDACTED

CLIENT_APP = "contract replay client"
MAILBOX = "support@sandbox.example"
HEADER_PRESENCE = ("retry-after", "location", "www-authenticate")


@dataclass
class Target:
    """The sandbox objects a fixture's placeholders stand for."""

    sandbox: Sandbox
    values: dict[str, str] = field(default_factory=dict)
    client_secret: str = ""

    @classmethod
    def build(cls, sandbox: Sandbox) -> Target:
        state = sandbox.state
        with state.lock:  # owned by the function app's identity, as the apps it onboards are
            app = state.create_application({"displayName": CLIENT_APP}, owner=sandbox.identity.id)
            sp = state.create_service_principal(app, owner=sandbox.identity.id)
            secret = state.add_password(app, "replay", None, None).secret_text
        app_id, sp_id = app.app_id, sp.id
        exchange = state.find_service_principal(EXCHANGE_APP_ID)
        assert exchange is not None
        imap = state.role_by_value(exchange, "IMAP.AccessAsApp")
        env = sandbox.env
        values = {
            "{tenant}": sandbox.tenant_id,
            "{app_id}": app_id,
            "{sp_id}": sp_id,
            "{app_object_id}": app.id,
            "{exchange_app_id}": EXCHANGE_APP_ID,
            "{exchange_sp}": exchange.id,
            "{imap_role_id}": imap.id,
            "{mailbox}": MAILBOX,
            "{graph}": env["GRAPH_ENDPOINT"],
            "{exchange}": env["EXCHANGE_ENDPOINT"],
            "{keyvault}": env["KEY_VAULT_URI"].rstrip("/"),
            "{entra}": env["ENTRA_AUTHORITY_HOST"],
        }
        return cls(sandbox, values, secret)

    def fill(self, value: Any) -> Any:
        if isinstance(value, str):
            for placeholder, real in self.values.items():
                value = value.replace(placeholder, real)
            return value
        if isinstance(value, dict):
            return {k: self.fill(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.fill(v) for v in value]
        return value

    def base_url(self, service: str) -> str:
        return self.values["{" + service + "}"]

    def token_for(self, service: str) -> str:
        """The function app's managed identity token for the service, as the product would hold."""
        env = self.sandbox.env
        resource = self.base_url(service)
        response = httpx.get(
            env["IDENTITY_ENDPOINT"],
            params={"api-version": "2019-08-01", "resource": resource},
            headers={"X-IDENTITY-HEADER": env["IDENTITY_HEADER"]},
        )
        response.raise_for_status()
        return str(response.json()["access_token"])


def replay(fixture: dict[str, Any], target: Target) -> httpx.Response:
    request = fixture["request"]
    service = fixture["service"]
    headers = {k: v for k, v in target.fill(request.get("headers") or {}).items() if v != REDACTED}
    if any(k.lower() == "authorization" for k in request.get("headers") or {}):
        headers["Authorization"] = f"Bearer {target.token_for(service)}"
    body = target.fill(request.get("body"))
    kwargs: dict[str, Any] = {}
    if isinstance(body, dict) and "form" in body:
        form = dict(body["form"])
        if form.get("client_secret") == REDACTED:
            form["client_secret"] = target.client_secret
        kwargs["data"] = form
    elif body is not None:
        kwargs["content"] = json.dumps(body) if not isinstance(body, str) else body
        headers.setdefault("Content-Type", "application/json")
    return httpx.request(
        request["method"],
        target.base_url(service) + target.fill(request["path"]),
        params=target.fill(request.get("query") or {}),
        headers=headers,
        verify=target.sandbox.client_ssl_context(),
        timeout=30,
        **kwargs,
    )


def differences(recorded: dict[str, Any], replayed: httpx.Response) -> list[str]:
    """What the sandbox answered differently from the recorded response (empty: none)."""
    found: list[str] = []
    if recorded["status"] != replayed.status_code:
        found.append(f"status: recorded {recorded['status']}, sandbox {replayed.status_code}")
    recorded_headers = {k.lower(): v for k, v in (recorded.get("headers") or {}).items()}
    media = recorded_headers.get("content-type", "").split(";")[0].strip().lower()
    got_media = replayed.headers.get("content-type", "").split(";")[0].strip().lower()
    if media and media != got_media:
        found.append(f"header content-type: recorded {media}, sandbox {got_media or 'none'}")
    for name in HEADER_PRESENCE:
        if name in recorded_headers and name not in replayed.headers:
            found.append(f"header {name}: recorded, sandbox sent none")
    body = recorded.get("body")
    try:
        got = replayed.json() if replayed.content else None
    except ValueError:
        got = replayed.text
    for label, want, have in zip(
        ("error code", "error_codes"), _error_codes(body), _error_codes(got), strict=True
    ):
        if want is not None and want != have:
            found.append(f"{label}: recorded {want!r}, sandbox {have!r}")
    found.extend(f"missing key: {path}" for path in _missing_keys(body, got, ""))
    return found


def _error_codes(body: Any) -> tuple[Any, Any]:
    if not isinstance(body, dict) or "error" not in body:
        return None, None
    error = body["error"]
    code = error.get("code") if isinstance(error, dict) else error
    return code, body.get("error_codes")


def _missing_keys(want: Any, have: Any, path: str) -> list[str]:
    if isinstance(want, dict):
        if not isinstance(have, dict):
            return [path or "(body)"] if want else []
        missing: list[str] = []
        for key, value in want.items():
            here = f"{path}.{key}" if path else key
            if key not in have:
                missing.append(here)
            else:
                missing.extend(_missing_keys(value, have[key], here))
        return missing
    if isinstance(want, list) and want and isinstance(have, list) and have:
        return _missing_keys(want[0], have[0], path + "[]")
    return []


def check(fixture: dict[str, Any], sandbox: Sandbox) -> list[str]:
    """Replay one fixture on this sandbox; the differences not accepted in the fixture after review,
    and accepted ones that no longer occur (so the acceptance list stays true)."""
    target = Target.build(sandbox)
    if "transcript" in fixture:
        found = replay_session(fixture, target)
    else:
        found = differences(fixture["response"], replay(fixture, target))
    accepted = {a["difference"] for a in fixture.get("accepted_differences", [])}
    report = [d for d in found if d not in accepted]
    report += [f"accepted difference no longer occurs: {a}" for a in sorted(accepted - set(found))]
    return report


def fresh_sandbox(base_dir: Any, *, mail: bool = False) -> Sandbox:
    return Sandbox(SandboxConfig(base_dir=base_dir, start_mail=mail)).start()


# -- IMAP and POP sessions -------------------------------------------------------------------------
IMAP_STATUS = re.compile(r"^(\S+) (OK|NO|BAD|PREAUTH|BYE)\b", re.IGNORECASE)


def status_word(service: str, line: str, *, greeting: bool = False) -> str | None:
    """What a server line says: IMAP's tagged OK/NO/BAD (and the greeting's status), a continuation
    "+", POP's +OK/-ERR. None for data lines (untagged IMAP data, POP listings): servers differ there."""
    if service == "pop":
        if line.startswith(("+OK", "-ERR")):
            return line.split(" ", 1)[0].upper()
        return "+" if line.rstrip() == "+" else None
    if line.startswith("+"):
        return "+"
    m = IMAP_STATUS.match(line)
    if m is None or (m.group(1) == "*" and not greeting):
        return None
    return m.group(2).upper()


def sasl_response(target: Target) -> str:
    """What the redacted XOAUTH2 response stood for: the client app's token for Exchange."""
    sandbox = target.sandbox
    state = sandbox.state
    app_id, sp_id = target.values["{app_id}"], target.values["{sp_id}"]
    with state.lock:  # the app may log in: roles, registered in Exchange, FullAccess on the mailbox
        exchange = state.find_service_principal(EXCHANGE_APP_ID)
        assert exchange is not None
        for role in ("IMAP.AccessAsApp", "POP.AccessAsApp"):
            if state.find_assignment(sp_id, exchange.id, state.role_by_value(exchange, role).id) is None:
                state.add_assignment(sp_id, exchange, state.role_by_value(exchange, role).id)
        esp = next((e for e in state.exchange_sps() if e.object_id == sp_id), None)
        esp = esp or state.add_exchange_sp(app_id, sp_id, CLIENT_APP)
        box = state.find_mailbox(MAILBOX)
        assert box is not None
        state.add_mailbox_permission(box, esp, auto_mapping=False)
    token = sandbox.mint_token_for_tests(
        resource="exchange", roles=["IMAP.AccessAsApp", "POP.AccessAsApp"], app_id=app_id, object_id=sp_id
    )
    return base64.b64encode(f"user={MAILBOX}\x01auth=Bearer {token}\x01\x01".encode()).decode()


def replay_session(fixture: dict[str, Any], target: Target) -> list[str]:
    """Send the recorded client lines to the sandbox's Dovecot; compare the status of each answer."""
    service = fixture["service"]
    port = target.sandbox.ports[service]
    context = target.sandbox.client_ssl_context()
    found: list[str] = []
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        reader = tls.makefile("rb")
        # Every server greets first; a transcript may start with the greeting or leave it out.
        greeting: str | None = reader.readline().decode("utf-8", "replace").rstrip("\r\n")
        for index, entry in enumerate(fixture["transcript"]):
            if "client" in entry:
                greeting = None
                line = entry["client"]
                if REDACTED in line:
                    line = line.replace(REDACTED, sasl_response(target))
                tls.sendall(target.fill(line).encode() + b"\r\n")
                continue
            is_greeting = greeting is not None
            want = status_word(service, entry["server"], greeting=is_greeting)
            if want is None:
                continue  # data lines differ by server and are not compared
            got_line = greeting if is_greeting else _next_status_line(service, reader)
            greeting = None
            got = None if got_line is None else status_word(service, got_line, greeting=is_greeting)
            if got != want:
                found.append(
                    f"line {index}: recorded {want} ({entry['server']!r}), sandbox {got} ({got_line!r})"
                )
    return found


def _next_status_line(service: str, reader: Any) -> str | None:
    while True:
        raw = reader.readline()
        if not raw:
            return None
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        if status_word(service, line) is not None:
            return line
