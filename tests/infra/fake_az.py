"""A stand-in for the Azure CLI (``az``) and ``azd``, for testing the hook scripts in scripts/azd.

It answers the few calls the hooks make from a JSON state file (``FAKE_AZ_STATE``), applies
``--query`` with JMESPath as the real CLI does, records every call in ``FAKE_AZ_LOG`` (one JSON
line each) and updates the state on writes, so a second run sees what the first one granted.

Runs under ``.venv-infra/bin/python``, which has ``jmespath`` (the library the real CLI uses).
"""

from __future__ import annotations

import json
import os
import re
import sys
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import jmespath


def _option(args: list[str], name: str) -> str | None:
    return args[args.index(name) + 1] if name in args else None


def _print_tsv(value: Any) -> None:
    if value is None:
        return
    if isinstance(value, list):
        for item in value:
            print(item)
    elif isinstance(value, bool):
        print("true" if value else "false")
    else:
        print(value)


def _rest(args: list[str], state: dict[str, Any]) -> Any:
    method = (_option(args, "--method") or "get").lower()
    url = unquote(_option(args, "--url") or "")
    body = json.loads(_option(args, "--body") or "{}")
    if method == "get":
        if match := re.search(r"/servicePrincipals\(appId='([^']+)'\)", url):
            return state["servicePrincipals"][match.group(1)]
        if match := re.search(r"/servicePrincipals/([^/?]+)/appRoleAssignments$", url):
            return {"value": [a for a in state["assignments"] if a["principalId"] == match.group(1)]}
        if "/roleManagement/directory/roleAssignments" in url:
            principal = re.search(r"principalId eq '([^']+)'", url)
            role = re.search(r"roleDefinitionId eq '([^']+)'", url)
            assert principal and role, url
            return {
                "value": [
                    r
                    for r in state["directoryRoles"]
                    if r["principalId"] == principal.group(1) and r["roleDefinitionId"] == role.group(1)
                ]
            }
    if method == "post":
        if match := re.search(r"/servicePrincipals/([^/]+)/appRoleAssignedTo$", url):
            assert body["resourceId"] == match.group(1), "resource in URL and body differ"
            state["assignments"].append({"id": uuid.uuid4().hex, **body})
            return body
        if url.endswith("/roleManagement/directory/roleAssignments"):
            state["directoryRoles"].append(body)
            return body
    if method == "delete" and (match := re.search(r"/appRoleAssignments/([^/]+)$", url)):
        state["assignments"] = [a for a in state["assignments"] if a["id"] != match.group(1)]
        return None
    raise SystemExit(f"fake az: unexpected call {method} {url}")


def main(argv: list[str]) -> int:
    program = os.environ.get("FAKE_PROGRAM", "az")
    args = argv[1:]
    state_path = Path(os.environ["FAKE_AZ_STATE"])
    state = json.loads(state_path.read_text())
    with Path(os.environ["FAKE_AZ_LOG"]).open("a") as log:
        log.write(json.dumps({"program": program, "args": args}) + "\n")

    if program == "azd":
        if args[:2] == ["env", "set"]:
            return 0
        return 1  # env get-value: nothing stored

    if args[:2] == ["cloud", "show"]:
        result: Any = {"endpoints": {"microsoftGraphResourceId": state["graph"]}}
    elif args[:2] == ["resource", "show"]:
        resource_id = _option(args, "--ids")
        if resource_id in state.get("resources", []):
            result = {"id": resource_id}
        elif state.get("resourceError"):
            print(state["resourceError"], file=sys.stderr)
            return 1
        else:
            print(f"(ResourceNotFound) The Resource '{resource_id}' was not found.", file=sys.stderr)
            return 3
    elif args[:1] == ["rest"]:
        result = _rest(args, state)
        state_path.write_text(json.dumps(state))
    else:
        raise SystemExit(f"fake az: unexpected command {args}")

    query = _option(args, "--query")
    if query:
        result = jmespath.search(query, result)
    if _option(args, "--output") == "tsv":
        _print_tsv(result)
    elif _option(args, "--output") != "none" and result is not None:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
