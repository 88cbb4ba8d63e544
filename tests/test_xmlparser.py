"""
Tests for L{mdmd.xmlparser}.
"""

from twisted.trial.unittest import SynchronousTestCase

from mdmd.xmlparser import MalformedXML, localname, parse


class ParseTests(SynchronousTestCase):
    def test_well_formed(self) -> None:
        """
        A plain document parses; comments are dropped.
        """
        root = parse(b"<a xmlns='urn:x'><!-- c --><b>t</b></a>")
        self.assertEqual(localname(root), "a")
        self.assertEqual([localname(c) for c in root], ["b"])

    def test_entity_expansion_refused(self) -> None:
        """
        A document with a DTD (billion laughs, XXE) is refused outright.
        """
        doc = (
            b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaaaaaaaa">'
            b'<!ENTITY b "&a;&a;&a;&a;&a;&a;">]><r>&b;</r>'
        )
        self.assertRaises(MalformedXML, parse, doc)

    def test_external_entity_refused(self) -> None:
        """
        An external entity is never resolved.
        """
        doc = b'<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r>&x;</r>'
        self.assertRaises(MalformedXML, parse, doc)

    def test_garbage(self) -> None:
        """
        Garbage and empty input raise L{MalformedXML}, not lxml errors.
        """
        for data in (b"", b"   ", b"<a>", b"\x00\xff", b"not xml"):
            self.assertRaises(MalformedXML, parse, data)
