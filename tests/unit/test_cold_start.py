"""Importing the function app must stay cheap: the worker imports it on every cold start."""

import json
import subprocess
import sys

HEAVY = ("msgraph", "azure.keyvault", "azure.identity", "kiota_http", "msal", "httpx", "jwt", "cryptography")

# The app's own modules that only a running function uses: the triggers import them in their bodies
# (onboarding/lazy.py, *_procedure.py, *_requests.py). Compiling them at the worker's start was about a
# third of what the app adds to the SDK's import (make bench, row "coldstart").
ON_FIRST_USE = (
    "onboarding.ports",
    "onboarding.expiry",
    "onboarding.records",
    "onboarding.steps",
    "onboarding.diagnosis",
    "onboarding.emails",
    "onboarding.validation",
    "onboarding.lookalike",
    "onboarding.netcheck",
    "onboarding.signin",
    "onboarding.links",
    "onboarding.pages",
    "onboarding.status_view",
    "onboarding.admission",
    "onboarding.webhook_hub",
    "endpoints.listing",
    "endpoints.instances",
    "endpoints.onboarding_requests",
    "endpoints.decision_pages",
    "endpoints.callback_requests",
    "endpoints.diagnosis_requests",
    "orchestrations.onboarding_procedure",
    "orchestrations.offboarding_procedure",
    "orchestrations.rotation_procedure",
    "orchestrations.mailbox_ops_procedure",
)


def _loaded_by_importing_the_app() -> list[str]:
    code = "import sys, json, function_app; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return list(json.loads(out.strip().splitlines()[-1]))


def test_importing_the_app_loads_no_cloud_client_library():
    loaded = _loaded_by_importing_the_app()
    heavy = [m for m in loaded if m.split(".")[0] in {h.split(".")[0] for h in HEAVY} and m.startswith(HEAVY)]
    assert heavy == []


def test_importing_the_app_leaves_the_functions_own_code_for_their_first_call():
    loaded = set(_loaded_by_importing_the_app())
    assert sorted(loaded & set(ON_FIRST_USE)) == []


def test_every_module_loaded_on_first_use_exists():
    import importlib

    for name in ON_FIRST_USE:
        importlib.import_module(name)  # a rename must rename it here too, or the test above checks nothing
