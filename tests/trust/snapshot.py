"""What the sandbox tenant holds, as comparable values: two snapshots are equal when the tenant holds
the same objects (apps, credentials, service principals, grants, Exchange registrations and
permissions, vault secrets and their versions, Azure role assignments). Emails and the request log are left out: they record
that something happened, not what the tenant holds."""

from __future__ import annotations

from typing import Any

from sandbox import Sandbox


def snapshot(sandbox: Sandbox) -> dict[str, Any]:
    state = sandbox.state
    return {
        "apps": sorted(
            (
                a.id,
                a.app_id,
                a.unique_name,
                a.deleted_at is not None,
                tuple(sorted(p.key_id for p in a.passwords)),
                tuple(a.redirect_uris),
                tuple(a.tags),
            )
            for a in state.applications()
        ),
        "service_principals": sorted((sp.id, sp.app_id) for sp in state.service_principals()),
        "assignments": sorted(
            (a.principal_id, a.resource_id, a.app_role_id) for a in state.app_role_assignments()
        ),
        "exchange": sorted((e.object_id, e.app_id, e.identity) for e in state.exchange_service_principals()),
        "permissions": sorted((p.mailbox, p.user, p.access_rights) for p in state.mailbox_permissions()),
        "secrets": sorted(
            (s.name, s.deleted_at is not None, tuple(v.version for v in s.versions)) for s in state.secrets()
        ),
        "role_assignments": sorted(
            (r.name, r.scope, r.role_definition_id, r.principal_id) for r in state.rbac_assignments()
        ),
    }
