"""HTTP triggers: the onboarding API, the consent callback, the approval pages and the OpenAPI document.

Triggers are thin: parse the request, call the core in ``onboarding/`` and map the outcome to a
response. Nothing heavy is imported here (no Graph, Key Vault or identity clients): cold start matters.
"""

from endpoints import callbacks, decisions, diagnoses, onboardings, spec
from endpoints.registry import blueprint

__all__ = ["blueprint", "callbacks", "decisions", "diagnoses", "onboardings", "spec"]
