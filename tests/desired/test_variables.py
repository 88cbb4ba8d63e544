"""
Tests for L{mdmd.desired.variables}.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from mdmd.desired.variables import VARIABLES, MissingValue, UnknownVariable, expand, names_in


class NamesTests(SynchronousTestCase):
    def test_both_spellings(self) -> None:
        """
        $NAME and ${NAME} both name a variable; $$ and a $ before anything else are literal.
        """
        self.assertEqual(names_in("./Vendor/$DEVICE_ID/${MSISDN}x $$5 a$ $1"), {"DEVICE_ID", "MSISDN"})

    def test_unknown(self) -> None:
        """
        A name mdmd does not know is refused, naming it and the known ones.
        """
        with self.assertRaises(UnknownVariable) as caught:
            names_in("$DEVICE_ID and $HOST")
        self.assertEqual(caught.exception.name, "HOST")
        self.assertIn("$HOSTNAME", str(caught.exception))

    def test_every_variable_documented(self) -> None:
        """
        Every variable says where its value comes from.
        """
        self.assertTrue(all(VARIABLES.values()))
        self.assertIn("ENROLLED_USER", VARIABLES)


class ExpandTests(SynchronousTestCase):
    def test_values(self) -> None:
        """
        Variables are replaced by the device's values; $$ becomes $.
        """
        values = {"DEVICE_ID": "D1", "ENROLLED_USER": "bob@example.com"}
        self.assertEqual(expand("$DEVICE_ID:${ENROLLED_USER}:$$", values), "D1:bob@example.com:$")

    def test_missing_value(self) -> None:
        """
        A variable the device has no (or an empty) value for is an error, never "".
        """
        with self.assertRaises(MissingValue) as caught:
            expand("to $MSISDN", {"MSISDN": ""})
        self.assertEqual(caught.exception.name, "MSISDN")
        self.assertIn("phone number", str(caught.exception))

    def test_no_dollar(self) -> None:
        """
        Text without a $ comes back as it is.
        """
        text = "plain"
        self.assertIs(expand(text, {}), text)
