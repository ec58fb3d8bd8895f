"""Fixtures for the infrastructure checks: the Bicep files parsed once, and one checkov run.

Both tools live in ``.venv-infra`` (checkov pins libraries of its own), so they run as
subprocesses. The Bicep compiler cannot be installed here; pycep, the parser checkov itself uses,
stands in for it.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
INFRA_PYTHON = ROOT / ".venv-infra" / "bin" / "python"
CHECKOV = ROOT / ".venv-infra" / "bin" / "checkov"
EXTENSION_LINE = re.compile(r"(?m)^extension\s+\S+.*$")

Bicep = dict[str, Any]


def bicep_files() -> list[Path]:
    return sorted(INFRA.rglob("*.bicep"))


@pytest.fixture(scope="session")
def parsed() -> dict[str, Bicep]:
    """Every Bicep file under infra/, keyed by its path relative to infra/ (``app/storage.bicep``)."""
    files = bicep_files()
    result = subprocess.run(
        [str(INFRA_PYTHON), str(Path(__file__).with_name("bicep_to_json.py")), *map(str, files)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"a Bicep file does not parse:\n{result.stderr}"
    return {str(Path(path).relative_to(INFRA)): tree for path, tree in json.loads(result.stdout).items()}


@pytest.fixture(scope="session")
def checkov_report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """checkov's JSON report for infra/, offline.

    It runs on a copy in which ``extension`` lines are blanked (line numbers kept): checkov's parser
    predates them and would otherwise skip the whole file instead of checking it.
    """
    copy = tmp_path_factory.mktemp("infra") / "infra"
    shutil.copytree(INFRA, copy)
    for path in copy.rglob("*.bicep"):
        path.write_text(EXTENSION_LINE.sub("", path.read_text(encoding="utf-8")), encoding="utf-8")
    result = subprocess.run(
        [
            str(CHECKOV),
            "--directory",
            str(copy),
            "--framework",
            "bicep",
            "--skip-download",
            "--output",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    # 0: all passed; 1: some failed (the test decides whether each is explained). Anything else broke.
    assert result.returncode in (0, 1), f"checkov did not run:\n{result.stderr[-2000:]}"
    report = json.loads(result.stdout)
    assert isinstance(report, dict), "expected one framework (bicep) in checkov's report"
    return report
