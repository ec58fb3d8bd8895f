"""Trust store for the azure-core (aiohttp) clients.

aiohttp builds its default verifying SSL context once, when it is imported, so a trust store named
later (``SSL_CERT_FILE`` set after something imported aiohttp) is ignored, unlike httpx and requests,
which read it when a client is built. Naming OpenSSL's current default CA file explicitly gives the
azure-core clients the same behaviour as the others.
"""

from __future__ import annotations

import ssl
from typing import Any


def azure_transport_options() -> dict[str, Any]:
    """Keyword arguments for azure-core clients and azure-identity credentials."""
    cafile = ssl.get_default_verify_paths().cafile  # None unless the file exists
    return {"connection_verify": cafile} if cafile else {}
