"""Alert rules, action group and workbook (infra/app/alerts.bicep, workbook.bicep, queries/*.kql).

Nothing here can run KQL; what can be checked is that each query reads events and fields the app
really writes (onboarding/opsevents.py, at its call sites), that the text fallback of the queries
parses what ``emit`` writes, and that every rule and chart the runbook names is deployed.
"""

from __future__ import annotations

import ast
import json
import logging
import re
from pathlib import Path
from typing import Any

import pytest

from onboarding import activity_names, opsevents
from onboarding.opsevents import OpsEvent
from tests.infra.conftest import INFRA, ROOT, Bicep

QUERIES = INFRA / "app" / "queries"
LOADED = re.compile(r"loadTextContent\('queries/([^']+)'\)")
EVENT_TEST = re.compile(r'event == "([^"]+)"')
FIELD_READ = re.compile(r"\bprops\.([a-z_]+)")
VERBATIM = re.compile(r'@"([^"]*)"')

EXPECTED_RULES = {
    "failed-onboardings",
    "overdue-waits",
    "callbacks-given-up",
    "credentials-expiring",
    "function-errors",
}
EXPECTED_CHARTS = {"outcomes", "step-durations", "mailbox-states", "exchange-throttling", "callback-failures"}


def _query_text(expression: Any) -> str:
    """The KQL a Bicep string expression stands for: ${events} and loadTextContent(...) resolved."""
    if isinstance(expression, dict):  # a bare loadTextContent('queries/...') call
        expression = f"loadTextContent('{expression['function']['parameters']['file_path']}')"
    text = str(expression)
    if "${events}" in text:
        text = text.replace("${events}", (QUERIES / "_events.kql").read_text(encoding="utf-8"))
    return LOADED.sub(lambda m: (QUERIES / m.group(1)).read_text(encoding="utf-8"), text)


def _rules(parsed: dict[str, Bicep]) -> dict[str, dict[str, Any]]:
    return {rule["name"]: rule for rule in parsed["app/alerts.bicep"]["variables"]["rules"]["value"]}


def _emitted_fields() -> dict[str, set[str]]:
    """For each event, the fields some call site in the product passes (ast, not a grep)."""
    fields: dict[str, set[str]] = {event.value: set() for event in OpsEvent}
    for folder in ("onboarding", "orchestrations", "activities", "endpoints", "schedules"):
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if not isinstance(node, ast.Call):
                    continue
                for arg in node.args:
                    if (
                        isinstance(arg, ast.Attribute)
                        and isinstance(arg.value, ast.Attribute)
                        and arg.value.attr == "OpsEvent"
                    ):
                        event = OpsEvent[arg.attr].value
                        fields[event] |= {k.arg for k in node.keywords if k.arg}
    # The orchestrator's Onboarding.event adds the onboarding id to each of its events.
    for event in (OpsEvent.ONBOARDING_FINISHED, OpsEvent.ONBOARDING_WAITING, OpsEvent.CALLBACK_GIVEN_UP):
        fields[event.value].add("onboarding_id")
    return fields


def test_every_alert_the_runbook_explains_is_a_log_alert_on_application_insights(
    parsed: dict[str, Bicep],
) -> None:
    assert set(_rules(parsed)) == EXPECTED_RULES
    resource = parsed["app/alerts.bicep"]["resources"]["alertRules"]
    assert resource["type"] == "Microsoft.Insights/scheduledQueryRules"
    assert resource["api_version"] == "2023-12-01"
    assert resource["config"]["loop_type"]["detail"] == {"item_name": "rule", "array_name": "rules"}
    body = resource["config"]["config"]
    assert body["kind"] == "LogAlert"
    properties = body["properties"]
    assert properties["scopes"] == ["applicationInsightsId"]
    assert properties["enabled"] is True
    assert "actionGroup" in json.dumps(properties["actions"])
    runbook = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    for name, rule in _rules(parsed).items():
        anchor = re.search(r"docs/operations\.md#([a-z-]+)", rule["description"])
        assert anchor, f"{name}: its description must point at the runbook"
        assert f"{{#{anchor.group(1)}}}" in runbook or _heading_anchor(anchor.group(1), runbook), name


def _heading_anchor(anchor: str, markdown: str) -> bool:
    headings = re.findall(r"(?m)^#+ (.+)$", markdown)
    return any(re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-") == anchor for h in headings)


def test_action_group_emails_the_address_azd_asks_for(parsed: dict[str, Bicep]) -> None:
    group = parsed["app/alerts.bicep"]["resources"]["actionGroup"]
    assert group["type"] == "Microsoft.Insights/actionGroups"
    [receiver] = group["config"]["properties"]["emailReceivers"]
    assert receiver["emailAddress"] == "alertEmail"
    assert receiver["useCommonAlertSchema"] is True
    assert len(group["config"]["properties"]["groupShortName"]) <= 12  # the API's limit
    module = parsed["main.bicep"]["modules"]["alerts"]["config"]["params"]
    assert module["alertEmail"] == "alertEmail"
    given = json.loads((INFRA / "main.parameters.json").read_text(encoding="utf-8"))["parameters"]
    assert given["alertEmail"]["value"] == "${ALERT_EMAIL}"


def test_alert_queries_read_only_events_and_fields_the_app_writes(parsed: dict[str, Bicep]) -> None:
    emitted = _emitted_fields()
    queries = {name: _query_text(rule["query"]) for name, rule in _rules(parsed).items()}
    charts = parsed["app/workbook.bicep"]["variables"]["charts"]["value"]
    queries |= {chart["name"]: _query_text(chart["content"]["query"]) for chart in charts}
    preamble = (QUERIES / "_events.kql").read_text(encoding="utf-8")
    for name, text in queries.items():
        body = text.replace(preamble, "")
        events = set(EVENT_TEST.findall(body))
        if name in {"function-errors", "step-durations"}:  # over the Functions host's requests
            assert not events and "requests" in body, name
            continue
        assert events, f"{name} reads no operational event"
        assert events <= set(emitted), f"{name}: {events - set(emitted)} is not an OpsEvent"
        readable = set().union(*(emitted[event] for event in events))
        assert set(FIELD_READ.findall(body)) <= readable, (
            f"{name} reads fields no call site writes: {set(FIELD_READ.findall(body)) - readable}"
        )


def test_every_operational_event_is_alerted_on_or_charted(parsed: dict[str, Bicep]) -> None:
    used: set[str] = set()
    for path in QUERIES.glob("*.kql"):
        used |= set(EVENT_TEST.findall(path.read_text(encoding="utf-8")))
    assert used == {event.value for event in OpsEvent}


def test_the_queries_text_fallback_parses_what_emit_writes(caplog: pytest.LogCaptureFixture) -> None:
    """Where customDimensions are missing, the KQL's own regexes must find the fields in the message."""
    event_pattern, field_pattern = VERBATIM.findall((QUERIES / "_events.kql").read_text(encoding="utf-8"))
    caplog.set_level(logging.INFO)
    logged = opsevents.emit(
        logging.getLogger("test.ops"),
        OpsEvent.ONBOARDING_FINISHED,
        onboarding_id="onb-1234",
        outcome="failed",
        mailbox_counts={"verified": 3, "failed": 1},
    )
    [record] = caplog.records
    message = record.getMessage()
    assert re.search(event_pattern, message).group(1) == "onboarding.finished"  # type: ignore[union-attr]
    assert dict(re.findall(field_pattern, message)) == {name: str(value) for name, value in logged.items()}
    for name, value in logged.items():
        assert getattr(record, name) == value  # and as a structured field (customDimensions)
    assert json.loads(str(logged["mailbox_counts"])) == {"verified": 3, "failed": 1}


def test_step_durations_chart_lists_every_activity() -> None:
    text = (QUERIES / "step-durations.kql").read_text(encoding="utf-8")
    listed = set(re.findall(r'"([a-z_]+)"', text.split("name in (", 1)[1].split(")", 1)[0]))
    activities = {
        value
        for name, value in vars(activity_names).items()
        if name.isupper() and isinstance(value, str) and not name.startswith("_")
    }
    assert listed == activities


def test_workbook_shows_the_five_views_over_application_insights(parsed: dict[str, Bicep]) -> None:
    tree = parsed["app/workbook.bicep"]
    charts = tree["variables"]["charts"]["value"]
    assert {chart["name"] for chart in charts} == EXPECTED_CHARTS
    for chart in charts:
        content = chart["content"]
        assert chart["type"] == 3 and content["version"] == "KqlItem/1.0"
        assert content["timeContextFromParameter"] == "TimeRange"
        for file in LOADED.findall(str(content["query"])):
            assert (QUERIES / file).is_file(), file
    workbook = tree["variables"]["workbook"]["value"]
    assert workbook["version"] == "Notebook/1.0"
    assert workbook["items"]["function"]["parameters"] == {
        "arg_1": ["heading", "timeRange"],
        "arg_2": "charts",
    }
    assert workbook["fallbackResourceIds"] == ["applicationInsightsId"]
    resource = tree["resources"]["dashboard"]
    assert resource["type"] == "Microsoft.Insights/workbooks"
    properties = resource["config"]["properties"]
    assert properties["serializedData"]["function"] == {
        "type": "string",
        "parameters": {"value_to_convert": "workbook"},
    }
    assert properties["sourceId"] == "applicationInsightsId"
    assert resource["config"]["kind"] == "shared"
    assert resource["config"]["name"]["function"]["type"] == "guid"  # workbook names are GUIDs
    module = parsed["main.bicep"]["modules"]["workbook"]["config"]["params"]
    assert "applicationInsightsId" in json.dumps(module["applicationInsightsId"])


def test_every_query_file_is_used(parsed: dict[str, Bicep]) -> None:
    used = {"_events.kql"}
    for path in ("app/alerts.bicep", "app/workbook.bicep"):
        used |= set(LOADED.findall((INFRA / path).read_text(encoding="utf-8")))
    assert {p.name for p in Path(QUERIES).glob("*.kql")} == used


def test_host_json_keeps_durable_tracking_events_and_every_trace_the_alerts_count() -> None:
    logging_config = json.loads((ROOT / "host.json").read_text(encoding="utf-8"))["logging"]
    levels = logging_config["logLevel"]
    # Information keeps the extension's lifecycle tracking events; Warning would drop all but failures.
    assert levels["Host.Triggers.DurableTask"] == "Information"
    assert levels["DurableTask.Core"] == levels["DurableTask.AzureStorage"] == "Warning"
    # The alert rules count trace lines: sampling must not drop one.
    excluded = logging_config["applicationInsights"]["samplingSettings"]["excludedTypes"].split(";")
    assert {"Request", "Exception", "Trace"} <= set(excluded)
