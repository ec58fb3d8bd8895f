"""Names of the activities, shared by the orchestrators (which call them) and ``activities/``."""

RESOLVE_EXCHANGE = "resolve_exchange"
REGISTER_APP = "register_app"
ENSURE_SERVICE_PRINCIPAL = "ensure_service_principal"
CREATE_SECRET = "create_secret"  # noqa: S105 - an activity name, not a password
SEND_DECISION_EMAIL = "send_decision_email"
GRANT_APP_ROLES = "grant_app_roles"
CHECK_APP_ROLES = "check_app_roles"
REGISTER_IN_EXCHANGE = "register_in_exchange"
GRANT_MAILBOXES = "grant_mailboxes"
VERIFY_MAILBOXES = "verify_mailboxes"
COMPENSATE = "compensate"
NOTIFY_OUTCOME = "notify_outcome"
GRANT_SECRET_READER = "grant_secret_reader"  # noqa: S105 - an activity name, not a password
EMIT_WEBHOOK_EVENT = "emit_webhook_event"
DELIVER_WEBHOOK = "deliver_webhook"
RECORD_ONBOARDING = "record_onboarding"
DIAGNOSE = "diagnose"
NEXT_WEBHOOK_SEQUENCE = "next_webhook_sequence"
SEND_DRIFT_EMAIL = "send_drift_email"
LIST_ACTIVE_ONBOARDINGS = "list_active_onboardings"
# Offboarding (activities/offboarding.py)
OFFBOARD_READ_ONBOARDING = "offboard_read_onboarding"
OFFBOARD_FIND_APP = "offboard_find_app"
OFFBOARD_REMOVE_MAILBOX_ACCESS = "offboard_remove_mailbox_access"
OFFBOARD_REMOVE_EXCHANGE_SP = "offboard_remove_exchange_service_principal"
OFFBOARD_DELETE_APP = "offboard_delete_app"
OFFBOARD_DELETE_SECRET = "offboard_delete_secret"  # noqa: S105 - an activity name, not a password
OFFBOARD_REMOVE_SECRET_READER = "offboard_remove_secret_reader"  # noqa: S105 - an activity name
OFFBOARD_NOTIFY = "offboard_notify"
# Rotation (activities/rotation.py)
ROTATE_ADD_CREDENTIAL = "rotate_add_credential"
ROTATE_DISCARD_NEW = "rotate_discard_new"
ROTATE_REMOVE_OLD = "rotate_remove_old"
ROTATE_NOTIFY = "rotate_notify"
# Mailbox operations after the onboarding (onboarding/mailbox_ops.py)
MAILBOXES_RECORD = "mailboxes_record"
MAILBOXES_NOTIFY_ADDED = "mailboxes_notify_added"
