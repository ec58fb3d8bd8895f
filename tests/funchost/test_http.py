"""HTTP triggers and the Durable HTTP API, through the SDK's real DurableOrchestrationClient."""

from __future__ import annotations

from datetime import timedelta

import azure.durable_functions as df
import httpx
from azure.durable_functions.models.OrchestrationRuntimeStatus import OrchestrationRuntimeStatus

from funchost import LocalHost, ManualClock

from .conftest import on_host_loop


def test_http_start_requires_a_function_key(samples: LocalHost) -> None:
    url = f"{samples.base_url}/api/orchestrators/chain"
    assert httpx.post(url, json=["Paris"]).status_code == 401
    assert httpx.post(url, json=["Paris"], headers={"x-functions-key": "wrong"}).status_code == 401
    response = httpx.post(url, json=["Paris"], headers={"x-functions-key": samples.function_key})
    assert response.status_code == 202
    links = response.json()
    assert response.headers["Location"] == links["statusQueryGetUri"]
    assert samples.wait_for(links["id"])["output"] == ["Hello Paris"]
    # The management links carry the system key; without it the status API refuses.
    status = httpx.get(links["statusQueryGetUri"])
    assert status.status_code == 200 and status.json()["output"] == ["Hello Paris"]
    assert httpx.get(links["statusQueryGetUri"].split("?")[0]).status_code == 401


def test_code_query_parameter_and_admin_and_anonymous_levels(samples: LocalHost) -> None:
    admin = f"{samples.base_url}/api/admin-only"
    assert httpx.get(admin, params={"code": samples.function_key}).status_code == 401
    assert httpx.get(admin, params={"code": samples.master_key}).text == "admin"
    assert httpx.get(f"{samples.base_url}/api/ping", params={"who": "me"}).text == "pong me"
    started = httpx.post(f"{samples.base_url}/api/orchestrators/chain", params={"code": samples.master_key})
    assert started.status_code == 202


def test_event_and_status_through_http_triggers(samples: LocalHost) -> None:
    key = {"x-functions-key": samples.function_key}
    instance_id = httpx.post(f"{samples.base_url}/api/orchestrators/waiter", headers=key).json()["id"]
    samples.idle()
    status = httpx.get(f"{samples.base_url}/api/instances/{instance_id}", headers=key).json()
    assert status["status"] == "Running"
    raised = httpx.post(
        f"{samples.base_url}/api/instances/{instance_id}/events/Go", json={"ok": 1}, headers=key
    )
    assert raised.status_code == 202
    samples.wait_for(instance_id)
    status = httpx.get(f"{samples.base_url}/api/instances/{instance_id}", headers=key).json()
    # As in Azure (azure-functions-durable-python#295): data raised through the Python client reaches
    # the orchestrator as its JSON text, because the client JSON-encodes it twice.
    assert status == {"status": "Completed", "output": '{"ok": 1}', "custom": None}
    assert httpx.get(f"{samples.base_url}/api/instances/nope", headers=key).status_code == 404


def test_client_terminate_query_and_purge(samples: LocalHost, clock: ManualClock) -> None:
    client = df.DurableOrchestrationClient(samples.client_binding_json())
    began = clock.now()
    waiting = on_host_loop(samples, client.start_new("waiter"))
    done = on_host_loop(samples, client.start_new("chain", None, ["Rome"]))
    samples.wait_for(done)
    on_host_loop(samples, client.terminate(waiting, "stop"))
    assert samples.wait_for(waiting)["runtimeStatus"] == "Terminated"

    status = on_host_loop(samples, client.get_status(done, show_history=True))
    assert status.output == ["Hello Rome"]
    assert [e["EventType"] for e in status.history][:2] == ["ExecutionStarted", "TaskScheduled"]

    completed = on_host_loop(
        samples, client.get_status_by(runtime_status=[OrchestrationRuntimeStatus.Completed])
    )
    assert [s.instance_id for s in completed] == [done]
    later = on_host_loop(samples, client.get_status_by(created_time_from=began + timedelta(days=1)))
    assert later == []

    assert on_host_loop(samples, client.purge_instance_history(done)).instances_deleted == 1
    assert not on_host_loop(samples, client.get_status(done))
    purged = on_host_loop(
        samples,
        client.purge_instance_history_by(
            created_time_from=began - timedelta(days=1),
            runtime_status=[OrchestrationRuntimeStatus.Terminated],
        ),
    )
    assert purged.instances_deleted == 1
    assert samples.instances() == []


def test_raise_event_to_a_finished_instance_is_refused(samples: LocalHost) -> None:
    client = df.DurableOrchestrationClient(samples.client_binding_json())
    instance_id = on_host_loop(samples, client.start_new("chain"))
    samples.wait_for(instance_id)
    try:
        on_host_loop(samples, client.raise_event(instance_id, "Go", 1))
    except Exception as error:
        assert "is gone" in str(error)
    else:
        raise AssertionError("raise_event to a completed instance must fail")


def test_check_status_links_raise_events_and_terminate(samples: LocalHost) -> None:
    key = {"x-functions-key": samples.function_key}
    first = httpx.post(f"{samples.base_url}/api/orchestrators/waiter", headers=key).json()
    raised = httpx.post(first["sendEventPostUri"].replace("{eventName}", "Go"), json={"via": "link"})
    assert raised.status_code == 202
    assert samples.wait_for(first["id"])["output"] == {"via": "link"}  # a plain JSON body arrives as data
    assert httpx.post(first["sendEventPostUri"].replace("{eventName}", "Go"), json=1).status_code == 410

    second = httpx.post(f"{samples.base_url}/api/orchestrators/waiter", headers=key).json()
    assert httpx.post(second["terminatePostUri"].replace("{text}", "enough")).status_code == 202
    assert samples.wait_for(second["id"])["runtimeStatus"] == "Terminated"
    assert httpx.delete(second["purgeHistoryDeleteUri"]).json() == {"instancesDeleted": 1}


def test_the_instance_query_pages_with_top_and_a_continuation_token(samples: LocalHost) -> None:
    """As the extension's "Get all instances status": ``top`` (default 100) rows per page and an
    ``x-ms-continuation-token`` response header, sent back as a request header, while more may follow."""
    with samples.store.transaction() as db:
        for i in range(250):
            db.execute(
                "INSERT INTO instances (instance_id, name, execution_id, status, created, updated)"
                " VALUES (?,?,?,?,?,?)",
                (
                    f"i{i:03}",
                    "chain",
                    "e",
                    "Completed" if i % 2 else "Running",
                    f"2030-01-0{1 + i // 100}T00:00:{i % 60:02}.000000Z",
                    "2030-01-09T00:00:00.000000Z",
                ),
            )
    url = f"{samples.base_url}/runtime/webhooks/durabletask/instances"
    key = {"code": samples.system_key}

    def every_page(**params: str) -> list[list[str]]:
        pages, headers = [], {}
        while True:
            response = httpx.get(url, params={**key, **params}, headers=headers)
            assert response.status_code == 200
            pages.append([s["instanceId"] for s in response.json()])
            token = response.headers.get("x-ms-continuation-token")
            if token is None:
                return pages
            headers = {"x-ms-continuation-token": token}

    default = every_page()
    assert [len(p) for p in default] == [100, 100, 50]
    assert sorted(i for p in default for i in p) == [f"i{i:03}" for i in range(250)]
    running = every_page(top="40", runtimeStatus="Running", instanceIdPrefix="i1")
    assert [len(p) for p in running] == [40, 10]
    assert {i for p in running for i in p} == {f"i{i:03}" for i in range(100, 200, 2)}
    # The SDK's get_status_by sends no top and follows no token: the first 100 only, as in Azure
    # (azure-functions-durable-python#580).
    client = df.DurableOrchestrationClient(samples.client_binding_json())
    assert len(on_host_loop(samples, client.get_status_by())) == 100
    assert httpx.get(url, params={**key, "top": "0"}).status_code == 400
    assert httpx.get(url, params=key, headers={"x-ms-continuation-token": "not-a-token"}).status_code == 400
