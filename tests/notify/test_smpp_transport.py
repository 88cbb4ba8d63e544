"""
Tests for L{mdmd.notify.smpp_transport}: the SMPP client's terms in the
transport's, against the real client and the fake SMSC of
L{mdmd.testing.smsc} in memory (L{tests.notify.test_smpp_client.Net}).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from twisted.internet.defer import CancelledError
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from mdmd.notify import smpp_pdu as p
from mdmd.notify.jobs import OutgoingPush
from mdmd.notify.smpp_pdu import MessageIdBase, MessageState
from mdmd.notify.smpp_transport import SmppTransport
from mdmd.notify.transport import (
    Abandoned,
    DeliveryReport,
    IPushListener,
    IPushTransport,
    PartAccepted,
    Refused,
    Sent,
)
from mdmd.testing.smsc import MemorySmppNetwork as Net
from mdmd.testing.smsc import Receipts, Scenario

from .helpers import LONG_ID, queued_job


@implementer(IPushListener)
class Heard:
    """
    A listener that keeps what it hears, in order.
    """

    def __init__(self) -> None:
        self.events: list[PartAccepted | DeliveryReport] = []

    def part_accepted(self, event: PartAccepted) -> None:
        self.events.append(event)

    def delivery_reported(self, report: DeliveryReport) -> None:
        self.events.append(report)


class Rig:
    """
    An SMPP transport over the client and fake SMSC of L{Net}, with a listener.
    """

    def __init__(self, scenario: Scenario = Scenario(), **config: Any) -> None:
        self.net = Net(scenario, **config)
        self.transport = SmppTransport(self.net.service, "tcp:127.0.0.1:2775")
        self.heard = Heard()
        self.transport.attach(self.heard)

    def send(self, job: OutgoingPush) -> list[Any]:
        results: list[Any] = []
        self.transport.send(job).addBoth(results.append)
        if self.net.pump is not None:
            self.net.flush()
        return results


class SmppTransportTests(SynchronousTestCase):
    def test_provides_the_interface(self) -> None:
        """
        An SMPP transport is an IPushTransport whose running part is the SMPP client.
        """
        rig = Rig()
        self.assertTrue(verifyObject(IPushTransport, rig.transport))
        self.assertEqual(rig.transport.via, "smpp")
        self.assertIs(rig.transport.service, rig.net.service)

    def test_sent_with_parts_first(self) -> None:
        """
        A three-segment job: each part is reported as accepted (with the
        job's part count and its key in the configured base) before the job
        is sent with every id and key.
        """
        rig = Rig(submit_id_base=MessageIdBase.HEX)
        rig.net.start()
        job = queued_job(server_name=LONG_ID)
        self.assertEqual(len(job.segments), 3)
        (outcome,) = rig.send(job)
        self.assertEqual(
            rig.heard.events,
            [
                PartAccepted(job.ref, 0, 3, "1", "#1"),
                PartAccepted(job.ref, 1, 3, "2", "#2"),
                PartAccepted(job.ref, 2, 3, "3", "#3"),
            ],
        )
        self.assertEqual(
            outcome, Sent(("1", "2", "3"), ("#1", "#2", "#3"), detail="accepted by the SMSC: 1, 2, 3")
        )
        self.assertEqual(
            [s.short_message for s in rig.net.smsc.submits], [s.short_message for s in job.segments]
        )

    def test_ids_already_accepted_are_not_sent_again(self) -> None:
        """
        A job handed over with a message id for its first part sends the
        other two only, and is sent with all three ids.
        """
        rig = Rig()
        rig.net.start()
        job = queued_job(server_name=LONG_ID)
        job = dataclasses.replace(job, info=dataclasses.replace(job.info, message_ids=("X", None, None)))
        (outcome,) = rig.send(job)
        self.assertEqual(outcome.message_ids, ("X", "1", "2"))
        self.assertEqual(
            [s.short_message for s in rig.net.smsc.submits], [s.short_message for s in job.segments[1:]]
        )

    def test_refused_for_good(self) -> None:
        """
        A permanent refusal is refused for good, named by its status.
        """
        rig = Rig(Scenario(fail_every=1, fail_status=p.Status.ESME_RINVDSTADR))
        rig.net.start()
        (outcome,) = rig.send(queued_job())
        self.assertEqual(outcome, Refused("SMSC refused: ESME_RINVDSTADR", False, (None,), (None,)))

    def test_refused_for_now(self) -> None:
        """
        An SMSC that keeps throttling refuses the job for now.
        """
        rig = Rig(Scenario(throttle_every=1), max_throttle_retries=0)
        rig.net.start()
        (outcome,) = rig.send(queued_job())
        self.assertEqual(outcome, Refused("SMSC refused: ESME_RTHROTTLED", True, (None,), (None,)))

    def test_unsendable_refused_at_once(self) -> None:
        """
        A job the SMSC could never take (no segment) is refused for good before send returns.
        """
        rig = Rig()
        job = dataclasses.replace(queued_job(), segments=())
        outcome = self.successResultOf(rig.transport.send(job))
        self.assertEqual(outcome, Refused("a job needs at least one segment", retry=False))

    def test_abandoned_when_the_client_stops(self) -> None:
        """
        A job still waiting for the SMSC when the client stops is abandoned, with no ids.
        """
        rig = Rig()
        rig.net.service.startService()
        results = rig.send(queued_job())
        self.assertEqual(results, [])
        rig.net.service.stopService()
        self.assertEqual(results, [Abandoned((None,), (None,))])

    def test_cancel_drops_a_job_not_yet_sent(self) -> None:
        """
        Cancelling a job's outcome before the session is bound drops it: it
        fails with CancelledError and never reaches the SMSC.
        """
        rig = Rig()
        rig.net.service.startService()
        d = rig.transport.send(queued_job())
        d.cancel()
        self.failureResultOf(d, CancelledError)
        rig.net.connect()
        self.assertEqual(rig.net.smsc.submits, [])

    def test_delivery_reports(self) -> None:
        """
        A receipt is reported with the message id's key and its state, after
        the part it is about was reported accepted.
        """
        rig = Rig(Scenario(receipts=Receipts.TLV))
        rig.net.start()
        job = queued_job()
        rig.send(job)
        self.assertEqual(
            rig.heard.events,
            [PartAccepted(job.ref, 0, 1, "1", "1"), DeliveryReport("1", MessageState.DELIVERED, "1")],
        )

    def test_describe_follows_the_session(self) -> None:
        """
        Before binding the link is disconnected, not bound yet; a refused bind
        gives its reason; once bound, no detail; a lost connection says so.
        """
        rig = Rig(Scenario(password="other"))
        self.assertEqual(
            rig.transport.describe(),
            {"state": "disconnected", "smsc": "tcp:127.0.0.1:2775", "detail": "not bound yet", "spool_dir": None},
        )
        rig.net.start()
        self.assertEqual(
            (rig.transport.describe()["state"], rig.transport.describe()["detail"]),
            ("disconnected", "bind refused: ESME_RINVPASWD"),
        )
        bound = Rig()
        bound.net.start()
        self.assertEqual(
            (bound.transport.describe()["state"], bound.transport.describe()["detail"]), ("bound", None)
        )
        transport = bound.net.smsc.connections[-1].transport
        assert transport is not None
        transport.loseConnection()
        bound.net.flush()
        self.assertEqual(bound.transport.describe()["state"], "disconnected")
        self.assertIn("connection", bound.transport.describe()["detail"])
