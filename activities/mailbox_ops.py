"""The mailbox operations' own activity (``onboarding/mailbox_ops.py``), under the shared error
policy; the grants and logins reuse the onboarding's ``grant_mailboxes`` / ``verify_mailboxes``."""

from __future__ import annotations

import azure.durable_functions as df

from activities import typed_activity
from onboarding import mailbox_ops

blueprint = df.Blueprint()

typed_activity(mailbox_ops.RECORD, mailbox_ops.record_operation, on=blueprint)
typed_activity(mailbox_ops.NOTIFY_ADDED, mailbox_ops.notify_added, on=blueprint)
