"""
Integration tests of L{mdmd.notify.smpp_client} against SMSCs written by others:
node-smpp 0.5.1 (C{tests/peers/smsc.js}) and Net::SMPP (C{tests/peers/smsc.pl}),
each spawned on a free loopback port.

They send a multi-segment WAP push, then check from the peer's own log that
it received exactly our bytes, that its independent reading of the UDH gives
back the package #0, and that receipts and unbind went through.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase

from mdmd.notify import smpp_pdu as p
from mdmd.notify.smpp_client import ESMEService, smsc_endpoint
from mdmd.notify.pkg0 import build_package0, parse_package0
from mdmd.notify.smpp_session import Address, BindFailed, SessionConfig, submit_templates
from mdmd.notify.wap import SmsSegment, parse_wsp_push, reassemble, wap_push_segments

from .peers import Peer, node_or_skip, node_short_message, perl_or_skip, start_peer

CONFIG = SessionConfig(system_id="mdmd", password="secret", source=Address("MDMD", 5, 0))
DEVICE = Address("491701234567")


def _push() -> tuple[bytes, tuple[SmsSegment, ...]]:
    pkg0 = build_package0(
        server_id="mdmd.example",
        password="srv",
        nonce=b"\x01\x02",
        session_id=0xD,
        vendor=b"v" * 200,
    )
    return pkg0, wap_push_segments(pkg0, concat_ref=0x5A)


if TYPE_CHECKING:
    _MixinBase = TestCase
else:
    _MixinBase = object


class _RealSmscMixin(_MixinBase):
    """
    What both peers are put through; subclasses say how to start one.
    """

    def spawn(self, *args: str) -> Peer:
        raise NotImplementedError

    def start_peer(self, executable: str, argv: list[str]) -> Peer:
        return start_peer(self, executable, argv)

    async def service_for(self, peer: Peer, **config: Any) -> tuple[ESMEService, list, list]:
        port = await peer.port
        service = ESMEService(
            smsc_endpoint(reactor, "127.0.0.1", port),
            replace(CONFIG, **config),
            clock=reactor,
            retry_policy=lambda attempt: 30.0,
        )
        states: list = []
        receipts: list = []
        service.add_state_observer(states.append)
        service.add_receipt_observer(receipts.append)
        service.startService()
        self.addCleanup(lambda: service.stopService() if service.running else None)
        return service, states, receipts

    async def test_multi_segment_push(self) -> None:
        """
        Bind, submit a multi-segment WAP push, get it accepted (and receipted),
        unbind; the peer logged our exact submit_sm bytes, and its own parse
        of the short messages reassembles into a package #0 that verifies.
        """
        peer = self.spawn()
        service, states, receipts = await self.service_for(peer)
        pkg0, segments = _push()
        self.assertGreater(len(segments), 1)
        outcome = await service.submit("push-1", DEVICE, segments)
        self.assertTrue(outcome.accepted, outcome)
        self.assertEqual(len(outcome.message_ids), len(segments))
        await peer.wait_for(
            lambda lines: len([l for l in lines if l["command"] == "deliver_sm_resp"])
            >= len(segments)
        )
        self.assertEqual(sorted(r.message_id for r in receipts), sorted(outcome.message_ids))
        self.assertEqual({r.ref for r in receipts}, {"push-1"})
        self.assertEqual({r.state for r in receipts}, {p.MessageState.DELIVERED})
        await service.stopService()
        await peer.wait_for(lambda lines: any(l["command"] == "unbind" for l in lines))

        (bind,) = peer.received("bind_transceiver")
        self.assertEqual(
            (bind["fields"]["system_id"], bind["fields"]["password"]), ("mdmd", "secret")
        )
        submits = peer.received("submit_sm")
        templates = submit_templates(CONFIG, DEVICE, segments)
        self.assertEqual(
            [bytes.fromhex(line["hex"]) for line in submits],
            [
                p.encode(replace(template, sequence_number=line["sequence_number"]))
                for template, line in zip(templates, submits)
            ],
        )
        for line in submits:
            self.assertEqual(
                (
                    line["fields"]["esm_class"],
                    line["fields"]["data_coding"],
                    line["fields"]["destination_addr"],
                ),
                (0x40, 0x04, "491701234567"),
            )
        ports_dst, ports_src, datagram = reassemble(
            [self.peer_short_message(line) for line in submits]
        )
        self.assertEqual((ports_dst, ports_src), (2948, 9200))
        push = parse_wsp_push(datagram)
        self.assertEqual(push.body, pkg0)
        self.assertTrue(parse_package0(push.body).verify("srv", b"\x01\x02"))

    def peer_short_message(self, line: dict[str, Any]) -> bytes:
        raise NotImplementedError

    async def test_wrong_password(self) -> None:
        """
        The peer refuses a wrong password and the service reports it by name.
        """
        peer = self.spawn()
        refused: Deferred[BindFailed] = Deferred()
        service, states, _ = await self.service_for(peer, password="wrong")

        def on_state(event: object) -> None:
            if isinstance(event, BindFailed) and not refused.called:
                refused.callback(event)

        service.add_state_observer(on_state)
        failed = await refused
        self.assertEqual(failed.status, p.Status.ESME_RINVPASWD)
        self.assertFalse(service.bound)


class NodeSmscTests(_RealSmscMixin, TestCase):
    """
    node-smpp 0.5.1 as the SMSC.
    """

    def setUp(self) -> None:
        self.node = node_or_skip()

    def spawn(self, *args: str) -> Peer:
        return self.start_peer(self.node, [self.node, "smsc.js", "--receipts", "both", *args])

    def peer_short_message(self, line: dict[str, Any]) -> bytes:
        return node_short_message(line)

    async def test_throttled(self) -> None:
        """
        With every second submit throttled by the peer, the push still goes
        through after the pauses.
        """
        peer = self.start_peer(self.node, [self.node, "smsc.js", "--throttle-every", "2"])
        service, _, _ = await self.service_for(peer, throttle_pause=0.05, window=1)
        _, segments = _push()
        outcome = await service.submit("push-t", DEVICE, segments)
        self.assertTrue(outcome.accepted)
        # the peer may log its last submit_sm after answering it: wait for the line
        expected = 2 * len(segments) - 1
        await peer.wait_for(lambda lines: len(peer.received("submit_sm")) >= expected)
        self.assertEqual(len(peer.received("submit_sm")), expected)


class PerlSmscTests(_RealSmscMixin, TestCase):
    """
    Net::SMPP as the SMSC (text receipts only).
    """

    def setUp(self) -> None:
        self.perl = perl_or_skip()

    def spawn(self, *args: str) -> Peer:
        return self.start_peer(self.perl, [self.perl, "smsc.pl", "--receipts", *args])

    def peer_short_message(self, line: dict[str, Any]) -> bytes:
        return bytes.fromhex(line["fields"]["short_message"])
