"""
Tests for L{mdmd.testing.syncml}: the sample messages are ones both codecs
carry unchanged, and shaped as they say.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from mdmd.syncml import wbxml, xml
from mdmd.syncml.model import Alert, Results, Status
from mdmd.testing import syncml as samples


class SampleTests(SynchronousTestCase):
    def test_round_trips(self) -> None:
        """
        Every sample encodes and decodes to itself in XML and in WBXML.
        """
        for message in (xml.decode(samples.WINDOWS_PACKAGE1), samples.server_message(), samples.large_results()):
            self.assertEqual(xml.decode(xml.encode(message)), message)
            self.assertEqual(wbxml.decode(wbxml.encode(message)), message)

    def test_windows_package1(self) -> None:
        """
        The Windows check-in: from the device to the server, Alerts 1201 and 1224, final.
        """
        message = xml.decode(samples.WINDOWS_PACKAGE1)
        self.assertEqual(
            (message.header.source.loc_uri, message.header.target.loc_uri), (samples.DEVICE_ID, samples.SERVER_URL)
        )
        self.assertEqual([c.data for c in message.body if isinstance(c, Alert)], ["1201", "1224"])
        self.assertTrue(message.final)

    def test_server_message(self) -> None:
        """
        The server message answers package 1 (Statuses first) with 20 commands in all.
        """
        message = samples.server_message()
        self.assertEqual(len(message.body), 20)
        self.assertEqual([type(c) for c in message.body[:4]], [Status] * 4)
        self.assertEqual(message.header.target.loc_uri, samples.DEVICE_ID)

    def test_large_results(self) -> None:
        """
        The Results carry the asked number of bytes across the asked number of Items.
        """
        message = samples.large_results(total=8000, items=4)
        (results,) = [c for c in message.body if isinstance(c, Results)]
        self.assertEqual([len(i.data) for i in results.items], [2000] * 4)  # type: ignore[arg-type]
