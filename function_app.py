"""Composition root: the Durable Functions app and its blueprints. Nothing else happens here."""

import azure.durable_functions as df
import azure.functions as func

from activities import blueprint as activities
from endpoints import blueprint as endpoints
from orchestrations import blueprint as orchestrations

app = df.DFApp(http_auth_level=func.AuthLevel.FUNCTION)
for blueprint in (endpoints, orchestrations, activities):
    app.register_functions(blueprint)
