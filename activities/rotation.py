"""The rotation's activities (``onboarding/rotation.py``), under the shared error policy. Each is
idempotent: a rerun finds the credential it made, and a credential already gone counts as removed."""

from __future__ import annotations

import azure.durable_functions as df

from activities import typed_activity
from onboarding import rotation

blueprint = df.Blueprint()

typed_activity(rotation.ADD_CREDENTIAL, rotation.add_credential, on=blueprint)
typed_activity(rotation.DISCARD_NEW, rotation.discard_new, on=blueprint)
typed_activity(rotation.REMOVE_OLD, rotation.remove_old, on=blueprint)
typed_activity(rotation.NOTIFY, rotation.notify_admins, on=blueprint)
