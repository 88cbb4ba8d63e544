"""
Tests for L{mdmd.desired.rules}: rule groups over inventory facts.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from mdmd.desired.rules import InvalidRule, parse_rule, version_key


class RuleTests(SynchronousTestCase):
    def test_version_comparison(self) -> None:
        """
        Ordering compares dotted versions by their numbers.
        """
        rule = parse_rule("DevDetail/SwV >= 10.0.22000")
        self.assertTrue(rule.matches({"./DevDetail/SwV": "10.0.26100.2314"}))
        self.assertTrue(rule.matches({"./DevDetail/SwV": "10.0.22000"}))
        self.assertFalse(rule.matches({"./DevDetail/SwV": "10.0.9200"}))
        self.assertFalse(rule.matches({"./DevDetail/SwV": "ten"}))
        self.assertEqual(version_key("10.0.1"), (10, 0, 1))

    def test_equality_prefix_and(self) -> None:
        """
        Equality, inequality and prefix conditions joined by 'and', quoted values, record facts.
        """
        rule = parse_rule('DevInfo/Man = "Contoso Ltd" and ./DevDetail/OEM ^= Con and kind != omadm')
        facts = {"./DevInfo/Man": "Contoso Ltd", "./DevDetail/OEM": "Contoso", "kind": "windows"}
        self.assertTrue(rule.matches(facts))
        self.assertFalse(rule.matches({**facts, "kind": "omadm"}))
        self.assertFalse(rule.matches({**facts, "./DevDetail/OEM": "Fabrikam"}))

    def test_missing_fact(self) -> None:
        """
        A fact the device has not reported matches nothing, not even !=.
        """
        self.assertFalse(parse_rule("DevDetail/FwV != 1").matches({}))

    def test_canonical_text(self) -> None:
        """
        A rule's canonical text reads back as the same rule.
        """
        rule = parse_rule('DevInfo/Mod == "Virtual PC" and user = bob@example.com')
        self.assertEqual(rule.text, './DevInfo/Mod = "Virtual PC" and user = bob@example.com')
        self.assertEqual(parse_rule(rule.text), rule)

    def test_refused(self) -> None:
        """
        An empty rule, an unknown fact or operator, an ordering of a non-version, a missing 'and'.
        """
        for text in ("", "serial = 1", "kind ~ windows", "DevDetail/SwV > new", "kind = a or kind = b", "kind ="):
            self.assertRaises(InvalidRule, parse_rule, text)
