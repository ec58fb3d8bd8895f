"""The leak scan that runs after every end-to-end scenario must be able to fail."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from sandbox import Sandbox
from tests.e2e.conftest import Evidence, assert_no_secret_anywhere


@pytest.mark.parametrize("where", ["log", "log field", "task hub"])
def test_the_scan_finds_a_planted_secret(sandbox: Sandbox, tmp_path: Path, where: str):
    _app_id, _sp_id, secret = sandbox.create_client_app("leaky", roles=[], redirect_uris=[])
    evidence = Evidence()
    hub = tmp_path / "hub.db"
    hub.write_bytes(b"SQLite format 3\x00 ...")
    assert_no_secret_anywhere(sandbox, evidence, hub)  # clean so far
    if where == "log":
        logger = logging.getLogger("test.leak")
        logger.addHandler(evidence)
        logger.warning("token response: %s", secret)
        logger.removeHandler(evidence)
    elif where == "log field":  # a structured field, stored by Application Insights as a customDimension
        logger = logging.getLogger("test.leak")
        logger.addHandler(evidence)
        logger.warning("token acquired", extra={"detail": secret})
        logger.removeHandler(evidence)
    else:
        hub.write_bytes(b"SQLite format 3\x00" + f'{{"secretText":"{secret}"}}'.encode())
    with pytest.raises(AssertionError, match="secret"):
        assert_no_secret_anywhere(sandbox, evidence, hub)
