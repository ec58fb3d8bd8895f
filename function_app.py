"""Composition root: the Durable Functions app, its blueprints, and the log redaction net."""

import azure.durable_functions as df
import azure.functions as func

from activities import blueprint as activities
from activities.webhooks import blueprint as webhook_activities
from endpoints import blueprint as endpoints
from onboarding import redaction
from orchestrations import blueprint as orchestrations
from orchestrations.webhooks import blueprint as webhook_delivery
from schedules import blueprint as schedules

redaction.install()  # before any function runs: no token or secret reaches a log line

app = df.DFApp(http_auth_level=func.AuthLevel.FUNCTION)
for blueprint in (endpoints, orchestrations, activities, schedules, webhook_delivery, webhook_activities):
    app.register_functions(blueprint)
