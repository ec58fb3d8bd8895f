"""A loopback port held from the moment it is chosen until the host that serves it is done.

A port found free by binding and closing a probe socket is free only until something else takes it:
any outgoing connection may get it as its local port, and a test's host once failed to start with
"address already in use" that way. A caller needs the port before the host starts (the app's
PUBLIC_BASE_URL and the sign-in redirect name it), and a host restarted after a crash must get the
same one back.

The reservation is a socket bound with SO_REUSEPORT and never listening: other binds fail and the
kernel gives no outgoing connection a port bound this way, while a host that also sets SO_REUSEPORT
(`LocalHost(port=reserved.port, reuse_port=True)`, `HostProcess(..., reuse_port=True)`, or
`python -m funchost --reuse-port`) binds and listens beside it. Between
two hosts, connections are refused as on a free port: a socket that does not listen takes none.
"""

from __future__ import annotations

import socket
from types import TracebackType


class ReservedPort:
    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # SO_REUSEPORT alone: with SO_REUSEADDR as well, Linux refuses the host's bind beside it.
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> ReservedPort:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
