"""The access-token validator on its own: v2.0 issuer form, key rotation, time claims, algorithms, roles."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from onboarding.access_tokens import (
    InvalidToken,
    MissingRole,
    Role,
    TokenConfig,
    TokenValidator,
    TokenVersion,
)

TENANT = "11111111-2222-3333-4444-555555555555"
CLIENT_ID = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"


class Tenant:
    """A tenant's discovery document and JWKS over loopback http; ``rotate`` replaces the signing key."""

    def __init__(self) -> None:
        self.keys: list[tuple[str, Any]] = []
        self.jwks_fetches = 0
        self.rotate()
        tenant = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.endswith("/openid-configuration"):
                    body: dict[str, Any] = {"jwks_uri": f"{tenant.authority}/{TENANT}/discovery/v2.0/keys"}
                else:
                    tenant.jwks_fetches += 1
                    body = {"keys": [tenant.jwk(kid, key) for kid, key in tenant.keys]}
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.authority = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def rotate(self) -> None:
        self.keys = [
            (f"key{len(self.keys) + 1}", rsa.generate_private_key(public_exponent=65537, key_size=2048))
        ]

    @staticmethod
    def jwk(kid: str, key: Any) -> dict[str, Any]:
        return {**json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key())), "kid": kid, "use": "sig"}

    def token(self, **claims: Any) -> str:
        now = int(time.time())
        kid, key = self.keys[0]
        body = {
            "iss": f"{self.authority}/{TENANT}/v2.0",
            "aud": CLIENT_ID,
            "tid": TENANT,
            "oid": "caller-sp",
            "azp": "caller-app",
            "roles": [Role.READ.value],
            "iat": now,
            "nbf": now,
            "exp": now + 3600,
            **claims,
        }
        return jwt.encode(
            {k: v for k, v in body.items() if v is not None}, key, "RS256", headers={"kid": kid}
        )

    def validator(
        self, version: TokenVersion = TokenVersion.V2, cooldown: float = 30, clock: float | None = None
    ) -> TokenValidator:
        config = TokenConfig(TENANT, self.authority, (CLIENT_ID,), version, "http://sts.example")
        if clock is None:
            return TokenValidator(config, refetch_cooldown_seconds=cooldown)
        return TokenValidator(config, refetch_cooldown_seconds=cooldown, clock=lambda: clock)


@pytest.fixture
def tenant() -> Iterator[Tenant]:
    t = Tenant()
    yield t
    t.server.shutdown()


def refused(validator: TokenValidator, token: str, reason: str, role: Role = Role.READ) -> None:
    with pytest.raises(InvalidToken) as caught:
        validator.validate(token, role)
    assert reason in str(caught.value) and token not in str(caught.value)


def test_v2_token_for_the_api_is_accepted_and_names_the_calling_app(tenant: Tenant) -> None:
    caller = tenant.validator().validate(tenant.token(), Role.READ)
    assert (caller.object_id, caller.app_id) == ("caller-sp", "caller-app")


def test_v1_issuer_form_is_refused_when_the_api_asks_for_v2_tokens(tenant: Tenant) -> None:
    refused(tenant.validator(TokenVersion.V2), tenant.token(iss=f"http://sts.example/{TENANT}/"), "issuer")
    assert tenant.validator(TokenVersion.V1).validate(
        tenant.token(iss=f"http://sts.example/{TENANT}/"), Role.READ
    )


def test_keys_are_cached_and_fetched_again_for_an_unknown_key_id(tenant: Tenant) -> None:
    validator = tenant.validator(cooldown=0)
    validator.validate(tenant.token(), Role.READ)
    validator.validate(tenant.token(), Role.READ)
    assert tenant.jwks_fetches == 1
    tenant.rotate()  # the tenant rolls its signing key: tokens now name a kid the cache lacks
    validator.validate(tenant.token(), Role.READ)
    assert tenant.jwks_fetches == 2


def test_unknown_key_ids_do_not_refetch_the_keys_within_the_cooldown(tenant: Tenant) -> None:
    validator = tenant.validator(cooldown=30)
    validator.validate(tenant.token(), Role.READ)
    tenant.rotate()
    refused(validator, tenant.token(), "not signed by a key of the tenant")
    refused(validator, tenant.token(), "not signed by a key of the tenant")
    assert tenant.jwks_fetches == 1


def test_token_not_yet_valid_beyond_the_leeway_is_refused(tenant: Tenant) -> None:
    refused(tenant.validator(), tenant.token(nbf=int(time.time()) + 3600), "not valid yet")
    assert tenant.validator().validate(tenant.token(nbf=int(time.time()) + 30), Role.READ)


def test_an_expired_token_is_refused_beyond_the_leeway_only(tenant: Tenant) -> None:
    refused(tenant.validator(), tenant.token(exp=int(time.time()) - 3600), "expired")
    assert tenant.validator().validate(tenant.token(exp=int(time.time()) - 30), Role.READ)


def test_token_times_are_judged_on_the_validators_clock(tenant: Tenant) -> None:
    issued_tomorrow = tenant.token(nbf=int(time.time()) + 86400, exp=int(time.time()) + 90000)
    refused(tenant.validator(), issued_tomorrow, "not valid yet")
    assert tenant.validator(clock=time.time() + 86400).validate(issued_tomorrow, Role.READ)
    refused(tenant.validator(clock=time.time() + 2 * 86400), issued_tomorrow, "expired")


def test_token_without_expiry_or_tenant_is_refused(tenant: Tenant) -> None:
    refused(tenant.validator(), tenant.token(exp=None), "exp")
    refused(tenant.validator(), tenant.token(tid=None), "tid")


def test_unsigned_token_is_refused(tenant: Tenant) -> None:
    unsigned = jwt.encode({"aud": CLIENT_ID, "tid": TENANT}, "", algorithm="none")
    refused(tenant.validator(), unsigned, "RS256")


def test_read_write_role_allows_reading_but_read_does_not_allow_writing(tenant: Tenant) -> None:
    validator = tenant.validator()
    assert validator.validate(tenant.token(roles=[Role.READ_WRITE.value]), Role.READ)
    with pytest.raises(MissingRole, match=r"Onboardings\.ReadWrite"):
        validator.validate(tenant.token(roles=[Role.READ.value]), Role.READ_WRITE)
    with pytest.raises(MissingRole):
        validator.validate(tenant.token(roles=None, scp="Onboardings.ReadWrite"), Role.READ)
