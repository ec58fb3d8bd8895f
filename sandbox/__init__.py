"""Stand-in Microsoft cloud for tests and the demo: Entra ID, Microsoft Graph, the Exchange Online admin
API, Key Vault and real Dovecot IMAP/POP, on 127.0.0.1 over real TLS. Never imported by the app."""

from sandbox.tenant import Sandbox, SandboxConfig

__all__ = ["Sandbox", "SandboxConfig"]
