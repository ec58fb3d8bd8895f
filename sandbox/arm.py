"""Azure Resource Manager stand-in: role assignments (``Microsoft.Authorization/roleAssignments``,
api-version 2022-04-01) on the vault and on its secrets, what azure-mgmt-authorization speaks.

``PUT``, ``GET`` and ``DELETE {scope}/providers/Microsoft.Authorization/roleAssignments/{name}``, with
ARM's error envelope ``{"error": {"code", "message"}}`` and the codes of docs/sandbox-facts.md (RA-1 to
RA-5). A secret-scoped assignment of Key Vault Secrets User is honoured by the Key Vault stand-in
(``TenantState.vault_allows``) once ``replication.vault_role_s`` has passed.
"""

from __future__ import annotations

import json
import re
from typing import Any

from aiohttp import web

from sandbox import catalog
from sandbox.state import RbacAssignment, TenantState
from sandbox.tokens import TokenError
from sandbox.web import CALLER_KEY, Unmodelled, make_app

API_VERSION = "2022-04-01"
ROUTE = "/{scope:.+}/providers/Microsoft.Authorization/roleAssignments/{name}"
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_ROLE_DEFINITION = re.compile(
    r"^/subscriptions/[^/]+/providers/Microsoft\.Authorization/roleDefinitions/(?P<guid>[0-9a-fA-F-]{36})$",
    re.IGNORECASE,
)
PRINCIPAL_TYPES = {"User", "Group", "ServicePrincipal", "ForeignGroup", "Device"}


class ArmError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def arm_error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


def _fault_body(status: int) -> web.Response:
    if status == 429:
        return arm_error(
            429,
            "TooManyRequests",
            "The request is being throttled as the limit has been reached for operation type.",
        )
    return arm_error(status, "InternalServerError", "Injected fault.")


class ResourceManager:
    def __init__(self, state: TenantState) -> None:
        self.state = state

    def app(self) -> web.Application:
        app = make_app("arm", self.state, self.state.faults.arm, _fault_body)
        for method, handler in (("PUT", self.put), ("GET", self.get), ("DELETE", self.delete)):
            app.router.add_route(method, ROUTE, self._guard(handler, method))
        return app

    def _guard(self, handler: Any, method: str) -> Any:
        async def guarded(request: web.Request) -> web.Response:
            header = request.headers.get("Authorization", "")
            if not header.lower().startswith("bearer "):
                return arm_error(
                    401,
                    "AuthenticationFailed",
                    "Authentication failed. The 'Authorization' header is missing.",
                )
            try:
                claims = self.state.issuer.verify(header[7:].strip(), audience=self.state.arm_resource)
            except TokenError:
                return arm_error(401, "InvalidAuthenticationToken", "The access token is invalid.")
            request[CALLER_KEY] = str(claims.get("appid", ""))
            version = request.query.get("api-version")
            if not version:
                return arm_error(
                    400,
                    "MissingApiVersionParameter",
                    "The api-version query parameter (?api-version=) is required for all requests.",
                )
            if version != API_VERSION:
                raise Unmodelled(f"api-version {version} of Microsoft.Authorization/roleAssignments")
            scope = "/" + request.match_info["scope"].strip("/")
            name = request.match_info["name"]
            self._check_scope(scope)
            try:
                if not _GUID.match(name):
                    raise ArmError(
                        400,
                        "InvalidRoleAssignmentId",
                        f"The role assignment ID '{name}' is not valid. The role assignment ID must be a GUID.",
                    )
                body = await self._body(request) if method == "PUT" else {}
                with self.state.lock:
                    response: web.Response = handler(str(claims.get("oid", "")), scope, name, body)
                    return response
            except ArmError as exc:
                return arm_error(exc.status, exc.code, exc.message)

        return guarded

    def _check_scope(self, scope: str) -> None:
        """Only the vault and its secrets are modelled; any other scope is a request the sandbox
        does not know the answer to."""
        vault = self.state.vault_resource_id.lower()
        lowered = scope.lower()
        if lowered == vault:
            return
        if lowered.startswith(vault + "/secrets/") and "/" not in lowered[len(vault) + 9 :]:
            return
        raise Unmodelled(f"role assignments at scope {scope}")

    @staticmethod
    async def _body(request: web.Request) -> dict[str, Any]:
        try:
            body = json.loads(await request.read() or b"{}")
        except ValueError:
            raise ArmError(
                400, "InvalidRequestContent", "The request content was invalid and could not be deserialized."
            ) from None
        return body if isinstance(body, dict) else {}

    @staticmethod
    def _denied(caller: str, action: str, scope: str, name: str) -> ArmError:
        return ArmError(
            403,
            "AuthorizationFailed",
            f"The client '{caller}' with object id '{caller}' does not have authorization or an ABAC condition "
            f"not fulfilled to perform action 'Microsoft.Authorization/roleAssignments/{action}' over scope "
            f"'{scope}/providers/Microsoft.Authorization/roleAssignments/{name}' or the scope is invalid. "
            "If access was recently granted, please refresh your credentials.",
        )

    def _json(self, a: RbacAssignment) -> dict[str, Any]:
        stamp = a.created_at.isoformat().replace("+00:00", "Z")
        return {
            "properties": {
                "roleDefinitionId": a.role_definition_id,
                "principalId": a.principal_id,
                "principalType": a.principal_type or "ServicePrincipal",
                "scope": a.scope,
                "condition": None,
                "conditionVersion": None,
                "createdOn": stamp,
                "updatedOn": stamp,
                "createdBy": None,
                "updatedBy": a.updated_by,
                "delegatedManagedIdentityResourceId": None,
                "description": None,
            },
            "id": a.id,
            "type": "Microsoft.Authorization/roleAssignments",
            "name": a.name,
        }

    # ------------------------------------------------------------ handlers
    def put(self, caller: str, scope: str, name: str, body: dict[str, Any]) -> web.Response:
        given = body.get("properties")
        props: dict[str, Any] = given if isinstance(given, dict) else {}
        role_definition_id = str(props.get("roleDefinitionId") or "")
        principal_id = str(props.get("principalId") or "")
        principal_type = props.get("principalType")
        match = _ROLE_DEFINITION.match(role_definition_id)
        if match is None or match["guid"].lower() not in catalog.VAULT_ROLE_DEFINITION_IDS:
            raise ArmError(
                400 if match is None else 404,
                "InvalidRoleDefinitionId" if match is None else "RoleDefinitionDoesNotExist",
                f"The specified role definition with ID '{role_definition_id.rsplit('/', 1)[-1]}' does not exist."
                if match
                else f"The role definition ID '{role_definition_id}' is not valid.",
            )
        if not _GUID.match(principal_id):
            raise ArmError(
                400, "InvalidPrincipalId", "A valid principal ID must be provided for role assignment."
            )
        if principal_type is not None and principal_type not in PRINCIPAL_TYPES:
            raise ArmError(
                400, "InvalidRequestContent", f"The principal type '{principal_type}' is not valid."
            )
        if not self.state.may_assign(caller, match["guid"]):
            raise self._denied(caller, "write", scope, name)
        # With principalType set ARM skips the directory lookup (RA-3); without it, a principal the
        # replica does not see yet (or at all) is refused.
        if principal_type is None:
            sp = self.state.get_service_principal(principal_id)
            if sp is None:
                raise ArmError(
                    400,
                    "PrincipalNotFound",
                    f"Principal {principal_id.replace('-', '')} does not exist in the directory "
                    f"{self.state.tenant_id}. Check that you have the correct principal ID. If you are creating "
                    "this principal and then immediately assigning a role, this error might be related to a "
                    "replication delay. In this case, set the role assignment principalType property to a value, "
                    "such as ServicePrincipal, User, or Group.  See https://aka.ms/docs-principaltype",
                )
        same = self.state.rbac_assignments_matching(scope, principal_id, match["guid"])
        existing = self.state.rbac_assignment(name)
        if existing is not None and existing.name not in {a.name for a in same}:
            raise ArmError(
                400,
                "RoleAssignmentUpdateNotPermitted",
                "Tenant ID, application ID, principal ID, and scope are not allowed to be updated.",
            )
        if same:
            # Also for the same name: PUT of an identical assignment is not idempotent (RA-2).
            raise ArmError(409, "RoleAssignmentExists", "The role assignment already exists.")
        assignment = RbacAssignment(
            name=name.lower(),
            scope=scope,
            role_definition_id=role_definition_id,
            principal_id=principal_id.lower(),
            principal_type=principal_type,
            created_at=self.state.now(),
            updated_by=caller,
        )
        self.state.put_rbac_assignment(assignment)
        return web.json_response(self._json(assignment), status=201)

    def get(self, caller: str, scope: str, name: str, body: dict[str, Any]) -> web.Response:
        if not self.state.may_read_assignments(caller):
            raise ArmError(
                403,
                "AuthorizationFailed",
                f"The client '{caller}' with object id '{caller}' does not have authorization to perform action "
                f"'Microsoft.Authorization/roleAssignments/read' over scope '{scope}' or the scope is invalid.",
            )
        found = self.state.rbac_assignment(name)
        if found is None or found.scope.lower() != scope.lower():
            raise ArmError(404, "RoleAssignmentNotFound", f"The role assignment '{name}' is not found.")
        return web.json_response(self._json(found))

    def delete(self, caller: str, scope: str, name: str, body: dict[str, Any]) -> web.Response:
        found = self.state.rbac_assignment(name)
        if found is None or found.scope.lower() != scope.lower():
            if not self.state.may_read_assignments(caller):
                raise self._denied(caller, "delete", scope, name)
            return web.Response(status=204)
        if not self.state.may_assign(caller, found.role_guid):
            raise self._denied(caller, "delete", scope, name)
        self.state.delete_rbac_assignment(name)
        return web.json_response(self._json(found))
