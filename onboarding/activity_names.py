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
EMIT_WEBHOOK_EVENT = "emit_webhook_event"
DELIVER_WEBHOOK = "deliver_webhook"
# Offboarding (activities/offboarding.py)
OFFBOARD_READ_ONBOARDING = "offboard_read_onboarding"
OFFBOARD_FIND_APP = "offboard_find_app"
OFFBOARD_REMOVE_MAILBOX_ACCESS = "offboard_remove_mailbox_access"
OFFBOARD_REMOVE_EXCHANGE_SP = "offboard_remove_exchange_service_principal"
OFFBOARD_DELETE_APP = "offboard_delete_app"
OFFBOARD_DELETE_SECRET = "offboard_delete_secret"  # noqa: S105 - an activity name, not a password
OFFBOARD_NOTIFY = "offboard_notify"
