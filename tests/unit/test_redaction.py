import logging

import jwt
import pytest

from onboarding.redaction import RedactingFilter, redact

TOKEN = jwt.encode({"aud": "x", "roles": ["IMAP.AccessAsApp"]}, "k" * 32, algorithm="HS256")
SECRET = "Q~abcDEF123.secret_value-xyz"


@pytest.mark.parametrize(
    "line",
    [
        f"Authorization: Bearer {TOKEN}",
        f"'Authorization': 'Bearer {TOKEN}'",
        f"token response {{'access_token': '{TOKEN}', 'expires_in': 3599}}",
        f'{{"secretText": "{SECRET}", "keyId": "k1"}}',
        f"grant_type=client_credentials&client_id=abc&client_secret={SECRET}&scope=x",
        f'{{"clientSecret": "{SECRET}"}}',
    ],
)
def test_tokens_and_secrets_are_removed_from_log_text(line):
    cleaned = redact(line)
    assert TOKEN not in cleaned and SECRET not in cleaned
    assert "[redacted]" in cleaned


def test_ordinary_text_is_left_alone():
    line = "activity create_secret: transient failure (TooManyRequests) for app 5e5addcd-3e8d-4e90"
    assert redact(line) == line


def test_the_filter_cleans_arguments_and_drops_exception_text(caplog):
    logger = logging.getLogger("test.redaction")
    logger.addFilter(RedactingFilter())
    with caplog.at_level(logging.INFO, logger="test.redaction"):
        logger.info("sending %s", f"Authorization: Bearer {TOKEN}")
        try:
            raise RuntimeError(f"401 body: client_secret={SECRET}")
        except RuntimeError:
            logger.exception("call failed")
    text = caplog.text
    assert TOKEN not in text and SECRET not in text
    assert "RuntimeError" in text
