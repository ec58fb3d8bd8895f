"""Composition root: the Durable Functions app, its blueprints, the log redaction net and log export."""

import logging

import azure.durable_functions as df
import azure.functions as func

from activities import blueprint as activities
from activities.diagnosis import blueprint as diagnosis_activities
from activities.mailbox_ops import blueprint as mailbox_activities
from activities.offboarding import blueprint as offboarding_activities
from activities.records import blueprint as record_activities
from activities.rotation import blueprint as rotation_activities
from activities.webhooks import blueprint as webhook_activities
from endpoints import blueprint as endpoints
from onboarding import logcontext, redaction, replay_timestamps, telemetry
from orchestrations import blueprint as orchestrations
from orchestrations.diagnosis import blueprint as diagnosis
from orchestrations.mailbox_ops import blueprint as mailbox_operations
from orchestrations.offboarding import blueprint as offboarding
from orchestrations.rotation import blueprint as rotation
from orchestrations.webhooks import blueprint as webhook_delivery
from schedules import blueprint as schedules

redaction.install()  # before any function runs: no token or secret reaches a log line
logcontext.install()  # every line logged for an onboarding carries its id and step (customDimensions)
# In Azure (PYTHON_ENABLE_OPENTELEMETRY and Application Insights set): the worker exports its records through
# OpenTelemetry, so those fields become customDimensions; behind the same two filters. Off locally.
telemetry.install()
replay_timestamps.install()  # the SDK's history timestamps by the standard library: cheaper replays
# The Azure SDK logs every HTTP request and response at INFO; at the host's Information level
# that is several lines per Key Vault or token call. Its warnings and errors still come through.
logging.getLogger("azure.core.pipeline.policies.http_logging_policy").setLevel(logging.WARNING)

app = df.DFApp(http_auth_level=func.AuthLevel.FUNCTION)
for blueprint in (
    endpoints,
    orchestrations,
    activities,
    schedules,
    webhook_delivery,
    webhook_activities,
    record_activities,
    diagnosis,
    diagnosis_activities,
    offboarding,
    offboarding_activities,
    rotation,
    rotation_activities,
    mailbox_operations,
    mailbox_activities,
):
    app.register_functions(blueprint)
