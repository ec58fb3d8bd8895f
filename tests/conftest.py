"""Fixtures shared by every test folder: the sandbox tenant (``sandbox``, ``sandbox_env``, ...)."""

pytest_plugins = ["sandbox.pytest_plugin"]
