"""The hand-off to the mail product: the Key Vault secret's JSON document and its versioned schema.

``steps.create_secret`` writes the document; ``docs/schemas/credentials-v1.schema.json`` describes it
and ``docs/handoff.md`` explains it. A field added later that readers may ignore keeps version 1; a
field removed, renamed or given another meaning makes version 2 (and a new schema file).
"""

from __future__ import annotations

from pathlib import Path

# Documents written before the field existed have no ``schemaVersion``: they are version 1.
CREDENTIALS_SCHEMA_VERSION = 1
CREDENTIALS_SCHEMA = Path(__file__).resolve().parents[1] / "docs" / "schemas" / "credentials-v1.schema.json"
# Certificate documents (``onboarding.certificates``): a version 1 reader requires clientSecret, so a
# document without one is version 2. Client secrets are still written as version 1.
CREDENTIALS_SCHEMA_V2 = CREDENTIALS_SCHEMA.with_name("credentials-v2.schema.json")
CERTIFICATE_SCHEMA_VERSION = 2
