"""
Tests for L{mdmd.notify.wap}.
"""

import random

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from mdmd.notify.pkg0 import build_package0, parse_package0
from mdmd.notify.wap import (
    DATA_CODING_8BIT_CLASS1,
    ESM_CLASS_UDHI,
    IEI_CONCAT_16BIT,
    MalformedPush,
    SmsSegment,
    decode_uintvar,
    encode_uintvar,
    parse_wsp_push,
    reassemble,
    split_udh,
    wap_push_segments,
    wdp_segments,
    wsp_push_pdu,
)

from .samples import spec_example

#: The spec appendix example trigger with a digest for password "srvpwd",
#: nonce "srvnonce" (see tests.notify.test_pkg0).
SPEC_PKG0 = (
    bytes.fromhex("2e84b4d47d65793a313fb4b5ffcbaac5" "02d0000000123412") + b"com.mgmtsrv.manage"
)


class WspTests(SynchronousTestCase):
    def test_push_prefix(self) -> None:
        """
        TID 01, Push 06, headers length 03, C4 (syncml.notification), AF 87
        (X-WAP-Application-Id: syncml.dm), then the body.
        """
        self.assertEqual(wsp_push_pdu(b"BODY"), bytes.fromhex("010603C4AF87") + b"BODY")

    def test_transaction_id(self) -> None:
        """
        The transaction id is the first octet.
        """
        self.assertEqual(wsp_push_pdu(b"", transaction_id=0x7F)[:2], b"\x7f\x06")
        self.assertRaises(ValueError, wsp_push_pdu, b"", transaction_id=256)

    def test_parse_back(self) -> None:
        """
        The parser finds content type 0x44, the application-id header and the body.
        """
        push = parse_wsp_push(wsp_push_pdu(b"xyz", transaction_id=9))
        self.assertEqual(
            (push.transaction_id, push.content_type, push.headers, push.body),
            (9, 0x44, b"\xaf\x87", b"xyz"),
        )
        self.assertRaises(MalformedPush, parse_wsp_push, b"\x01\x07\x03\xc4\xaf\x87")

    def test_uintvar(self) -> None:
        """
        uintvar: 0x7F is one octet, 0x80 is 81 00, 0x3FFF is FF 7F.
        """
        self.assertEqual(encode_uintvar(0x7F), b"\x7f")
        self.assertEqual(encode_uintvar(0x80), b"\x81\x00")
        self.assertEqual(encode_uintvar(0x3FFF), b"\xff\x7f")
        self.assertEqual(decode_uintvar(b"\x00\x81\x00", 1), (0x80, 3))
        self.assertRaises(MalformedPush, decode_uintvar, b"\x81", 0)


class SingleSegmentTests(SynchronousTestCase):
    def test_spec_example_in_one_sms(self) -> None:
        """
        The spec example fits one SMS: UDH with ports 2948/9200, the WSP prefix,
        package #0; esm_class 0x40 and data_coding 0x04.
        """
        self.assertEqual(spec_example(), SPEC_PKG0)
        (segment,) = wap_push_segments(SPEC_PKG0, concat_ref=1)
        self.assertEqual(
            segment.short_message,
            bytes.fromhex("0605040B8423F0" "010603C4AF87") + SPEC_PKG0,
        )
        self.assertEqual((segment.esm_class, segment.data_coding), (0x40, 0x04))

    def test_class1_coding(self) -> None:
        """
        data_coding 0xF5 is an option; bytes do not change.
        """
        (segment,) = wap_push_segments(SPEC_PKG0, concat_ref=1, data_coding=DATA_CODING_8BIT_CLASS1)
        self.assertEqual(segment.data_coding, 0xF5)
        self.assertRaises(ValueError, wap_push_segments, SPEC_PKG0, concat_ref=1, data_coding=0x00)

    def test_133_octets_fit(self) -> None:
        """
        With the 7-octet port UDH, 133 octets of datagram are one SMS of 140.
        """
        (segment,) = wdp_segments(bytes(133), concat_ref=0)
        self.assertEqual(len(segment.short_message), 140)


class MultiSegmentTests(SynchronousTestCase):
    def test_134_octets_need_two(self) -> None:
        """
        One octet more and the datagram is split 128 + 6 under a 12-octet UDH.
        """
        first, second = wdp_segments(bytes(range(134)), concat_ref=0x2A)
        self.assertEqual(
            first.short_message, bytes.fromhex("0B05040B8423F000032A0201") + bytes(range(128))
        )
        self.assertEqual(
            second.short_message,
            bytes.fromhex("0B05040B8423F000032A0202") + bytes(range(128, 134)),
        )
        self.assertEqual(len(first.short_message), 140)

    def test_long_pkg0_golden(self) -> None:
        """
        A package #0 with a 150-octet vendor part: two segments, each
        carrying ports and an 8-bit concatenation element, the first one
        starting with the WSP prefix and the digest.
        """
        pkg0 = spec_example(vendor=b"V" * 150)
        segments = wap_push_segments(pkg0, concat_ref=7)
        self.assertEqual(len(segments), 2)
        datagram = bytes.fromhex("010603C4AF87") + pkg0
        self.assertEqual(len(datagram), 6 + 16 + 8 + 18 + 150)
        self.assertEqual(
            segments[0].short_message[:18],
            bytes.fromhex("0B05040B8423F00003070201" "010603C4AF87"),
        )
        self.assertEqual(segments[0].short_message[12:], datagram[:128])
        self.assertEqual(
            segments[1].short_message,
            bytes.fromhex("0B05040B8423F00003070202") + datagram[128:],
        )
        self.assertTrue(all(s.esm_class == ESM_CLASS_UDHI for s in segments))

    def test_16bit_reference(self) -> None:
        """
        IEI 0x08 carries a two-octet reference and leaves 127 octets per segment.
        """
        segments = wdp_segments(bytes(200), concat_ref=0x1234, concat_iei=IEI_CONCAT_16BIT)
        self.assertEqual(
            segments[0].short_message[:13], bytes.fromhex("0C05040B8423F00804123402" "01")
        )
        self.assertEqual(len(segments[0].short_message), 140)
        self.assertEqual(len(segments[1].short_message), 13 + 200 - 127)

    def test_reference_range(self) -> None:
        """
        An 8-bit reference above 255 is refused; 16-bit allows it.
        """
        self.assertRaises(ValueError, wdp_segments, bytes(300), concat_ref=256)
        wdp_segments(bytes(300), concat_ref=256, concat_iei=IEI_CONCAT_16BIT)

    def test_too_many_segments(self) -> None:
        """
        More than 255 segments cannot be numbered.
        """
        self.assertRaises(ValueError, wdp_segments, bytes(128 * 255 + 1), concat_ref=1)


class ReassembleTests(SynchronousTestCase):
    @given(
        st.binary(min_size=1, max_size=700),
        st.integers(0, 255),
        st.sampled_from([0x00, 0x08]),
        st.randoms(use_true_random=False),
    )
    def test_round_trip(self, datagram: bytes, ref: int, iei: int, rnd: random.Random) -> None:
        """
        Whatever the size, segments in any order give back the datagram and
        ports, and no segment exceeds 140 octets.
        """
        segments = [s.short_message for s in wdp_segments(datagram, concat_ref=ref, concat_iei=iei)]
        self.assertTrue(all(len(s) <= 140 for s in segments))
        rnd.shuffle(segments)
        self.assertEqual(reassemble(segments), (2948, 9200, datagram))

    def test_pkg0_survives(self) -> None:
        """
        Reassembling and parsing the WSP push gives back a package #0 that verifies.
        """
        pkg0 = build_package0(
            server_id="srv", password="pw", nonce=b"n", session_id=3, vendor=bytes(300)
        )
        segments = [s.short_message for s in wap_push_segments(pkg0, concat_ref=9)]
        _, _, datagram = reassemble(segments)
        self.assertTrue(parse_package0(parse_wsp_push(datagram).body).verify("pw", b"n"))

    def test_bad_udh(self) -> None:
        """
        A UDH longer than the message, or an element overrunning it, is refused.
        """
        self.assertRaises(MalformedPush, split_udh, b"\x06\x05\x04")
        self.assertRaises(MalformedPush, split_udh, b"\x02\x05\x04")
        self.assertRaises(MalformedPush, reassemble, [SmsSegment(b"\x00abc").short_message])
