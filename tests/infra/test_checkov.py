"""checkov on infra/: every finding is fixed or explained where it is suppressed.

A suppression is a ``// checkov:skip=CKV_ID: reason`` comment inside the resource it concerns.
checkov 3.3 reads no suppressions on Bicep *parameters*, so for parameter checks this test reads
the same comment from the lines directly above the parameter declaration.
"""

from __future__ import annotations

import re
from typing import Any

from tests.infra.conftest import INFRA, Bicep, bicep_files

SUPPRESSION = re.compile(r"checkov:skip=([A-Z0-9_]+)(?::\s*(.*))?")
MIN_REASON = 30  # "false positive" is not a reason


def _comment_block_above(path: str, line: int) -> list[str]:
    """Lines directly above ``line`` (1-based) that are decorators or comments."""
    lines = (INFRA / path.lstrip("/")).read_text(encoding="utf-8").splitlines()
    block = []
    index = line - 2
    while index >= 0 and lines[index].strip().startswith(("//", "@")):
        block.append(lines[index])
        index -= 1
    return block


def _parameter_suppressions(path: str, name: str, parsed: dict[str, Bicep]) -> dict[str, str]:
    start = parsed[path.lstrip("/")]["parameters"][name]["__start_line__"]
    found = {}
    for text in _comment_block_above(path, start):
        match = SUPPRESSION.search(text)
        if match:
            found[match.group(1)] = (match.group(2) or "").strip()
    return found


def test_checkov_parsed_and_checked_every_file(checkov_report: dict[str, Any]) -> None:
    summary = checkov_report["summary"]
    assert summary["parsing_errors"] == 0, checkov_report["results"].get("parsing_errors")
    assert summary["passed"] > 0
    checked = {
        check["file_path"].lstrip("/")
        for kind in ("passed_checks", "skipped_checks")
        for check in checkov_report["results"][kind]
    }
    resources = {"app/storage.bicep", "app/keyvault.bicep", "app/function.bicep"}
    assert resources <= checked


def test_the_controls_that_matter_pass(checkov_report: dict[str, Any]) -> None:
    passed = {(check["check_id"], check["resource"]) for check in checkov_report["results"]["passed_checks"]}
    expected = {
        ("CKV_AZURE_110", "Microsoft.KeyVault/vaults.vault"),  # purge protection
        ("CKV_AZURE_42", "Microsoft.KeyVault/vaults.vault"),  # recoverable
        ("CKV_AZURE_70", "Microsoft.Web/sites.site"),  # https only
        ("CKV_AZURE_145", "Microsoft.Web/sites.site"),  # TLS 1.2
        ("CKV_AZURE_78", "Microsoft.Web/sites.site"),  # no FTP
        ("CKV_AZURE_44", "Microsoft.Storage/storageAccounts.storage"),  # TLS 1.2
        ("CKV_AZURE_3", "Microsoft.Storage/storageAccounts.storage"),  # https only
    }
    assert expected <= passed, sorted(expected - passed)


def test_every_failed_check_is_explained(checkov_report: dict[str, Any], parsed: dict[str, Bicep]) -> None:
    unexplained = []
    for check in checkov_report["results"]["failed_checks"]:
        kind, _, name = check["resource"].partition(".")
        reason = None
        if kind in {"string", "int", "bool", "object", "array", "secureString"} and "/" not in kind:
            reason = _parameter_suppressions(check["file_path"], name, parsed).get(check["check_id"])
        if not reason or len(reason) < MIN_REASON:
            unexplained.append(
                f"{check['check_id']} {check['resource']} ({check['file_path']}): {check['check_name']}"
            )
    assert not unexplained, "fix these or suppress them inline with a reason:\n" + "\n".join(unexplained)


def test_every_suppression_gives_a_reason(checkov_report: dict[str, Any]) -> None:
    thin = [
        f"{check['check_id']} {check['resource']}: {check['check_result'].get('suppress_comment')!r}"
        for check in checkov_report["results"]["skipped_checks"]
        if len((check["check_result"].get("suppress_comment") or "").strip()) < MIN_REASON
    ]
    assert not thin


def test_no_suppression_is_stale(checkov_report: dict[str, Any]) -> None:
    """A suppression for a check that no longer fires hides nothing but misleads the reader."""
    used = {
        (check["file_path"].lstrip("/"), check["check_id"])
        for check in checkov_report["results"]["skipped_checks"]
    }
    used |= {
        (check["file_path"].lstrip("/"), check["check_id"])
        for check in checkov_report["results"]["failed_checks"]
    }
    written = set()
    for path in bicep_files():
        relative = str(path.relative_to(INFRA))
        for match in SUPPRESSION.finditer(path.read_text(encoding="utf-8")):
            written.add((relative, match.group(1)))
    assert written - used == set()
