"""Graph refusals whose words no public source documents (docs/sandbox-facts.md GR-8, GR-9): the
adapter decides from the tenant's state, so a reworded message can neither fake success nor turn a
finished removal into a failure."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest

from onboarding.adapters.graph import GraphDirectory
from onboarding.errors import InvalidRequestError, TransientError
from onboarding.settings import Settings
from sandbox import Sandbox
from tests.adapters.conftest import RecordingSleep
from tests.adapters.test_graph_sandbox import register

T = TypeVar("T")
REWORDED = InvalidRequestError("Microsoft Graph refused the request (HTTP 400). Graph said: Bad request.")


@pytest.fixture
async def graph(settings: Settings, credential: Any) -> AsyncIterator[GraphDirectory]:
    directory = GraphDirectory(settings, credential, sleep=RecordingSleep())
    yield directory
    await directory.close()


def refuse(graph: GraphDirectory, action: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Graph answers ``action`` with a 400 in words the adapter has never seen; other calls go through."""
    real = graph._call

    async def call(what: str, work: Callable[[], Awaitable[T]], **kwargs: Any) -> T:
        if what == action:
            raise REWORDED
        return await real(what, work, **kwargs)

    monkeypatch.setattr(graph, "_call", call)


async def test_a_refused_removal_of_a_key_that_is_gone_counts_as_removed(
    sb: Sandbox, graph: GraphDirectory, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, app = await register(graph)
    new = await graph.add_password(app.object_id, "onboarding", datetime.now(UTC) + timedelta(days=30))
    await graph.remove_password(app.object_id, new.key_id)
    refuse(graph, "remove a client secret from the app", monkeypatch)
    await graph.remove_password(app.object_id, new.key_id)  # a retried activity: already done


async def test_a_refused_removal_of_a_key_still_held_is_an_error(
    sb: Sandbox, graph: GraphDirectory, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, app = await register(graph)
    new = await graph.add_password(app.object_id, "onboarding", datetime.now(UTC) + timedelta(days=30))
    refuse(graph, "remove a client secret from the app", monkeypatch)
    with pytest.raises(InvalidRequestError):
        await graph.remove_password(app.object_id, new.key_id)
    assert [p.key_id for p in await graph.list_passwords(app.object_id)] == [new.key_id]


async def test_a_refused_grant_that_the_app_holds_counts_as_granted(
    sb: Sandbox, graph: GraphDirectory, monkeypatch: pytest.MonkeyPatch
) -> None:
    resource, app = await register(graph)
    sp = await graph.ensure_service_principal(app.app_id)
    role = resource.app_role_ids["IMAP.AccessAsApp"]
    await graph.assign_app_role(sp, resource.service_principal_id, role)
    refuse(graph, "assign the app role", monkeypatch)
    await graph.assign_app_role(sp, resource.service_principal_id, role)


async def test_a_refused_grant_that_the_app_does_not_hold_is_never_success(
    sb: Sandbox, graph: GraphDirectory, monkeypatch: pytest.MonkeyPatch
) -> None:
    resource, app = await register(graph)
    sp = await graph.ensure_service_principal(app.app_id)
    refuse(graph, "assign the app role", monkeypatch)
    with pytest.raises(TransientError) as caught:
        await graph.assign_app_role(
            sp, resource.service_principal_id, resource.app_role_ids["POP.AccessAsApp"]
        )
    assert caught.value.code == "replication"
    assert "Bad request." not in caught.value.message  # Graph's words stay out of stored text (issue 14)
    assert await graph.list_app_role_assignments(sp) == []
