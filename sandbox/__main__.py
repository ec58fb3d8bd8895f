"""``python -m sandbox``: run the sandbox tenant as a standalone process until interrupted.

Prints the function app's settings as one JSON line on stdout once every service listens (a parent
process can read that line), and writes them to ``--env-file`` as KEY=value lines if asked.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path

from sandbox.tenant import PORT_NAMES, Sandbox, SandboxConfig


def _port(text: str) -> tuple[str, int]:
    name, _, number = text.partition("=")
    if name not in PORT_NAMES or not number.isdigit():
        raise argparse.ArgumentTypeError(f"expected NAME=PORT with NAME one of {', '.join(PORT_NAMES)}")
    return name, int(number)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox", description=__doc__)
    parser.add_argument("--base-dir", type=Path, default=Path(".sandbox"), help="state, TLS and mail files")
    parser.add_argument("--seed", type=int, default=0, help="seed for ids and injected faults")
    parser.add_argument("--port", type=_port, action="append", default=[], help="NAME=PORT, e.g. graph=8443")
    parser.add_argument("--mailbox", action="append", help="mailbox address (repeatable)")
    parser.add_argument("--no-mail", action="store_true", help="do not start Dovecot")
    parser.add_argument("--env-file", type=Path, help="write the settings here as KEY=value lines")
    args = parser.parse_args(argv)

    config = SandboxConfig(
        base_dir=args.base_dir,
        seed=args.seed,
        ports=dict(args.port),
        mailboxes=args.mailbox,
        start_mail=not args.no_mail,
    )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with Sandbox(config) as sb:
        if args.env_file:
            args.env_file.write_text("".join(f"{k}={v}\n" for k, v in sb.env.items()), encoding="utf-8")
            args.env_file.chmod(0o600)
        print(json.dumps(sb.env), flush=True)
        print(f"sandbox tenant {sb.tenant_id} listening: {sb.ports}", file=sys.stderr, flush=True)
        stop.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
