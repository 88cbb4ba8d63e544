"""
Tests for L{tests.fuzz.mutate}: the structure-aware mutators keep the
structure they know (so that inputs get past the first check).
"""

from __future__ import annotations

import struct
from random import Random

from lxml import etree
from twisted.trial.unittest import SynchronousTestCase

from mdmd.notify import smpp_pdu as p
from tests.fuzz import mutate


class MutatorTests(SynchronousTestCase):
    def test_der_lengths_kept(self) -> None:
        """
        DER mutations fix every enclosing length: most results still parse as one element.
        """
        der = bytes.fromhex("3010" "0201" "05" "300b" "0609" "2a864886f70d01010b")
        rng = Random(1)
        whole = 0
        for _ in range(200):
            out = mutate.der_mutate(der, rng, [der])
            nodes = mutate._parse_der(out)
            whole += nodes is not None and len(nodes) == 1
        self.assertGreater(whole, 150)

    def test_smpp_length_fixed(self) -> None:
        """
        SMPP frame mutations keep command_length right most of the time.
        """
        stream = p.encode(p.DeliverSm(sequence_number=1, short_message=b"id:1 stat:DELIVRD"))
        rng = Random(2)
        framed = 0
        for _ in range(200):
            out = mutate.smpp_frame(stream, rng, [stream])
            framed += len(out) >= 16 and struct.unpack_from(">I", out)[0] == len(out)
        self.assertGreater(framed, 120)

    def test_xml_stays_xml(self) -> None:
        """
        Element-level XML mutations give well-formed XML.
        """
        document = b'<a xmlns="urn:x"><b>1</b><c d="e">text</c></a>'
        rng = Random(3)
        for mutator in (mutate.xml_duplicate, mutate.xml_delete, mutate.xml_move, mutate.xml_attribute):
            out = mutator(document, rng, [document])
            etree.fromstring(out)  # raises if not well-formed

    def test_deterministic(self) -> None:
        """
        The same random state gives the same mutations.
        """
        data = b"<a><b>12</b></a>"
        first = [mutate.mutate(data, Random(7), [data], mutate.XML) for _ in range(3)]
        second = [mutate.mutate(data, Random(7), [data], mutate.XML) for _ in range(3)]
        self.assertEqual(first, second)
