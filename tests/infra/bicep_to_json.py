"""Parse Bicep files with pycep (checkov's own parser) and print them as one JSON document.

Run with the checkov environment's interpreter (``.venv-infra/bin/python``), where pycep lives:
``bicep_to_json.py FILE...`` prints ``{"FILE": <parsed>}``; a file that does not parse ends the run
with its name and the parser's message on stderr and exit status 1.

pycep predates the ``extension`` statement (Microsoft Graph Bicep extension); such lines are
blanked before parsing, keeping line numbers, since they declare no resource of their own.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from pycep import BicepParser

EXTENSION_LINE = re.compile(r"(?m)^extension\s+\S+.*$")


def blank_extensions(text: str) -> str:
    return EXTENSION_LINE.sub("", text)


def main(paths: list[str]) -> int:
    parser = BicepParser(add_line_numbers=True)
    parsed = {}
    for path in paths:
        try:
            parsed[path] = parser.parse(text=blank_extensions(Path(path).read_text(encoding="utf-8")))
        except Exception as error:
            print(f"{path}: {error}", file=sys.stderr)
            return 1
    json.dump(parsed, sys.stdout, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
