"""
Tests for L{mdmd.dm.resource.exchange}, the DM endpoint's unit of work, on a
real store in memory: what a session answering a push notification records.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from mdmd.dm.resource import DMSettings, exchange
from mdmd.notify import jobs
from mdmd.notify.pkg0 import session_id_text
from mdmd.syncml.codec import XML_CODEC
from mdmd.testing.devices import add_device
from mdmd.testing.randomness import fixed_random
from mdmd.testing.store import memory_store_service

from .helpers import DEVICE_ID, Client

SETTINGS = DMSettings(require_client_certificate=False)


class PushAnsweredTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.store = memory_store_service().store
        assert self.store is not None
        self.store.run(add_device, DEVICE_ID)
        (job,) = self.store.run(jobs.enqueue, [DEVICE_ID], jobs.PushSettings(), 10.0, fixed_random(0xD))
        self.session_id = session_id_text(job.info.session_id)

    def open_session(self, session_id: str, alert: str, cred: bool = True) -> str:
        """
        Send package 1; return the status the server gave our SyncHdr.
        """
        message = Client(session_id=session_id).package1(alert=alert, cred=cred)
        body = XML_CODEC.encode(message)
        result = self.store.run(exchange, None, message, XML_CODEC, body, None, 20.0, SETTINGS)
        return XML_CODEC.decode(result.body).body[0].data

    def state(self) -> str:
        (info,) = self.store.read(jobs.list_pushes, DEVICE_ID)
        return info.state

    def test_alert_1200_with_the_session_id(self) -> None:
        """
        An authenticated package 1 with Alert 1200 and the job's session id
        answers the job.
        """
        self.assertEqual(self.session_id, "D")
        self.assertEqual(self.open_session(self.session_id, "1200"), "212")
        (info,) = self.store.read(jobs.list_pushes, DEVICE_ID)
        self.assertEqual((info.state, info.answered_at), (jobs.ANSWERED, 20.0))

    def test_client_initiated(self) -> None:
        """
        A client-initiated session (Alert 1201) with that id leaves the job open.
        """
        self.assertEqual(self.open_session(self.session_id, "1201"), "212")
        self.assertEqual(self.state(), jobs.QUEUED)

    def test_another_session_id(self) -> None:
        """
        Alert 1200 with another session id leaves the job open.
        """
        self.assertEqual(self.open_session("E", "1200"), "212")
        self.assertEqual(self.state(), jobs.QUEUED)

    def test_unauthenticated(self) -> None:
        """
        Alert 1200 with the session id but no credentials leaves the job open.
        """
        self.assertEqual(self.open_session(self.session_id, "1200", cred=False), "407")
        self.assertEqual(self.state(), jobs.QUEUED)
