"""Importing the function app must stay cheap: the worker imports it on every cold start."""

import json
import subprocess
import sys

HEAVY = ("msgraph", "azure.keyvault", "azure.identity", "kiota_http", "msal", "httpx", "jwt", "cryptography")


def test_importing_the_app_loads_no_cloud_client_library():
    code = "import sys, json, function_app; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = json.loads(out.strip().splitlines()[-1])
    heavy = [m for m in loaded if m.split(".")[0] in {h.split(".")[0] for h in HEAVY} and m.startswith(HEAVY)]
    assert heavy == []
