"""
The Federated policy, served by mdmd itself: a sign-in page at the
AuthenticationServiceUrl and the security token it hands back.

Windows opens C{AuthenticationServiceUrl?appru=ms-app://...&login_hint=UPN} in
its Web Authentication Broker. The user signs in; the page answers with a form
that posts the token as C{wresult} to C{appru}; Windows base64-encodes that
(opaque) token into the BinarySecurityToken of GetPolicies and
RequestSecurityToken, where we verify it. The token is ours alone: an
HMAC-SHA256 over the user name and a validity window, keyed with a secret
kept 0600 in the state directory.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import html
import json
from dataclasses import dataclass

from mdmd.errors import SOAP_AUTHENTICATION, PeerError

__all__ = [
    "InvalidToken",
    "TokenClaims",
    "mint_token",
    "verify_token",
    "valid_appru",
    "sign_in_page",
    "post_back_page",
    "KEY_BYTES",
]

KEY_BYTES = 32
_PREFIX = "mdmd1"
#: Clock skew tolerated between the sign-in and the enrollment requests.
_SKEW = 60.0


class InvalidToken(PeerError):
    """
    The token is not one of ours, was altered, or has expired.
    """

    http_status = 401
    soap_subcode = SOAP_AUTHENTICATION


@dataclass(frozen=True)
class TokenClaims:
    user: str
    issued_at: float
    expires_at: float


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key: bytes, payload: str) -> bytes:
    return hmac.new(key, f"{_PREFIX}.{payload}".encode("ascii"), hashlib.sha256).digest()


def mint_token(key: bytes, user: str, now: float, lifetime: float, nonce: bytes) -> str:
    """
    A token saying that C{user} signed in at C{now}, valid for C{lifetime} seconds.
    """
    claims = {"sub": user, "iat": int(now), "exp": int(now + lifetime), "jti": _b64(nonce)}
    payload = _b64(json.dumps(claims, separators=(",", ":"), sort_keys=True).encode("utf-8"))
    return f"{_PREFIX}.{payload}.{_b64(_mac(key, payload))}"


def verify_token(key: bytes, token: str | bytes, now: float) -> TokenClaims:
    """
    The claims of a token we minted, if it is intact and current.

    @raise InvalidToken: saying why not.
    """
    if isinstance(token, bytes):
        try:
            token = token.decode("ascii")
        except UnicodeDecodeError:
            raise InvalidToken("the security token is not one of ours") from None
    parts = token.strip().split(".")
    if len(parts) != 3 or parts[0] != _PREFIX:
        raise InvalidToken("the security token is not one of ours")
    try:
        signature = _unb64(parts[2])
        claims = json.loads(_unb64(parts[1]))
    except (ValueError, binascii.Error):
        raise InvalidToken("the security token is malformed") from None
    if not hmac.compare_digest(signature, _mac(key, parts[1])):
        raise InvalidToken("the security token's signature does not verify")
    try:
        result = TokenClaims(str(claims["sub"]), float(claims["iat"]), float(claims["exp"]))
    except (KeyError, TypeError, ValueError):
        raise InvalidToken("the security token is malformed") from None
    if now > result.expires_at:
        raise InvalidToken("the security token has expired; sign in again")
    if now + _SKEW < result.issued_at:
        raise InvalidToken("the security token is not valid yet")
    return result


def valid_appru(appru: str) -> bool:
    """
    Whether C{appru} is a Web Authentication Broker callback (C{ms-app://...}).

    Anything else is refused: the page posts a credential to that address.
    """
    return appru.lower().startswith("ms-app://") and len(appru) <= 2048 and appru.isprintable()


_STYLE = (
    "body{font-family:'Segoe UI',sans-serif;margin:2em auto;max-width:26em;padding:0 1em}"
    "label,input{display:block;width:100%;box-sizing:border-box;margin:.3em 0}"
    "input{padding:.5em;font-size:1em}.error{color:#a00}"
)


def sign_in_page(action: str, appru: str, login_hint: str, service_name: str, error: str = "") -> bytes:
    """
    The HTML sign-in form shown by the Web Authentication Broker.
    """
    q = lambda value: html.escape(value, quote=True)  # noqa: E731
    message = f'<p class="error">{q(error)}</p>' if error else ""
    return (
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\">"
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>Sign in to {q(service_name)}</title><style>{_STYLE}</style></head><body>"
        f"<h1>Sign in to {q(service_name)}</h1>{message}"
        f'<form method="post" action="{q(action)}">'
        f'<input type="hidden" name="appru" value="{q(appru)}">'
        '<label for="username">User name</label>'
        f'<input id="username" name="username" autocomplete="username" value="{q(login_hint)}">'
        '<label for="password">Password</label>'
        '<input id="password" name="password" type="password" autocomplete="current-password">'
        '<input type="submit" value="Sign in"></form></body></html>'
    ).encode("utf-8")


def post_back_page(appru: str, token: str) -> bytes:
    """
    The page that posts the token to the broker as C{wresult} (Microsoft's sample).
    """
    q = lambda value: html.escape(value, quote=True)  # noqa: E731
    return (
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>Working...</title>"
        "<script>window.onload=function(){document.forms[0].submit();};</script></head><body>"
        f'<form method="post" action="{q(appru)}">'
        f'<p><input type="hidden" name="wresult" value="{q(token)}"></p>'
        '<input type="submit" value="Continue"></form></body></html>'
    ).encode("utf-8")
