"""``mailonboard``: the operator's command line over the onboarding HTTP API (docs/cli.md)."""
