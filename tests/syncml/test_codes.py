"""
Tests for L{mdmd.syncml.codes} and the code accessors of L{mdmd.syncml.model}.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from mdmd.syncml.codes import AlertCode, StatusCode, parse_code
from mdmd.syncml.model import Alert, Status, data_text


class CodeTableTests(SynchronousTestCase):
    def test_status_values(self) -> None:
        """
        Codes the session engine relies on have their RepPro values.
        """
        self.assertEqual(
            [
                StatusCode.OK,
                StatusCode.AUTHENTICATION_ACCEPTED,
                StatusCode.CHUNKED_ITEM_ACCEPTED,
                StatusCode.BAD_REQUEST,
                StatusCode.INVALID_CREDENTIALS,
                StatusCode.MISSING_CREDENTIALS,
                StatusCode.UNSUPPORTED_MEDIA_TYPE,
                StatusCode.SIZE_MISMATCH,
                StatusCode.COMMAND_FAILED,
                StatusCode.ATOMIC_FAILED,
                StatusCode.ATOMIC_RESPONSE_TOO_LARGE,
            ],
            [200, 212, 213, 400, 401, 407, 415, 424, 500, 507, 517],
        )
        # 101, 200-216, 300-305, 400-428, 500-508, 510-514, 516, 517: the whole table.
        self.assertEqual(len(StatusCode), 1 + 17 + 6 + 29 + 9 + 5 + 2)

    def test_alert_values(self) -> None:
        """
        The DM alert codes, 1100-1104 and 1200-1226.
        """
        self.assertEqual(
            sorted(int(c) for c in AlertCode),
            [1100, 1101, 1102, 1103, 1104, 1200, 1201, 1222, 1223, 1224, 1225, 1226],
        )
        self.assertEqual(AlertCode.GENERIC_ALERT, 1226)


class ParseCodeTests(SynchronousTestCase):
    def test_known(self) -> None:
        """
        Decimal text (bytes too, whitespace tolerated) maps to the member.
        """
        self.assertIs(parse_code(StatusCode, "200"), StatusCode.OK)
        self.assertIs(parse_code(StatusCode, b" 424\n"), StatusCode.SIZE_MISMATCH)
        self.assertIs(parse_code(AlertCode, "1201"), AlertCode.CLIENT_INITIATED_MGMT)

    def test_unknown(self) -> None:
        """
        Unknown numbers, non-numbers and missing data give C{None}.
        """
        for text in (None, "", "abc", "999", "+200", "２００", "1201"):
            self.assertIsNone(parse_code(StatusCode, text))

    def test_model_accessors(self) -> None:
        """
        Status and Alert expose their Data as a code.
        """
        self.assertIs(Status(data="507").code, StatusCode.ATOMIC_FAILED)
        self.assertIsNone(Status().code)
        self.assertIs(Alert(data="1224").code, AlertCode.CLIENT_EVENT)
        self.assertIsNone(Alert(data="x").code)

    def test_data_text(self) -> None:
        """
        Opaque bytes read as text; text stays text; no data stays None.
        """
        self.assertEqual(data_text(b"user"), "user")
        self.assertEqual(data_text("user"), "user")
        self.assertIsNone(data_text(None))
        self.assertRaises(UnicodeDecodeError, data_text, b"\xff")
