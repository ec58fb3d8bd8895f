"""`make demo`, the README's first command, onboards its three mailboxes and logs in to each."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_demo_onboards_its_mailboxes_and_a_mail_client_logs_in_to_each() -> None:
    env = {k: v for k, v in os.environ.items() if k != "SANDBOX_PROFILE"}  # its own sandbox, as run by hand
    done = subprocess.run(
        [sys.executable, "-m", "demo"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Onboarding succeeded:" in done.stdout
    for mailbox in ("support", "sales", "billing"):
        assert f"  {mailbox}@sandbox.example: verified" in done.stdout
        assert f"  {mailbox}@sandbox.example: IMAP login ok" in done.stdout
        assert (
            "POP3 login ok"
            in done.stdout.split(f"  {mailbox}@sandbox.example: IMAP login ok")[1].splitlines()[0]
        )
