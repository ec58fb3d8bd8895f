"""Benchmark 4: how long a fresh worker takes to import the function app, against importing only the
two Azure Functions packages every Python function app needs. Interleaved runs, medians."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass

from bench.rig import ROOT

APP = "import function_app"
BASELINE = "import azure.functions, azure.durable_functions"


@dataclass
class ColdStart:
    app_seconds: float
    baseline_seconds: float
    runs: int

    @property
    def ratio(self) -> float:
        return self.app_seconds / self.baseline_seconds


def _once(code: str) -> float:
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPROFILEIMPORTTIME"}}
    began = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True)
    return time.perf_counter() - began


def run(runs: int = 15) -> ColdStart:
    _once(APP), _once(BASELINE)  # fill the OS page cache: every run below reads warm files
    app, baseline = [], []
    for _ in range(runs):
        app.append(_once(APP))
        baseline.append(_once(BASELINE))
    return ColdStart(statistics.median(app), statistics.median(baseline), runs)
