"""The removals the offboarding makes, through the real adapters against the sandbox: each twice, as
an activity run again after a crash would (docs/sandbox-facts.md, "Offboarding")."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from onboarding.adapters.graph import GraphDirectory
from sandbox import Sandbox
from tests.adapters.conftest import RecordingSleep
from tests.adapters.test_graph_sandbox import graph_requests, register


@pytest.fixture
async def graph(settings: Any, credential: Any) -> AsyncIterator[GraphDirectory]:
    directory = GraphDirectory(settings, credential, sleep=RecordingSleep())
    yield directory
    await directory.close()


async def test_a_soft_deleted_app_stays_restorable_until_purged_and_purging_twice_is_fine(
    sb: Sandbox, graph: GraphDirectory
) -> None:
    _, app = await register(graph, "mail-onboarding-off1")
    sp = await graph.ensure_service_principal(app.app_id)
    await graph.delete_application(app.object_id)
    [deleted] = [a for a in sb.state.applications_deleted() if a.id == app.object_id]
    assert deleted.deleted_at is not None  # OF-1: in deleted items, restorable
    for _ in range(2):
        await graph.purge_deleted_item(app.object_id)  # OF-2: 204, then 404 = already purged
        await graph.purge_deleted_item(sp)  # the principal: gone with the app here (OF-1), 404 = done
    assert [a for a in sb.state.applications() if a.id == app.object_id] == []
    statuses = [e.status for e in graph_requests(sb, "/directory/deletedItems/") if e.method == "DELETE"]
    assert statuses == [204, 404, 404, 404]
