"""
C{mdmctl manhole}: a terminal on the daemon's manhole, whose default home is
a UNIX socket that the usual telnet clients cannot open.

Just enough telnet (RFC 854) for Twisted's manhole: the server may echo and
suppress go-ahead, learns the window size (NAWS) and may switch line mode;
everything else is declined. The local terminal is put in raw mode, so keys
(Ctrl-C, Ctrl-D, arrows) go to the shell as they are typed.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import struct
import sys
from collections.abc import Callable, Iterator
from typing import BinaryIO

__all__ = ["TelnetConsole", "connect", "run"]

IAC, DONT, DO, WONT, WILL, SB, SE = 255, 254, 253, 252, 251, 250, 240
ECHO, SGA, NAWS, LINEMODE = 1, 3, 31, 34

#: Options the server may turn on at its end, and at ours.
_REMOTE_OK = frozenset({ECHO, SGA})
_LOCAL_OK = frozenset({SGA, NAWS, LINEMODE})


class TelnetConsole:
    """
    The protocol side: server bytes in, terminal bytes and replies out.

    @param send: writes to the server.
    @param size: the terminal's (columns, rows), for NAWS.
    """

    def __init__(self, send: Callable[[bytes], object], size: Callable[[], tuple[int, int]]) -> None:
        self._send = send
        self._size = size
        self._state = "data"
        self._verb = 0

    def received(self, data: bytes) -> bytes:
        """
        Handle server bytes; return what is for the terminal.
        """
        out = bytearray()
        for octet in data:
            state = self._state
            if state == "data":
                if octet == IAC:
                    self._state = "iac"
                else:
                    out.append(octet)
            elif state == "iac":
                if octet == IAC:
                    out.append(IAC)
                    self._state = "data"
                elif octet in (WILL, WONT, DO, DONT):
                    self._verb = octet
                    self._state = "option"
                elif octet == SB:
                    self._state = "sb"
                else:
                    self._state = "data"  # NOP, GA and the like
            elif state == "option":
                self._negotiate(self._verb, octet)
                self._state = "data"
            elif state == "sb":
                self._state = "sb-iac" if octet == IAC else "sb"
            elif state == "sb-iac":
                self._state = "data" if octet == SE else "sb"
        return bytes(out)

    def typed(self, data: bytes) -> None:
        """
        Keys from the terminal: Enter becomes CR LF, IAC is doubled.
        """
        text = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")
        self._send(text.replace(bytes([IAC]), bytes([IAC, IAC])))

    def _negotiate(self, verb: int, option: int) -> None:
        if verb == WILL:
            self._command(DO if option in _REMOTE_OK else DONT, option)
        elif verb == WONT:
            self._command(DONT, option)
        elif verb == DO:
            if option in _LOCAL_OK:
                self._command(WILL, option)
                if option == NAWS:
                    columns, rows = self._size()
                    size = struct.pack(">HH", columns, rows).replace(bytes([IAC]), bytes([IAC, IAC]))
                    self._send(bytes([IAC, SB, NAWS]) + size + bytes([IAC, SE]))
            else:
                self._command(WONT, option)
        elif verb == DONT:
            self._command(WONT, option)

    def _command(self, verb: int, option: int) -> None:
        self._send(bytes([IAC, verb, option]))


def connect(address: str) -> socket.socket:
    """
    Connect to C{unix:PATH} or C{tcp:HOST:PORT}.
    """
    if address.startswith("unix:"):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(address[len("unix:") :])
        except BaseException:
            sock.close()
            raise
        return sock
    host, _, port = address[len("tcp:") :].rpartition(":")
    return socket.create_connection((host.strip("[]"), int(port)))


@contextlib.contextmanager
def _raw(fd: int) -> Iterator[None]:
    if not os.isatty(fd):
        yield
        return
    import termios
    import tty

    saved = termios.tcgetattr(fd)
    try:
        tty.setraw(fd)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _terminal_size(fd: int) -> tuple[int, int]:
    try:
        size = os.get_terminal_size(fd)
        return size.columns, size.lines
    except OSError:
        return 80, 24


def run(sock: socket.socket, stdin: int | None = None, stdout: BinaryIO | None = None) -> None:
    """
    Shuttle bytes between the terminal and the manhole until the server closes.
    At the end of the input the connection is half-closed, which ends the session.
    """
    fd = sys.stdin.fileno() if stdin is None else stdin
    out = stdout or sys.stdout.buffer
    console = TelnetConsole(sock.sendall, lambda: _terminal_size(fd))
    reading = [sock, fd]
    with _raw(fd):
        while True:
            ready, _, _ = select.select(reading, [], [])
            if sock in ready:
                data = sock.recv(65536)
                if not data:
                    return
                out.write(console.received(data))
                out.flush()
            if fd in ready:
                keys = os.read(fd, 4096)
                if keys:
                    console.typed(keys)
                else:
                    reading.remove(fd)
                    sock.shutdown(socket.SHUT_WR)
