"""Run the host as a child process: for kill tests (SIGKILL at any moment) and the demo."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path


class HostProcess:
    def __init__(
        self,
        app_dir: Path,
        db_path: Path,
        env: Mapping[str, str] | None = None,
        port: int = 0,
        *,
        reuse_port: bool = False,
        function_key: str | None = None,
        master_key: str | None = None,
        log_path: Path | None = None,
        episode_log: Path | None = None,
        max_activity_workers: int | None = None,
    ) -> None:
        self.app_dir = Path(app_dir)
        self.db_path = Path(db_path)
        self.env = dict(os.environ if env is None else env)
        self.port = port
        self.reuse_port = reuse_port  # the caller holds a reservation of the port (funchost/ports.py)
        self.function_key = function_key or secrets.token_urlsafe(24)
        self.master_key = master_key or secrets.token_urlsafe(24)
        self.log_path = log_path
        self.episode_log = episode_log
        self.max_activity_workers = max_activity_workers
        self.base_url = ""
        self._proc: subprocess.Popen[str] | None = None

    def start(self, timeout: float = 60) -> HostProcess:
        env = {**self.env, "FUNCHOST_FUNCTION_KEY": self.function_key, "FUNCHOST_MASTER_KEY": self.master_key}
        env.setdefault("PYTHONPATH", str(Path(__file__).resolve().parent.parent))
        cmd = [
            sys.executable,
            "-m",
            "funchost",
            "--app",
            str(self.app_dir),
            "--db",
            str(self.db_path),
            "--port",
            str(self.port),
        ]
        if self.reuse_port:
            cmd.append("--reuse-port")
        if self.episode_log is not None:
            cmd += ["--episode-log", str(self.episode_log)]
        if self.max_activity_workers is not None:
            cmd += ["--max-activity-workers", str(self.max_activity_workers)]
        # Logs go to log_path when given, else to this process's stderr.
        log = open(self.log_path, "a") if self.log_path else None  # noqa: SIM115
        self._proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=log, text=True)
        if log is not None:
            log.close()  # the child holds its own descriptor
        ready = threading.Event()

        def read() -> None:
            assert self._proc is not None and self._proc.stdout is not None
            for line in self._proc.stdout:
                if line.startswith("funchost ready "):
                    self.base_url = line.split()[-1]
                    self.port = int(self.base_url.rsplit(":", 1)[1])
                    ready.set()

        threading.Thread(target=read, daemon=True).start()
        deadline = time.monotonic() + timeout
        while not ready.wait(0.05):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise RuntimeError("funchost did not start")
        return self

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def kill(self) -> None:
        """SIGKILL: no cleanup at all, like a crashed or evicted host."""
        if self._proc and self._proc.poll() is None:
            self._proc.kill()
        if self._proc:
            self._proc.wait()

    def stop(self, timeout: float = 10) -> None:
        if self._proc and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> HostProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
