"""
Tests for L{mdmd.syncml.auth}.
"""

import base64

from twisted.trial.unittest import SynchronousTestCase

from mdmd.syncml.auth import credential_hash, md5_digest


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
