"""Core of the mailbox OAuth onboarding: domain types and one adapter per external system.

Nothing in this package imports Azure Functions; the function app's triggers, orchestrators and
activities are thin layers over it.
"""
