"""The one blueprint every HTTP trigger module registers on (see ``endpoints/__init__.py``)."""

import azure.durable_functions as df
import azure.functions as func

blueprint = df.Blueprint(http_auth_level=func.AuthLevel.FUNCTION)
