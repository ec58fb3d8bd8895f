"""Orchestrators: the onboarding procedure and its per-batch mailbox work."""

from orchestrations.onboarding import blueprint

__all__ = ["blueprint"]
