"""
Tests for L{mdmd.desired.values}: a read-back compared as its format says.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from mdmd.desired.values import same_value


class SameValueTests(SynchronousTestCase):
    def test_int(self) -> None:
        """
        Integers compare as numbers.
        """
        self.assertTrue(same_value("int", "1", " 01 "))
        self.assertFalse(same_value("int", "1", "2"))
        self.assertFalse(same_value("int", "1", "one"))

    def test_bool(self) -> None:
        """
        Booleans compare as truth values, in any case, 1/0 included.
        """
        self.assertTrue(same_value("bool", "true", "True"))
        self.assertTrue(same_value("bool", "false", "0"))
        self.assertFalse(same_value("bool", "true", "false"))
        self.assertFalse(same_value("bool", "maybe", "maybe"))

    def test_chr(self) -> None:
        """
        Characters (and a value without format) compare exactly.
        """
        self.assertTrue(same_value("chr", "a b", "a b"))
        self.assertFalse(same_value(None, "a", "a "))

    def test_b64(self) -> None:
        """
        Base64 compares the bytes, line breaks aside.
        """
        self.assertTrue(same_value("b64", "aGVsbG8gd29ybGQ=", "aGVsbG8g\r\nd29ybGQ="))
        self.assertFalse(same_value("b64", "aGVsbG8=", "aGVsbA=="))
        self.assertFalse(same_value("b64", "aGVsbG8=", "not base64!"))

    def test_xml(self) -> None:
        """
        XML compares as a tree: attribute order and whitespace between
        elements aside; fragments (ADMX-backed policies) too.
        """
        self.assertTrue(same_value("xml", '<a x="1" y="2"><b>t</b></a>', '<a y="2" x="1">\n  <b>t</b>\n</a>'))
        self.assertTrue(same_value("xml", '<enabled/><data id="a" value="1"/>', '<enabled/> <data value="1" id="a"/>'))
        self.assertFalse(same_value("xml", "<a><b>t</b></a>", "<a><b>u</b></a>"))

    def test_nothing_read(self) -> None:
        """
        Nothing read is never the value; binary kept as base64 only matches b64.
        """
        self.assertFalse(same_value("chr", "", None))
        self.assertFalse(same_value("chr", "aGk=", "aGk=", "base64"))
        self.assertTrue(same_value("b64", "aGk=", "aGk=", "base64"))
