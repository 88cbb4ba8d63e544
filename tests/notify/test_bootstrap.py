"""
Tests for L{mdmd.notify.bootstrap}: the NETWPIN and USERPIN keys, the MAC,
the WSP content type and push, their parsing, and segmentation.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any, cast

from twisted.trial.unittest import SynchronousTestCase

from mdmd.notify.bootstrap import (
    BootstrapPin,
    InvalidImsi,
    InvalidPin,
    Sec,
    bootstrap_pdu,
    bootstrap_segments,
    compute_mac,
    content_type,
    netwpin_key,
    parse_bootstrap_push,
    parse_imsi,
)
from mdmd.notify.wap import (
    IEI_CONCAT_8BIT,
    IEI_CONCAT_16BIT,
    MalformedPush,
    reassemble,
    split_udh,
    wsp_push_pdu,
)


def semi_octets(imsi: str) -> bytes:
    """
    The IMSI as 3GPP TS 24.008 writes a mobile identity, spelled out: the
    first octet holds digit 1 in its high nibble and, in its low nibble, the
    odd/even bit (8 when the number of digits is odd) with identity type
    IMSI (1); then two digits an octet, the earlier one in the low nibble,
    and a filler F in the last high nibble when the digits run out.
    """
    digits = [int(d) for d in imsi]
    first = (digits[0] << 4) | (0x8 if len(digits) % 2 else 0x0) | 0x1
    rest = digits[1:] + ([0xF] if len(digits[1:]) % 2 else [])
    return bytes([first] + [(rest[i + 1] << 4) | rest[i] for i in range(0, len(rest), 2)])


class KeyTests(SynchronousTestCase):
    def test_netwpin_odd_imsi(self) -> None:
        """
        A 15-digit IMSI: parity nibble 9, no filler, 8 octets; worked by hand
        for 262011234567890 (9 2 | 6 2 | 0 1 | 1 2 | 3 4 | 5 6 | 7 8 | 9 0,
        each pair low nibble first).
        """
        self.assertEqual(netwpin_key("262011234567890"), bytes.fromhex("2926102143658709"))
        self.assertEqual(netwpin_key("262011234567890"), semi_octets("262011234567890"))

    def test_netwpin_even_imsi(self) -> None:
        """
        A 14-digit IMSI: parity nibble 1, and the filler F ends the last octet
        (1 2 | 1 4 | 0 7 | 6 5 | 0 1 | 2 3 | 4 5 | 6 F).
        """
        self.assertEqual(netwpin_key("21407650123456"), bytes.fromhex("21417056103254F6"))
        self.assertEqual(netwpin_key("21407650123456"), semi_octets("21407650123456"))

    def test_netwpin_more_imsis(self) -> None:
        """
        The derivation agrees with the spelled-out TS 24.008 form for short and long IMSIs.
        """
        for imsi in ("404020506708200", "310150123456789", "123456", "1234567", "00101000000001"):
            self.assertEqual(netwpin_key(imsi), semi_octets(imsi), imsi)

    def test_imsi_checked(self) -> None:
        """
        An IMSI is 6 to 15 digits; blanks are dropped; anything else is refused by name.
        """
        self.assertEqual(parse_imsi(" 262 01 1234567890 "), "262011234567890")
        for text in ("", "12345", "1" * 16, "26201x234567890", "+262011234567890"):
            with self.assertRaises(InvalidImsi) as caught:
                netwpin_key(text)
            self.assertIn("is not an IMSI", str(caught.exception))

    def test_userpin_key(self) -> None:
        """
        The USERPIN key is the PIN's ASCII digits; NETWPIN's ignores the PIN
        and takes the IMSI.
        """
        self.assertEqual(BootstrapPin.user("1234").key("262011234567890"), b"1234")
        self.assertEqual(BootstrapPin.network().key("262011234567890"), netwpin_key("262011234567890"))

    def test_userpin_checked_and_hidden(self) -> None:
        """
        A USERPIN is 4 to 16 digits; a refusal does not repeat it; its repr never shows it.
        """
        for pin in ("", "123", "12a4", "1" * 17, " 1234", "１２３４"):
            with self.assertRaises(InvalidPin) as caught:
                BootstrapPin.user(pin)
            self.assertEqual(str(caught.exception), "a USERPIN is 4 to 16 decimal digits")
        with self.assertRaises(InvalidPin):
            BootstrapPin.user(cast(Any, 1234))  # not a str: refused all the same
        user_pin = BootstrapPin.user("98765432")
        self.assertNotIn("98765432", repr(user_pin))
        self.assertIn("USERPIN", repr(user_pin))

    def test_other_sec_values_not_sent(self) -> None:
        """
        USERNETWPIN and USERPINMAC are known (for parsing) but never sent.
        """
        with self.assertRaises(ValueError):
            BootstrapPin(Sec.USERNETWPIN, "1234").key("262011234567890")


class MacTests(SynchronousTestCase):
    def test_rfc2202_vector(self) -> None:
        """
        HMAC-SHA1 test case 2 of RFC 2202, in upper-case hex.
        """
        self.assertEqual(
            compute_mac(b"Jefe", b"what do ya want for nothing?"),
            "EFFCDF6AE5EB2FA2D27416D5F184DF9C259A7C79",
        )

    def test_against_hmac_module(self) -> None:
        """
        The MAC of a document with a NETWPIN key is what the hmac module computes.
        """
        document = bytes(range(256)) * 2
        key = netwpin_key("262011234567890")
        self.assertEqual(compute_mac(key, document), hmac.new(key, document, hashlib.sha1).hexdigest().upper())


MAC = "EFFCDF6AE5EB2FA2D27416D5F184DF9C259A7C79"


class PushTests(SynchronousTestCase):
    def test_content_type_bytes(self) -> None:
        """
        General form: length quote, 45 octets: connectivity-wbxml (0xB6),
        SEC (0x91) with its value as a short integer, MAC (0x92) as text.
        """
        self.assertEqual(
            content_type(Sec.NETWPIN, MAC),
            bytes.fromhex("1F2D B6 91 80 92") + MAC.encode() + b"\x00",
        )
        self.assertEqual(content_type(Sec.USERPIN, MAC)[:6], bytes.fromhex("1F2DB6918192"))
        with self.assertRaises(ValueError):
            content_type(Sec.USERPIN, "ABC")

    def test_push_bytes(self) -> None:
        """
        TID 1, Push, 47 octets of headers (the content type only: no
        application id), then the document.
        """
        pdu = bootstrap_pdu(b"<doc>", Sec.USERPIN, MAC)
        self.assertEqual(pdu[:3], bytes.fromhex("01062F"))
        self.assertEqual(pdu[3:50], content_type(Sec.USERPIN, MAC))
        self.assertEqual(pdu[50:], b"<doc>")

    def test_parse_round_trip(self) -> None:
        """
        The parser reads back SEC, MAC and the document; verify() checks the
        MAC with a key, as a handset does.
        """
        document = b"\x03\x0b\x6a\x00" + b"x" * 40
        key = BootstrapPin.user("2468").key("")
        pdu = bootstrap_pdu(document, Sec.USERPIN, compute_mac(key, document), transaction_id=7)
        push = parse_bootstrap_push(pdu)
        self.assertEqual((push.transaction_id, push.sec, push.document), (7, Sec.USERPIN, document))
        self.assertTrue(push.verify(key))
        self.assertFalse(push.verify(b"2469"))

    def test_parse_refuses(self) -> None:
        """
        A package #0 push, a wrong content type, a missing MAC or an
        unknown parameter are refused.
        """
        good = content_type(Sec.NETWPIN, MAC)
        for datagram in (
            wsp_push_pdu(b"pkg0"),
            bytes.fromhex("0106") + bytes([len(good)]) + b"\x1f\x2d\xb7" + good[3:],
            bytes.fromhex("0106 04 03 B6 91 80"),  # SEC without MAC
            bytes.fromhex("0106 06 05 B6 91 80 93 80"),  # an unknown parameter
            bytes.fromhex("0106 05 04 B6 92 41 41"),  # MAC not terminated
            bytes.fromhex("0107 01 00"),
        ):
            with self.assertRaises(MalformedPush):
                parse_bootstrap_push(datagram)


class SegmentTests(SynchronousTestCase):
    def test_one_sms(self) -> None:
        """
        A short document fits one SMS to port 2948 with no concatenation.
        """
        (segment,) = bootstrap_segments(b"d" * 60, BootstrapPin.network(), "262011234567890", concat_ref=9)
        elements, payload = split_udh(segment.short_message)
        self.assertEqual(elements, ((0x05, bytes.fromhex("0B8423F0")),))
        self.assertEqual((segment.esm_class, segment.data_coding), (0x40, 0x04))
        push = parse_bootstrap_push(payload)
        self.assertEqual(push.sec, Sec.NETWPIN)
        self.assertTrue(push.verify(netwpin_key("262011234567890")))

    def test_concatenated(self) -> None:
        """
        A 300-octet document takes three SMS of at most 140 octets with the
        job's 8-bit reference (or 16-bit); reassembled, they are the push whose
        MAC verifies with the USERPIN.
        """
        document = bytes(range(256)) + b"e" * 44
        pin = BootstrapPin.user("4321")
        segments = bootstrap_segments(document, pin, "", concat_ref=0x42)
        self.assertEqual(len(segments), 3)
        self.assertTrue(all(len(s.short_message) <= 140 for s in segments))
        elements, _ = split_udh(segments[1].short_message)
        self.assertEqual(dict(elements)[IEI_CONCAT_8BIT], bytes([0x42, 3, 2]))
        dst, src, datagram = reassemble([s.short_message for s in reversed(segments)])
        self.assertEqual((dst, src), (2948, 9200))
        push = parse_bootstrap_push(datagram)
        self.assertEqual((push.sec, push.document), (Sec.USERPIN, document))
        self.assertTrue(push.verify(b"4321"))
        wide = bootstrap_segments(document, pin, "", concat_ref=0x1234, concat_iei=IEI_CONCAT_16BIT)
        self.assertEqual(dict(split_udh(wide[0].short_message)[0])[IEI_CONCAT_16BIT], bytes([0x12, 0x34, 3, 1]))
