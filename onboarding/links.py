"""Signed links in emails, and signatures on completion callbacks.

A link token is a compact JWT (HS256, no ``typ`` header) with claims ``sub`` (onboarding id), ``pur``
(purpose), ``non`` (the nonce of the wait it answers) and ``exp``. Each purpose is signed with its own
key derived from ``LINK_SIGNING_KEY`` (HMAC-SHA256 of a label), so a consent ``state`` cannot be
replayed as an approval and vice versa, even by editing the ``pur`` claim. Callbacks are signed with
yet another derived key: a callback receiver is given that key (``callback_key``) and can verify
callbacks, but cannot forge links.

Approval links: the decision email carries one ``decide`` link whose page offers Approve and Reject.
``approve`` and ``reject`` links allow only their own decision (for emails that prefer two links).
Tokens carry no secret; they are bearer capabilities bounded by the nonce (one decision per wait)
and the expiry (the consent deadline).

Rotation: new links are signed with the current key only; verification also accepts the key before
the last rotation (``LINK_SIGNING_KEY_PREVIOUS``) while the operator keeps it, which must be at least
the longest link lifetime (``CONSENT_DEADLINE_HOURS``). Once it is removed, an old link gets the same
"signature does not match" page as a forged one: nothing can tell them apart without the old key.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import sys
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING
from urllib.parse import urlencode

if TYPE_CHECKING:
    from onboarding.settings import Settings

MAX_TOKEN_LENGTH = 1024  # ours are ~230 characters; anything much longer is not ours
_TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
_ALGORITHM = "HS256"


class LinkPurpose(StrEnum):
    CONSENT = "consent"  # the ``state`` of the Entra admin consent URL
    DECIDE = "decide"  # approval page offering both Approve and Reject (grant mode)
    APPROVE = "approve"  # approval page offering Approve only
    REJECT = "reject"  # approval page offering Reject only


# Which approval decisions each purpose allows.
DECISIONS: dict[LinkPurpose, frozenset[str]] = {
    LinkPurpose.DECIDE: frozenset({"approve", "reject"}),
    LinkPurpose.APPROVE: frozenset({"approve"}),
    LinkPurpose.REJECT: frozenset({"reject"}),
    LinkPurpose.CONSENT: frozenset(),
}
APPROVAL_PURPOSES = frozenset({LinkPurpose.DECIDE, LinkPurpose.APPROVE, LinkPurpose.REJECT})


@dataclass(frozen=True)
class LinkClaims:
    onboarding_id: str
    purpose: LinkPurpose
    nonce: str
    expires_at: datetime


class LinkError(Exception):
    """A link that cannot be honoured. ``reason`` is a sentence for the page; it holds no secret."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def utcnow() -> datetime:
    return datetime.now(UTC)


def derive_key(key: bytes, label: str) -> bytes:
    """A key for one use, derived from the app's signing key (HMAC-SHA256 as a PRF)."""
    return hmac.new(key, f"mail-onboarding/{label}/v1".encode(), hashlib.sha256).digest()


class LinkSigner:
    """Signs with ``key`` only; verifies with ``key`` or any of ``previous`` (the key before a
    rotation, kept for the longest link lifetime so links already emailed keep working)."""

    def __init__(
        self, key: bytes, *, previous: Iterable[bytes] = (), clock: Callable[[], datetime] = utcnow
    ) -> None:
        accepted = (key, *previous)
        if any(len(k) < 32 for k in accepted):
            raise ValueError("the link signing key must be at least 32 bytes")
        self._keys = {purpose: derive_key(key, f"link/{purpose.value}") for purpose in LinkPurpose}
        self._accepted = {
            purpose: tuple(derive_key(k, f"link/{purpose.value}") for k in accepted)
            for purpose in LinkPurpose
        }
        self._clock = clock

    @classmethod
    def from_settings(cls, settings: Settings) -> LinkSigner:
        current, *previous = settings.link_verification_keys
        return cls(current, previous=previous)

    def issue(self, onboarding_id: str, purpose: LinkPurpose, nonce: str, expires_at: datetime) -> str:
        """A URL-safe token binding onboarding, purpose, nonce and expiry."""
        import jwt  # imported on use: it costs ~90 ms, and cold start matters

        if expires_at.tzinfo is None:
            raise ValueError("expires_at must be timezone-aware")
        claims = {
            "sub": onboarding_id,
            "pur": LinkPurpose(purpose).value,
            "non": nonce,
            "exp": int(expires_at.timestamp()),
        }
        return jwt.encode(
            claims, self._keys[LinkPurpose(purpose)], algorithm=_ALGORITHM, headers={"typ": None}
        )

    def verify(
        self, token: str, *, purposes: Collection[LinkPurpose], onboarding_id: str | None = None
    ) -> LinkClaims:
        """The token's claims, or ``LinkError``: malformed, forged, wrong purpose, expired or foreign."""
        import jwt

        if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH or not _TOKEN_SHAPE.fullmatch(token):
            raise LinkError("This link is malformed. Open the link from the email again, without changes.")
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except (jwt.PyJWTError, ValueError, TypeError):
            raise LinkError(
                "This link is malformed. Open the link from the email again, without changes."
            ) from None
        forged = LinkError(
            "This link is not valid: its signature does not match. It was changed, or it was signed "
            "with a key this service no longer accepts. Use the link from the latest email, or ask "
            "the requester to submit the onboarding again."
        )
        if header.get("alg") != _ALGORITHM or not isinstance(unverified, dict):
            raise forged
        try:
            purpose = LinkPurpose(str(unverified.get("pur")))
        except ValueError:
            raise forged from None
        claims = self._decode(token, purpose, forged)
        sub, nonce, exp = claims.get("sub"), claims.get("non"), claims.get("exp")
        if (
            not isinstance(sub, str)
            or not isinstance(nonce, str)
            or isinstance(exp, bool)
            or not isinstance(exp, int)
        ):
            raise forged
        if purpose not in purposes:
            raise LinkError("This link is meant for another page or action.")
        if onboarding_id is not None and sub != onboarding_id:
            raise LinkError("This link belongs to another onboarding request.")
        try:
            expires_at = datetime.fromtimestamp(exp, UTC)
        except (OverflowError, OSError, ValueError):
            raise forged from None
        if self._clock() >= expires_at:
            raise LinkError("This link has expired. Ask the requester to submit the onboarding again.")
        return LinkClaims(onboarding_id=sub, purpose=purpose, nonce=nonce, expires_at=expires_at)

    def _decode(self, token: str, purpose: LinkPurpose, forged: LinkError) -> dict[str, object]:
        """The claims, checked with the current key, else with the key before the last rotation."""
        import jwt

        for key in self._accepted[purpose]:
            try:
                claims: dict[str, object] = jwt.decode(
                    token,
                    key,
                    algorithms=[_ALGORITHM],
                    options={"require": ["sub", "pur", "non", "exp"], "verify_exp": False},
                )
                return claims
            except jwt.InvalidSignatureError:
                continue
            except (jwt.PyJWTError, ValueError, TypeError):
                raise LinkError(
                    "This link is malformed. Open the link from the email again, without changes."
                ) from None
        raise forged


def consent_redirect_uri(settings: Settings) -> str:
    """Where Entra sends the admin after consent; registered on the new app's ``web.redirectUris``."""
    return f"{settings.public_base_url}/api/consent/callback"


def consent_url(settings: Settings, *, tenant_id: str, app_id: str, state: str) -> str:
    query = urlencode({"client_id": app_id, "redirect_uri": consent_redirect_uri(settings), "state": state})
    return f"{settings.authority_host}/{tenant_id}/adminconsent?{query}"


def mailbox_list_url(settings: Settings, consent_state: str) -> str:
    """The page listing every mailbox of a consent-mode onboarding, where the signed-in admin confirms
    the list (the consent callback page, opened without Entra's answer)."""
    return f"{settings.public_base_url}/api/consent/callback?{urlencode({'state': consent_state})}"


def approval_url(settings: Settings, token: str) -> str:
    return f"{settings.public_base_url}/api/approvals/{token}"


def callback_key(key: bytes) -> bytes:
    """The key completion-callback receivers hold: derived, so it cannot sign links."""
    return derive_key(key, "callback")


def sign_callback(key: bytes, body: bytes, timestamp: int) -> str:
    """Value of ``X-Onboarding-Signature``: ``t=<ts>,v1=<hex HMAC-SHA256 of "<ts>.<body>">``.

    ``key`` is the app's signing key (``LINK_SIGNING_KEY``); the HMAC uses ``callback_key(key)``.
    """
    mac = hmac.new(callback_key(key), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify_callback(receiver_key: bytes, body: bytes, header: str, *, now: int, tolerance: int = 300) -> bool:
    """What a receiver does (reference for docs/api.md): ``receiver_key`` is ``callback_key(...)``."""
    parts = dict(item.split("=", 1) for item in header.split(",") if "=" in item)
    try:
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs(now - timestamp) > tolerance:
        return False
    expected = hmac.new(receiver_key, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts.get("v1", ""))


def main(argv: list[str]) -> int:
    """``python -m onboarding.links callback-key``: print the hex key to give callback receivers."""
    if argv != ["callback-key"]:
        print("usage: python -m onboarding.links callback-key   (reads LINK_SIGNING_KEY)", file=sys.stderr)
        return 2
    from onboarding.settings import load_settings

    print(json.dumps({"callbackKeyHex": callback_key(load_settings().link_signing_key).hex()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
