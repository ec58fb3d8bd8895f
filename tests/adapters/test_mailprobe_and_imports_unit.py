"""Login probe edge cases without a mail server, and what importing the adapters package costs."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from pathlib import Path

from onboarding.adapters.mailprobe import probe_login, xoauth2
from onboarding.domain import Protocol

ROOT = Path(__file__).resolve().parents[2]


def test_xoauth2_initial_response_format() -> None:
    assert xoauth2("a@contoso.test", "tok") == b"user=a@contoso.test\x01auth=Bearer tok\x01\x01"


async def test_a_server_that_never_answers_is_reported_as_a_timeout() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    accepted: list[socket.socket] = []
    thread = threading.Thread(target=lambda: accepted.append(listener.accept()[0]), daemon=True)
    thread.start()
    port = listener.getsockname()[1]
    result = await probe_login("127.0.0.1", port, Protocol.POP, "a@contoso.test", "tok", timeout=0.3)
    assert not result.ok and "did not answer" in result.detail and "tok" not in result.detail
    thread.join(1)
    for s in (*accepted, listener):
        s.close()


def test_importing_the_adapters_package_loads_no_cloud_sdk() -> None:
    """function_app imports ``onboarding`` at start-up; the SDKs must wait until an activity needs them."""
    code = (
        "import sys, onboarding.adapters, onboarding.adapters.identity, onboarding.adapters.mailprobe, "
        "onboarding.adapters.webhook\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in {'msgraph', 'kiota_http', 'httpx', 'aiohttp'} "
        "or m.startswith(('azure.identity', 'azure.keyvault', 'azure.core')))\n"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
