"""
Tests for L{mdmd.enroll.federated}: the sign-in token and pages.
"""

from __future__ import annotations

import html
import re

from twisted.trial.unittest import SynchronousTestCase

from mdmd.enroll import federated

KEY = b"k" * 32
NONCE = b"n" * 12


class TokenTests(SynchronousTestCase):
    def test_round_trip(self) -> None:
        """
        A token minted for a user verifies within its lifetime, as text or bytes.
        """
        token = federated.mint_token(KEY, "alice@example.com", 1000.0, 900, NONCE)
        claims = federated.verify_token(KEY, token, 1500.0)
        self.assertEqual(claims, federated.TokenClaims("alice@example.com", 1000.0, 1900.0))
        self.assertEqual(federated.verify_token(KEY, token.encode() + b"\n", 1900.0).user, "alice@example.com")

    def test_refused(self) -> None:
        """
        Expired, future, altered, foreign-key and malformed tokens are refused with a reason.
        """
        token = federated.mint_token(KEY, "alice", 1000.0, 900, NONCE)
        prefix, payload, mac = token.split(".")
        forged_payload = federated._b64(b'{"exp":9999999999,"iat":0,"jti":"x","sub":"mallory"}')
        for candidate, now, expected in (
            (token, 1901.0, "expired"),
            (token, 900.0, "not valid yet"),
            (f"{prefix}.{forged_payload}.{mac}", 1000.0, "does not verify"),
            (federated.mint_token(b"x" * 32, "alice", 1000.0, 900, NONCE), 1000.0, "does not verify"),
            ("eyJhbGciOi.JWT.here", 1000.0, "not one of ours"),
            (f"{prefix}.!!!.{mac}", 1000.0, "malformed"),
            (b"\xff\xfe", 1000.0, "not one of ours"),
        ):
            with self.assertRaises(federated.InvalidToken) as caught:
                federated.verify_token(KEY, candidate, now)
            self.assertIn(expected, str(caught.exception))

    def test_tokens_differ(self) -> None:
        """
        Two sign-ins of the same user at the same time give different tokens (the nonce).
        """
        self.assertNotEqual(
            federated.mint_token(KEY, "a", 1.0, 9, b"1" * 12), federated.mint_token(KEY, "a", 1.0, 9, b"2" * 12)
        )


class PageTests(SynchronousTestCase):
    def test_appru(self) -> None:
        """
        Only ms-app:// callbacks are accepted: the page posts a credential there.
        """
        self.assertTrue(federated.valid_appru("ms-app://s-1-15-2-1234"))
        self.assertTrue(federated.valid_appru("MS-APP://windows.immersivecontrolpanel"))
        for bad in ("https://evil.example/", "javascript:alert(1)", "", "ms-app://x\n"):
            self.assertFalse(federated.valid_appru(bad), bad)

    def test_sign_in_page_escapes(self) -> None:
        """
        The login hint, callback and error are HTML-escaped into the form.
        """
        page = federated.sign_in_page("/auth", 'ms-app://a"b', '<script>x</script>', "Contoso", "bad & wrong").decode()
        self.assertIn('value="ms-app://a&quot;b"', page)
        self.assertIn("&lt;script&gt;x&lt;/script&gt;", page)
        self.assertIn("bad &amp; wrong", page)
        self.assertIn('action="/auth"', page)

    def test_post_back_page(self) -> None:
        """
        The success page posts wresult to appru (Microsoft's sample form).
        """
        page = federated.post_back_page("ms-app://abc", "mdmd1.x.y").decode()
        action = re.search(r'<form method="post" action="([^"]*)"', page).group(1)  # type: ignore[union-attr]
        value = re.search(r'name="wresult" value="([^"]*)"', page).group(1)  # type: ignore[union-attr]
        self.assertEqual((html.unescape(action), html.unescape(value)), ("ms-app://abc", "mdmd1.x.y"))
        self.assertIn("document.forms[0].submit()", page)
