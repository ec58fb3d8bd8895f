"""Exchange Online admin API stand-in: the REST ``InvokeCommand`` endpoint the ExchangeOnlineManagement
v3 module uses, with the cmdlets onboarding needs, per-caller throttling and Exchange's error shape."""

from __future__ import annotations

import asyncio
import json
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from sandbox import catalog
from sandbox.state import ExchangeServicePrincipal, Mailbox, TenantState
from sandbox.tokens import TokenError
from sandbox.web import CALLER_KEY, Unmodelled, make_app

SERVER = "SANDBOX01MB0001.PROD.OUTLOOK.COM"
NOT_FOUND = "Microsoft.Exchange.Configuration.Tasks.ManagementObjectNotFoundException"
BINDING = "System.Management.Automation.ParameterBindingException"
ODATA_EXCEPTION = "Microsoft.Exchange.Admin.OData.Core.ODataServiceException"
INVALID_OPERATION = "Invalid Operation"
ADMIN_ROLES = {catalog.EXCHANGE_ADMINISTRATOR, catalog.GLOBAL_ADMINISTRATOR}
RECIPIENT_ROLES = ADMIN_ROLES | {catalog.EXCHANGE_RECIPIENT_ADMINISTRATOR}


class CmdletError(Exception):
    def __init__(self, exception_type: str, message: str) -> None:
        super().__init__(message)
        self.exception_type, self.message = exception_type, message


ALREADY_EXISTS = "Microsoft.Exchange.Data.Directory.ADObjectAlreadyExistsException"
# Exceptions whose ``details[].message`` captured bodies show as a JSON string rather than as
# ``ExNNNN|Type|text``, with no ``internalException`` (docs/sandbox-facts.md, issue 15 item 4).
JSON_DETAIL_TYPES = frozenset({NOT_FOUND, ALREADY_EXISTS})
EXECUTING = "Error executing cmdlet"
# $batch (docs/sandbox-facts.md EX-11): CIPP-API New-ExoBulkRequest's batch size, its preference, and
# the inner request headers it sends (the ones with a meaning here; the rest would be unmodelled).
BATCH_LIMIT = 10
CONTINUE_ON_ERROR = "odata.continue-on-error"
INNER_HEADERS = frozenset({"authorization", "x-anchormailbox", "content-type", "accept"})


def exchange_error(status: int, code: str, exception_type: str, message: str) -> web.Response:
    """``error_body`` as an HTTP response."""
    return web.json_response(error_body(status, code, exception_type, message), status=status)


def error_body(status: int, code: str, exception_type: str, message: str) -> dict[str, Any]:
    """Exchange's error envelope as captured (docs/sandbox-facts.md EX-3). A cmdlet's refusal (400)
    says only "Invalid Operation" at the top; its text is in ``details[].message``
    (``ExNNNNNN|Type|text``) and in ``innererror.internalexception`` (lower-case "e", as sent), except
    for the exceptions captured with a JSON-string detail and no inner exception (issue 15 item 4).
    Other statuses carry the text in ``message`` and an ``innererror`` without an inner exception,
    as the captured 401 does."""
    if exception_type in JSON_DETAIL_TYPES:
        detail = {"Message": message, "TypeName": exception_type, "StackTrace": None, "InnerError": None}
        return {
            "error": {
                "code": code,
                "message": EXECUTING,
                "details": [{"code": "Context", "target": "", "message": json.dumps(detail)}],
                "innererror": {"message": EXECUTING, "type": "ODataServiceException"},
            }
        }
    if status != 400:
        inner = {"message": message, "type": ODATA_EXCEPTION}
        return {"error": {"code": code, "message": message, "innererror": inner}}
    tag = "Ex" + secrets.token_hex(3).upper()
    return {
        "error": {
            "code": code,
            "message": INVALID_OPERATION,
            "details": [{"code": "Client", "target": "", "message": f"{tag}|{exception_type}|{message}"}],
            "innererror": {
                "message": INVALID_OPERATION,
                "type": ODATA_EXCEPTION,
                "stacktrace": "",
                "internalexception": {"message": message, "type": exception_type, "stacktrace": ""},
            },
            "adminapi.warnings@odata.type": "#Collection(String)",
            "@adminapi.warnings": [],
        }
    }


def _fault_body(status: int) -> web.Response:
    if status == 429:
        return exchange_error(429, "TooManyRequests", "Microsoft.Exchange.Throttling", "Too many requests.")
    return exchange_error(status, "InternalServerError", "Microsoft.Exchange.Transient", "Injected fault.")


def not_found(identity: str) -> CmdletError:
    return CmdletError(
        NOT_FOUND,
        f"The operation couldn't be performed because object '{identity}' couldn't be found on '{SERVER}'.",
    )


def service_principal_not_found(object_id: str) -> CmdletError:
    # The prefix up to the quoted id is the sourced form; the words after it are not published.
    return CmdletError(
        "Microsoft.Exchange.Management.Tasks.ServicePrincipalNotFoundException",
        f"AADServicePrincipalNotFound. No ServicePrincipal with Object Id '{object_id}' is registered in "
        "the organization's directory.",
    )


def _flag(value: Any) -> bool:
    return value is True or str(value).strip().lower() in {"true", "$true", "1"}


@dataclass
class Call:
    app_id: str
    oid: str
    wids: frozenset[str]
    warnings: list[str]


Cmdlet = Callable[[Call, dict[str, Any]], list[dict[str, Any]]]


class Exchange:
    def __init__(self, state: TenantState, *, base_url: str) -> None:
        self.state = state
        self.base = base_url.rstrip("/")
        self.cmdlets: dict[str, tuple[set[str], Cmdlet]] = {
            "new-serviceprincipal": (ADMIN_ROLES, self.new_service_principal),
            "get-serviceprincipal": (ADMIN_ROLES, self.get_service_principal),
            "remove-serviceprincipal": (ADMIN_ROLES, self.remove_service_principal),
            "add-mailboxpermission": (RECIPIENT_ROLES, self.add_mailbox_permission),
            "get-mailboxpermission": (RECIPIENT_ROLES, self.get_mailbox_permission),
            "remove-mailboxpermission": (RECIPIENT_ROLES, self.remove_mailbox_permission),
            "get-casmailbox": (RECIPIENT_ROLES, self.get_cas_mailbox),
            "set-casmailbox": (RECIPIENT_ROLES, self.set_cas_mailbox),
            "get-mailbox": (RECIPIENT_ROLES, self.get_mailbox),
        }

    def app(self) -> web.Application:
        app = make_app("exchange", self.state, self.state.faults.exchange, _fault_body, handles_latency=True)
        app.router.add_post("/adminapi/beta/{tenant}/InvokeCommand", self.invoke)
        app.router.add_post("/adminapi/beta/{tenant}/$batch", self.batch)
        return app

    def _caller(self, request: web.Request) -> Call | web.Response:
        """The authenticated caller of a request to this tenant, or the refusal to send."""
        state = self.state
        header = request.headers.get("Authorization", "")
        try:
            claims = state.issuer.verify(header[7:].strip(), audience=state.exchange_resource)
            if not header.lower().startswith("bearer "):
                raise TokenError("no bearer token")
        except TokenError:
            response = exchange_error(
                401, "Unauthorized", ODATA_EXCEPTION, "The access token is missing, invalid or expired."
            )
            response.headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
            return response
        call = Call(
            str(claims.get("appid", "")), str(claims.get("oid", "")), frozenset(claims.get("wids") or []), []
        )
        request[CALLER_KEY] = call.app_id
        if "Exchange.ManageAsApp" not in (claims.get("roles") or []):
            return exchange_error(
                403,
                "Forbidden",
                "Microsoft.Exchange.Security.Authorization",
                "The application does not have the Exchange.ManageAsApp permission.",
            )
        if request.match_info["tenant"].lower() not in {state.tenant_id, state.domain.lower()}:
            return exchange_error(404, "NotFound", "Microsoft.Exchange.Data.Directory", "Tenant not found.")
        return call

    def _throttled(self, call: Call, cmdlets: int) -> web.Response | None:
        """Take ``cmdlets`` from the caller's budget, or the 429 to send (then nothing runs)."""
        wait = self.state.faults.exchange_throttle.acquire(call.app_id, cmdlets)
        if wait is None:
            return None
        response = exchange_error(
            429,
            "TooManyRequests",
            "Microsoft.Exchange.Throttling",
            "The request was throttled: too many concurrent or recent requests for this application.",
        )
        response.headers["Retry-After"] = str(int(wait)) if float(wait).is_integer() else f"{wait:g}"
        return response

    async def _latency(self) -> None:
        latency = self.state.faults.exchange.latency_ms
        if latency > 0:
            await asyncio.sleep(latency / 1000)

    async def invoke(self, request: web.Request) -> web.Response:
        call = self._caller(request)
        if isinstance(call, web.Response):
            return call
        refused = self._throttled(call, 1)
        if refused is not None:
            return refused
        try:
            await self._latency()
            try:
                payload = json.loads(await request.read() or b"{}")
            except ValueError:
                payload = None
            status, body = self.run_cmdlet(call, request.match_info["tenant"], payload)
            return web.json_response(body, status=status)
        finally:
            self.state.faults.exchange_throttle.release(call.app_id, 1)

    def run_cmdlet(self, call: Call, tenant: str, payload: Any) -> tuple[int, dict[str, Any]]:
        """One InvokeCommand body's answer: its status and JSON body (alone or inside a batch)."""
        try:
            cmdlet_input = payload["CmdletInput"]
            name = str(cmdlet_input["CmdletName"])
            parameters = dict(cmdlet_input.get("Parameters") or {})
        except (KeyError, TypeError, ValueError):
            return 400, error_body(
                400, "BadRequest", "Microsoft.Exchange.Admin.OData", "Invalid CmdletInput."
            )
        found = self.cmdlets.get(name.lower())
        if found is None or not call.wids & found[0]:
            return 400, error_body(
                400,
                "BadRequest",
                "System.Management.Automation.CommandNotFoundException",
                f"The term '{name}' is not recognized as the name of a cmdlet, function, script file, or "
                "operable program.",
            )
        state = self.state
        injected = state.faults.cmdlet_failure(name, str(parameters.get("Identity") or ""))
        if injected is not None:
            return 400, error_body(400, "BadRequest", *injected)
        call.warnings = []
        try:
            with state.lock:
                value = found[1](call, parameters)
        except CmdletError as exc:
            return 400, error_body(400, "BadRequest", exc.exception_type, exc.message)
        return 200, self.envelope(tenant, value, call.warnings)

    async def batch(self, request: web.Request) -> web.Response:
        """``$batch``: up to 10 InvokeCommand requests in one (docs/sandbox-facts.md EX-11). Modelled
        conservatively: every inner cmdlet takes its share of the caller's throttling budget, and a
        batch the budget cannot take whole is refused whole (429 + Retry-After, nothing runs). The
        cmdlets of an admitted batch run side by side: one latency for the batch. Each answer is the
        status and body the same InvokeCommand request would have had alone."""
        call = self._caller(request)
        if isinstance(call, web.Response):
            return call
        tenant = request.match_info["tenant"]
        requests = self._batch_requests(request, await request.read(), tenant)
        refused = self._throttled(call, len(requests))
        if refused is not None:
            return refused
        try:
            await self._latency()
            responses = []
            for item in requests:
                status, body = self.run_cmdlet(call, tenant, item.get("body"))
                responses.append(
                    {
                        "id": item["id"],
                        "status": status,
                        "headers": {"Content-Type": "application/json"},
                        "body": body,
                    }
                )
            return web.json_response({"responses": responses})
        finally:
            self.state.faults.exchange_throttle.release(call.app_id, len(requests))

    def _batch_requests(self, request: web.Request, raw: bytes, tenant: str) -> list[dict[str, Any]]:
        """The inner requests, or ``Unmodelled`` for any form the sandbox has no source for."""
        if CONTINUE_ON_ERROR not in request.headers.get("Prefer", "").replace(" ", "").lower().split(";"):
            raise Unmodelled("a $batch without Prefer: odata.continue-on-error (stop on the first error)")
        try:
            requests = json.loads(raw or b"{}")["requests"]
        except (ValueError, KeyError, TypeError):
            raise Unmodelled("a $batch body without a requests list") from None
        if not isinstance(requests, list) or not 1 <= len(requests) <= BATCH_LIMIT:
            raise Unmodelled(f"a $batch of other than 1 to {BATCH_LIMIT} requests")
        invoke_path = f"/adminapi/beta/{tenant}/InvokeCommand"
        ids: set[str] = set()
        for item in requests:
            if not isinstance(item, dict) or not isinstance(item.get("id"), str) or item["id"].lower() in ids:
                raise Unmodelled("a $batch request without a string id unique in the batch")
            ids.add(item["id"].lower())
            url = urlsplit(str(item.get("url", "")))
            if str(item.get("method", "")).upper() != "POST" or url.path != invoke_path or url.query:
                raise Unmodelled("a $batch request other than POST InvokeCommand (no query options)")
            headers = item.get("headers") or {}
            unknown = sorted(h for h in headers if str(h).lower() not in INNER_HEADERS)
            if not isinstance(headers, dict) or unknown:
                raise Unmodelled(f"the $batch request header(s) {', '.join(map(str, unknown))}")
        return requests

    # ------------------------------------------------------------ helpers
    def envelope(self, tenant: str, value: list[dict[str, Any]], warnings: list[str]) -> dict[str, Any]:
        """A successful InvokeCommand answer as Exchange sends it (docs/sandbox-facts.md EX-2): the
        context names the tenant as the URL did, and the warnings list is always there, typed."""
        return {
            "@odata.context": f"{self.base}/adminapi/beta/{tenant}/$metadata#Collection(Exchange.GenericHashTable)",
            "adminapi.warnings@odata.type": "#Collection(String)",
            "@adminapi.warnings": list(warnings),
            "value": value,
        }

    @staticmethod
    def _required(parameters: dict[str, Any], *names: str) -> list[str]:
        missing = [n for n in names if not str(parameters.get(n, "")).strip()]
        if missing:
            raise CmdletError(
                BINDING,
                f"Cannot process command because of one or more missing mandatory parameters: {' '.join(missing)}.",
            )
        return [str(parameters[n]).strip() for n in names]

    def _mailbox(self, identity: str) -> Mailbox:
        box = self.state.find_mailbox(identity)
        if box is None:
            raise not_found(identity)
        return box

    def _esp(self, identity: str) -> ExchangeServicePrincipal:
        esp = self.state.find_exchange_sp(identity)
        if esp is None:
            raise not_found(identity)
        return esp

    @staticmethod
    def esp_json(esp: ExchangeServicePrincipal) -> dict[str, Any]:
        # The documented output names only (docs/sandbox-facts.md): Identity is the Entra service
        # principal's object id (what Add-MailboxPermission -User takes), ServiceId its older name.
        # No ObjectId property: nothing public shows one, so the product must not need it.
        return {
            "AppId": esp.app_id,
            "ServiceId": esp.object_id,
            "DisplayName": esp.display_name,
            "Identity": esp.object_id,
            "Organization": "sandbox",
            "WhenCreatedUTC": esp.created_at.isoformat(),
        }

    # ------------------------------------------------------------ service principals
    def new_service_principal(self, call: Call, p: dict[str, Any]) -> list[dict[str, Any]]:
        app_id, object_id = self._required(p, "AppId", "ObjectId")
        state = self.state
        # Exchange reads the directory through its own copy: a service principal it has not caught up
        # with yet, and an id that is not this app's service principal (the app registration's object
        # id, the classic mistake), get the same answer (docs/sandbox-facts.md, issue 15).
        sp = state.get_service_principal(object_id, visible_only=False)
        if (
            sp is None
            or sp.app_id.lower() != app_id.lower()
            or not state.service_principal_visible_to_exchange(sp)
        ):
            raise service_principal_not_found(object_id)
        if state.find_exchange_sp(object_id) is not None or state.find_exchange_sp(app_id) is not None:
            raise CmdletError(
                ALREADY_EXISTS,
                f"A service principal with AppId '{app_id}' already exists.",
            )
        display = str(p.get("DisplayName") or sp.display_name)
        return [self.esp_json(state.add_exchange_sp(sp.app_id, sp.id, display))]

    def get_service_principal(self, call: Call, p: dict[str, Any]) -> list[dict[str, Any]]:
        identity = str(p.get("Identity") or "").strip()
        if identity:
            return [self.esp_json(self._esp(identity))]
        return [self.esp_json(e) for e in self.state.exchange_sps()]

    def remove_service_principal(self, call: Call, p: dict[str, Any]) -> list[dict[str, Any]]:
        (identity,) = self._required(p, "Identity")
        self.state.remove_exchange_sp(self._esp(identity))
        return []

    # ------------------------------------------------------------ mailbox permissions
    @staticmethod
    def _rights(p: dict[str, Any]) -> None:
        rights = p.get("AccessRights", "FullAccess")
        values = rights if isinstance(rights, list) else [rights]
        if [str(v).lower() for v in values] != ["fullaccess"]:
            raise CmdletError(BINDING, "Only AccessRights FullAccess is supported by this Exchange stand-in.")

    def _permission_json(self, box: Mailbox, user: str, rights: list[str]) -> dict[str, Any]:
        return {
            "Identity": box.display_name,
            "User": user,
            "AccessRights": rights,
            "IsInherited": False,
            "Deny": False,
            "InheritanceType": "All",
            "IsValid": True,
        }

    def add_mailbox_permission(self, call: Call, p: dict[str, Any]) -> list[dict[str, Any]]:
        identity, user = self._required(p, "Identity", "User")
        self._rights(p)
        box = self._mailbox(identity)
        esp = self._esp(user)
        if any(perm.user == esp.object_id for perm in self.state.permissions_on(box)):
            call.warnings.append(f"An existing permission entry was found for user: {esp.display_name}.")
            return []
        self.state.add_mailbox_permission(box, esp, auto_mapping=_flag(p.get("AutoMapping", False)))
        return [self._permission_json(box, esp.display_name, ["FullAccess"])]

    def get_mailbox_permission(self, call: Call, p: dict[str, Any]) -> list[dict[str, Any]]:
        (identity,) = self._required(p, "Identity")
        box = self._mailbox(identity)
        user = str(p.get("User") or "").strip()
        only = self._esp(user) if user else None
        out = (
            [] if only else [self._permission_json(box, "NT AUTHORITY\\SELF", ["FullAccess, ReadPermission"])]
        )
        for perm in self.state.permissions_on(box):
            esp = self.state.find_exchange_sp(perm.user)
            if esp is None or (only is not None and only.object_id != esp.object_id):
                continue
            out.append(self._permission_json(box, esp.display_name, list(perm.access_rights)))
        return out

    def remove_mailbox_permission(self, call: Call, p: dict[str, Any]) -> list[dict[str, Any]]:
        identity, user = self._required(p, "Identity", "User")
        self._rights(p)
        box = self._mailbox(identity)
        esp = self._esp(user)
        if not self.state.remove_mailbox_permission(box, esp):
            call.warnings.append(
                f"Can't remove the access control entry on the object '{box.display_name}' for account "
                f"'{esp.display_name}' because the ACE doesn't exist on the object."
            )
        return []

    # ------------------------------------------------------------ mailboxes
    def _boxes(self, p: dict[str, Any]) -> list[Mailbox]:
        identity = str(p.get("Identity") or "").strip()
        return [self._mailbox(identity)] if identity else self.state.all_mailboxes()

    def get_cas_mailbox(self, call: Call, p: dict[str, Any]) -> list[dict[str, Any]]:
        return [
            {
                "Identity": b.display_name,
                "Name": b.display_name,
                "PrimarySmtpAddress": b.address,
                "ImapEnabled": b.imap_enabled,
                "PopEnabled": b.pop_enabled,
                "EwsEnabled": True,
                "ActiveSyncEnabled": True,
                "OWAEnabled": True,
                "MAPIEnabled": True,
                "ExternalDirectoryObjectId": b.id,
                "Guid": str(uuid.uuid5(uuid.NAMESPACE_URL, b.address.lower())),
            }
            for b in self._boxes(p)
        ]

    def set_cas_mailbox(self, call: Call, p: dict[str, Any]) -> list[dict[str, Any]]:
        (identity,) = self._required(p, "Identity")
        box = self._mailbox(identity)
        self.state.set_protocols(
            box.address,
            imap=_flag(p["ImapEnabled"]) if "ImapEnabled" in p else None,
            pop=_flag(p["PopEnabled"]) if "PopEnabled" in p else None,
        )
        return []

    def get_mailbox(self, call: Call, p: dict[str, Any]) -> list[dict[str, Any]]:
        return [
            {
                "Identity": b.display_name,
                "Name": b.display_name,
                "DisplayName": b.display_name,
                "Alias": b.address.split("@")[0],
                "PrimarySmtpAddress": b.address,
                "UserPrincipalName": b.address,
                "RecipientTypeDetails": "UserMailbox",
                "ExternalDirectoryObjectId": b.id,
                "Guid": str(uuid.uuid5(uuid.NAMESPACE_URL, b.address.lower())),
            }
            for b in self._boxes(p)
        ]
