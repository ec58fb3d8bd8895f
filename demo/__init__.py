"""`make demo`: one real onboarding on the sandbox tenant and the local host, end to end."""
