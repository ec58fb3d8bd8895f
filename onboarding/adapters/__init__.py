"""One adapter per external system: Entra ID tokens, Microsoft Graph, the Exchange Online admin API,
Key Vault, IMAP/POP logins and completion callbacks.

Import the submodule you need (``from onboarding.adapters.graph import GraphDirectory``). This file
imports none of them on purpose: the function app imports ``onboarding`` at start-up and must not pay
for msgraph-sdk, azure-identity or Key Vault clients until an activity uses them (cold start).

Every adapter maps its failures to ``onboarding.errors`` and keeps tokens, secrets and response
bodies out of exception messages: those messages are persisted by Durable Functions and shown to admins.
"""
