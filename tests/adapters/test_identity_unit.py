"""Token errors in an admin's words, and what a token says about itself."""

from __future__ import annotations

import jwt
import pytest
from azure.core.exceptions import ClientAuthenticationError, ServiceRequestError
from azure.identity import CredentialUnavailableError

from onboarding.adapters.identity import acquire_token, decode_claims, map_identity_error
from onboarding.errors import InvalidRequestError, OnboardingError, PermissionDeniedError, TransientError

SECRET = "Qx8Q~not-a-real-secret-but-looks-like-one"


def entra_failure(code: str) -> ClientAuthenticationError:
    # How azure-identity words it: the description Entra returned, which may quote the request.
    return ClientAuthenticationError(
        message=f"ClientSecretCredential.get_token failed: AADSTS{code}: details client_secret={SECRET} "
        "Trace ID: 1 Correlation ID: 2"
    )


@pytest.mark.parametrize(
    ("code", "kind", "words"),
    [
        ("7000215", InvalidRequestError, "secret id"),
        ("7000222", InvalidRequestError, "expired"),
        ("700016", TransientError, "replicate"),
        ("90002", InvalidRequestError, "tenant"),
    ],
)
def test_aadsts_codes_map_to_a_cause_and_fix(code: str, kind: type[OnboardingError], words: str) -> None:
    error = map_identity_error(entra_failure(code))
    assert type(error) is kind
    assert f"AADSTS{code}" in error.message
    assert words in str(error)
    assert SECRET not in str(error) and "Correlation" not in str(error)


def test_other_failures() -> None:
    assert isinstance(map_identity_error(ServiceRequestError("connection reset")), TransientError)
    unavailable = map_identity_error(CredentialUnavailableError("no IDENTITY_ENDPOINT"))
    assert "AZURE_CLIENT_ID" in unavailable.fix and not unavailable.retryable
    refused = map_identity_error(ClientAuthenticationError(message=f"AADSTS12345: no. {SECRET}"))
    assert isinstance(refused, PermissionDeniedError) and "AADSTS12345" in str(refused)
    assert SECRET not in str(refused)


class StaticCredential:
    def __init__(self, token: str) -> None:
        self.token = token

    async def get_token(self, *scopes: str, **kwargs: object) -> object:
        from azure.core.credentials import AccessToken

        return AccessToken(self.token, 1_900_000_000)


async def test_claims_are_read_without_verifying_and_the_token_is_not_in_repr() -> None:
    token = jwt.encode(
        {"aud": "https://exchange.example.test", "roles": ["IMAP.AccessAsApp"], "appid": "app", "oid": "sp"},
        "any-key-the-resource-verifies-not-us",
        algorithm="HS256",
    )
    info = await acquire_token(StaticCredential(token), "https://exchange.example.test/.default")  # type: ignore[arg-type]
    assert (info.audience, info.roles, info.app_id, info.object_id) == (
        "https://exchange.example.test",
        ("IMAP.AccessAsApp",),
        "app",
        "sp",
    )
    assert info.expires_on == 1_900_000_000
    assert token not in repr(info)
    with pytest.raises(InvalidRequestError):
        decode_claims("not-a-token")
