"""
Spawning the real SMSCs of C{tests/peers} (node-smpp, Net::SMPP) for a test,
and reading what they log.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure
from twisted.trial.unittest import SkipTest, TestCase

__all__ = ["PEERS", "Peer", "node_or_skip", "node_short_message", "perl_or_skip", "start_peer"]

PEERS = Path(__file__).resolve().parent.parent / "peers"


class Peer(ProcessProtocol):
    """
    A spawned SMSC: the port it printed and the JSON lines it logged.
    """

    def __init__(self) -> None:
        self.port: Deferred[int] = Deferred()
        self.ended: Deferred[None] = Deferred()
        self.lines: list[dict[str, Any]] = []
        self.stderr = b""
        self._buffer = b""
        self._waiters: list[tuple[Callable[[list[dict[str, Any]]], bool], Deferred[None]]] = []

    def outReceived(self, data: bytes) -> None:
        self._buffer += data
        *complete, self._buffer = self._buffer.split(b"\n")
        for raw in complete:
            line = json.loads(raw)
            if "port" in line and not self.port.called:
                self.port.callback(line["port"])
            else:
                self.lines.append(line)
        for waiter in list(self._waiters):
            if waiter[0](self.lines):
                self._waiters.remove(waiter)
                waiter[1].callback(None)

    def errReceived(self, data: bytes) -> None:
        self.stderr += data

    def processEnded(self, reason: Failure) -> None:
        if not self.port.called:
            self.port.errback(RuntimeError(f"peer exited: {self.stderr.decode(errors='replace')}"))
        for _, waiter in self._waiters:
            waiter.errback(RuntimeError("peer exited while waited on"))
        self._waiters = []
        self.ended.callback(None)

    def wait_for(self, condition: Callable[[list[dict[str, Any]]], bool]) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        if condition(self.lines):
            d.callback(None)
        else:
            self._waiters.append((condition, d))
        return d

    def received(self, command: str) -> list[dict[str, Any]]:
        return [line for line in self.lines if line["dir"] == "in" and line["command"] == command]


def start_peer(test: TestCase, executable: str, argv: list[str]) -> Peer:
    """
    Spawn a peer in C{tests/peers}; it is killed when the test ends.
    """
    peer = Peer()
    process = reactor.spawnProcess(peer, executable, argv, env=dict(os.environ), path=str(PEERS))

    def stop() -> Deferred[None]:
        if process.pid is not None:
            process.signalProcess("KILL")
        return peer.ended

    test.addCleanup(stop)
    return peer


def node_or_skip() -> str:
    """
    The node executable, or skip the test saying what is missing.
    """
    node = shutil.which("node")
    if node is None:
        raise SkipTest("node (Node.js) is not installed; `make dev-deps` installs nodejs")
    if not (PEERS / "node_modules" / "smpp").is_dir():
        raise SkipTest("tests/peers/node_modules/smpp is missing; run `make dev-deps` (npm ci)")
    return node


def perl_or_skip() -> str:
    """
    The perl executable with Net::SMPP, or skip the test saying what is missing.
    """
    perl = shutil.which("perl")
    if perl is None:
        raise SkipTest("perl is not installed")
    check = subprocess.run([perl, "-MNet::SMPP", "-MJSON::PP", "-e1"], capture_output=True)
    if check.returncode != 0:
        raise SkipTest("Net::SMPP is not installed (Debian: libnet-smpp-perl)")
    return perl


def node_short_message(line: dict[str, Any]) -> bytes:
    """
    UDH + payload of a submit_sm node-smpp logged (it splits the UDH into its
    information elements by itself).
    """
    message = line["fields"]["short_message"]
    elements = b"".join(bytes.fromhex(ie["hex"]) for ie in message["udh"])
    return bytes([len(elements)]) + elements + bytes.fromhex(message["message"]["hex"])
