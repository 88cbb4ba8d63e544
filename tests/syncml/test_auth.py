"""
Tests for L{mdmd.syncml.auth}.
"""

import base64
import hashlib

from twisted.trial.unittest import SynchronousTestCase

from mdmd.errors import PeerError
from mdmd.syncml.auth import (
    NONCE_SIZE,
    AuthError,
    HMACHeader,
    basic_cred_data,
    credential_hash,
    decode_nonce,
    encode_nonce,
    format_hmac_header,
    hmac_mac,
    md5_cred_data,
    md5_digest,
    new_nonce,
    parse_basic,
    parse_hmac_header,
    verify_basic,
    verify_hmac,
    verify_md5,
)

OMA_HASH = b"PtEdr8lBQ45IbT1bZIkrOQ=="
OMA_DIGEST = "Zz6EivR3yeaaENcRN6lpAQ=="


class DigestVectorTests(SynchronousTestCase):
    def test_oma_vector(self) -> None:
        """
        The OMA DM Protocol 1.2 example: Bruce2 / OhBehave / nonce "Nonce".
        """
        self.assertEqual(credential_hash("Bruce2", "OhBehave"), b"PtEdr8lBQ45IbT1bZIkrOQ==")
        digest = md5_digest("Bruce2", "OhBehave", b"Nonce")
        self.assertEqual(base64.b64encode(digest), b"Zz6EivR3yeaaENcRN6lpAQ==")

    def test_nonce_bytes_matter(self) -> None:
        """
        Hashing the base64 text of the nonce instead of its octets gives another digest.
        """
        nonce = b"\x00\x01\xfe\xff"
        self.assertNotEqual(
            md5_digest("u", "p", nonce), md5_digest("u", "p", base64.b64encode(nonce))
        )


class MD5CredTests(SynchronousTestCase):
    def test_cred_data_vector(self) -> None:
        """
        The Cred/Data text of the OMA vector, from the password or from the stored hash.
        """
        self.assertEqual(md5_cred_data("Bruce2", b"Nonce", password="OhBehave"), OMA_DIGEST)
        self.assertEqual(md5_cred_data("Bruce2", b"Nonce", stored_hash=OMA_HASH), OMA_DIGEST)

    def test_verify(self) -> None:
        """
        The OMA vector verifies with the password or the stored hash; a wrong
        nonce, name or password does not.
        """
        self.assertTrue(verify_md5(OMA_DIGEST, "Bruce2", b"Nonce", password="OhBehave"))
        self.assertTrue(verify_md5(OMA_DIGEST.encode(), "Bruce2", b"Nonce", stored_hash=OMA_HASH))
        self.assertFalse(verify_md5(OMA_DIGEST, "Bruce2", b"nonce", password="OhBehave"))
        self.assertFalse(verify_md5(OMA_DIGEST, "Bruce", b"Nonce", password="OhBehave"))
        self.assertFalse(verify_md5(OMA_DIGEST, "Bruce2", b"Nonce", password="OhBehaves"))

    def test_base64_text_is_not_the_nonce(self) -> None:
        """
        The nonce arrives as base64 text; hashing that text instead of its octets fails.
        """
        next_nonce = base64.b64encode(b"Nonce").decode()
        self.assertFalse(verify_md5(OMA_DIGEST, "Bruce2", next_nonce.encode(), password="OhBehave"))
        self.assertTrue(
            verify_md5(OMA_DIGEST, "Bruce2", decode_nonce(next_nonce), password="OhBehave")
        )

    def test_unreadable(self) -> None:
        """
        A Cred/Data that is not base64 raises L{AuthError}, a L{PeerError}.
        """
        with self.assertRaises(AuthError):
            verify_md5("not base64!", "Bruce2", b"Nonce", password="OhBehave")
        self.assertTrue(issubclass(AuthError, PeerError))

    def test_one_secret(self) -> None:
        """
        Exactly one of password and stored_hash must be given.
        """
        self.assertRaises(TypeError, verify_md5, OMA_DIGEST, "u", b"n")
        self.assertRaises(TypeError, md5_cred_data, "u", b"n", password="p", stored_hash=OMA_HASH)


class BasicTests(SynchronousTestCase):
    def test_vector(self) -> None:
        """
        The OMA Basic example: Bruce2:OhBehave.
        """
        self.assertEqual(basic_cred_data("Bruce2", "OhBehave"), "QnJ1Y2UyOk9oQmVoYXZl")
        self.assertEqual(parse_basic("QnJ1Y2UyOk9oQmVoYXZl"), ("Bruce2", "OhBehave"))
        self.assertTrue(verify_basic(b"QnJ1Y2UyOk9oQmVoYXZl", "Bruce2", "OhBehave"))
        self.assertFalse(verify_basic("QnJ1Y2UyOk9oQmVoYXZl", "Bruce2", "ohbehave"))

    def test_colon_in_password(self) -> None:
        """
        Only the first colon separates name and password; non-ASCII survives.
        """
        data = basic_cred_data("jürgen", "a:b")
        self.assertEqual(parse_basic(data), ("jürgen", "a:b"))

    def test_malformed(self) -> None:
        """
        Not base64, no colon, or not UTF-8 raise L{AuthError}.
        """
        for data in (
            "%%%",
            base64.b64encode(b"nocolon").decode(),
            base64.b64encode(b"\xff:\xfe").decode(),
        ):
            self.assertRaises(AuthError, parse_basic, data)


class NonceTests(SynchronousTestCase):
    def test_from_caller(self) -> None:
        """
        The caller's random source supplies the 16 octets.
        """
        asked = []

        def fake(n: int) -> bytes:
            asked.append(n)
            return bytes(range(n))

        self.assertEqual(new_nonce(fake), bytes(range(16)))
        self.assertEqual(asked, [NONCE_SIZE])
        self.assertEqual(NONCE_SIZE, 16)

    def test_urandom(self) -> None:
        """
        By default nonces are 16 fresh random octets.
        """
        first, second = new_nonce(), new_nonce()
        self.assertEqual(len(first), 16)
        self.assertNotEqual(first, second)

    def test_short_source(self) -> None:
        """
        A random source giving the wrong length is refused.
        """
        self.assertRaises(ValueError, new_nonce, lambda n: b"x")

    def test_text_form(self) -> None:
        """
        NextNonce text is base64 of the octets and decodes back; garbage raises L{AuthError}.
        """
        nonce = b"\x00\x01\xfe\xff" * 4
        self.assertEqual(encode_nonce(nonce), "AAH+/wAB/v8AAf7/AAH+/w==")
        self.assertEqual(decode_nonce("AAH+/wAB/v8AAf7/AAH+/w=="), nonce)
        self.assertRaises(AuthError, decode_nonce, "AAH+/wAB*")


class HMACTests(SynchronousTestCase):
    body = b'<SyncML xmlns="SYNCML:SYNCML1.2"><SyncHdr/></SyncML>'

    def expected_mac(self, name: str, password: str, nonce: bytes, body: bytes) -> str:
        inner = base64.b64encode(hashlib.md5(f"{name}:{password}".encode()).digest())
        body_hash = base64.b64encode(hashlib.md5(body).digest())
        return base64.b64encode(
            hashlib.md5(inner + b":" + nonce + b":" + body_hash).digest()
        ).decode()

    def test_mac_formula(self) -> None:
        """
        The MAC is B64(H(B64(H(name:password)) ":" nonce ":" B64(H(body)))).
        """
        expected = self.expected_mac("Bruce2", "OhBehave", b"Nonce", self.body)
        self.assertEqual(hmac_mac("Bruce2", b"Nonce", self.body, password="OhBehave"), expected)
        self.assertEqual(hmac_mac("Bruce2", b"Nonce", self.body, stored_hash=OMA_HASH), expected)

    def test_verify(self) -> None:
        """
        A header made for the body verifies; a changed body byte or nonce does not.
        """
        mac = hmac_mac("Bruce2", b"Nonce", self.body, password="OhBehave")
        header = parse_hmac_header(format_hmac_header("Bruce2", mac))
        self.assertTrue(verify_hmac(header, b"Nonce", self.body, password="OhBehave"))
        self.assertTrue(verify_hmac(header, b"Nonce", self.body, stored_hash=OMA_HASH))
        self.assertFalse(
            verify_hmac(header, b"Nonce", self.body.replace(b"Hdr", b"Hdx"), password="OhBehave")
        )
        self.assertFalse(verify_hmac(header, b"nonce", self.body, password="OhBehave"))

    def test_parse(self) -> None:
        """
        Algorithm is optional, names are case-insensitive, spacing is free, quotes may be escaped.
        """
        expected = HMACHeader(username="Bruce2", mac="dGVzdA==")
        for value in (
            'algorithm=MD5, username="Bruce2", mac=dGVzdA==',
            'username="Bruce2",mac=dGVzdA==',
            b' Algorithm = md5 ,USERNAME = "Bruce2" , MAC=dGVzdA== ',
        ):
            self.assertEqual(parse_hmac_header(value), expected)
        odd = parse_hmac_header(format_hmac_header('a"b\\c', "m"))
        self.assertEqual(odd, HMACHeader(username='a"b\\c', mac="m"))
        self.assertEqual(
            format_hmac_header("Bruce2", "m"), 'algorithm=MD5, username="Bruce2", mac=m'
        )

    def test_parse_errors(self) -> None:
        """
        Missing username or mac, another algorithm, or garbage raise L{AuthError}.
        """
        for value in (
            "algorithm=MD5, mac=abc",
            'username="u"',
            'algorithm=SHA1, username="u", mac=abc',
            'username="unterminated, mac=abc',
            "garbage",
            "",
        ):
            self.assertRaises(AuthError, parse_hmac_header, value)
