"""
Tests for L{mdmd.testing.telnet}: the telnet client agrees to options, reads
text without terminal escapes, and waits for what a test expects.
"""

from __future__ import annotations

from twisted.conch.telnet import DO, ECHO, IAC, SGA, WILL, TelnetTransport
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from mdmd.testing.telnet import TelnetClient


class TelnetClientTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.transport = StringTransport()
        self.telnet = TelnetTransport(TelnetClient)
        self.telnet.makeConnection(self.transport)
        client = self.telnet.protocol
        assert isinstance(client, TelnetClient)
        self.client = client

    def test_agrees_to_options(self) -> None:
        """
        The server's WILL ECHO and WILL SGA are accepted with DO.
        """
        self.telnet.dataReceived(IAC + WILL + ECHO + IAC + WILL + SGA)
        self.assertEqual(self.transport.value(), IAC + DO + ECHO + IAC + DO + SGA)

    def test_expect(self) -> None:
        """
        C{expect} fires with everything received (escapes removed, CR LF read
        as LF by the telnet layer) once the wanted text has arrived, at once
        if it already has.
        """
        d = self.client.expect(b"Password: ")
        self.telnet.dataReceived(b"\x1b[2J\x1b[HUsername: alice\r\nPass")
        self.assertNoResult(d)
        self.telnet.dataReceived(b"word: ")
        self.assertEqual(self.successResultOf(d), b"Username: alice\nPassword: ")
        self.assertEqual(self.successResultOf(self.client.expect(b"alice")), self.client.received)
        self.client.clear()
        self.assertEqual(self.client.received, b"")

    def test_expect_times_out(self) -> None:
        """
        Given a clock, C{expect} gives up after its timeout.
        """
        clock = Clock()
        d = self.client.expect(b"never", clock, timeout=5.0)
        clock.advance(5.0)
        self.failureResultOf(d)

    def test_closed(self) -> None:
        """
        A lost connection fails what is still expected, naming it, and fires C{closed}.
        """
        d = self.client.expect(b">>> ")
        self.client.close()
        self.telnet.connectionLost(None)
        self.assertIn(">>> ", str(self.failureResultOf(d, ConnectionError).value))
        self.successResultOf(self.client.closed)

    def test_lines(self) -> None:
        """
        A login answer ends with CR LF; a line typed into the shell with CR NUL.
        """
        self.client.send_line(b"alice")
        self.client.type_line(b"1 + 1")
        self.assertEqual(self.transport.value(), b"alice\r\n1 + 1\r\0")
