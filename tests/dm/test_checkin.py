"""
Tests for L{mdmd.dm.checkin}: L{exchange}, the DM endpoint's unit of work, on
a real store in memory.
"""

from __future__ import annotations

import typing

from dataclasses import replace
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from mdmd.devices import records
from mdmd.dm import checkin, effects, engine, queue
from mdmd.dm.checkin import DeviceRefused, DMSettings, exchange
from mdmd.dm.commands import parse_spec
from mdmd.notify import jobs
from mdmd.notify.bootstrap import BootstrapPin
from mdmd.notify.pkg0 import session_id_text
from mdmd.notify.provisioning_doc import DMServer
from mdmd.pki import registry
from mdmd.pki.registry import ClientCertificateRefused
from mdmd.syncml.codec import XML_CODEC
from mdmd.syncml.model import Alert, Item, Location, Meta, SyncML
from mdmd.testing.devices import add_device
from mdmd.testing.randomness import fixed_random
from mdmd.testing.store import memory_store_service

from ..devices.helpers import issued
from ..notify.cp import add_classic_device

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


def with_certificate(root: Any, device_id: str) -> int:
    """
    A unit of work: give the device a certificate record of ours; return its serial.
    """
    certificate = issued(root, device_id)
    root["devices"][device_id].cert_serial = certificate.serial
    return certificate.serial


#: Every effect the session engine reports.
EFFECTS = set(typing.get_args(effects.Effect))


class CheckInTests(SynchronousTestCase):
    def setUp(self) -> None:
        service = memory_store_service()
        self.addCleanup(service.stopService)
        assert service.store is not None
        self.store = service.store
        self.store.run(add_device, DEVICE_ID)
        self.serial = self.store.run(with_certificate, DEVICE_ID)
        self.client = Client(session_id="A")

    def send(self, message: SyncML, now: float, settings: DMSettings = SETTINGS, certificate: Any = None) -> Any:
        body = XML_CODEC.encode(message)
        return self.store.run(exchange, certificate, message, XML_CODEC, body, None, now, settings)

    def device(self, *names: str) -> tuple[Any, ...]:
        return self.store.read(lambda root: tuple(getattr(root["devices"][DEVICE_ID], n) for n in names))

    def test_unenrollment_alert(self) -> None:
        """
        The unenrollment alert goes through the lifecycle: unenrolled, with
        unenrolled_at (not removed_at), its certificate revoked; the device's
        next message is refused.
        """
        message = self.client.package1()
        alert = Alert(
            cmd_id=self.client.next_id(),
            data="1226",
            items=(Item(meta=Meta(type=engine.UNENROLL_ALERT, format="int"), data="1"),),
        )
        result = self.send(replace(message, body=message.body + (alert,)), 20.0)
        self.assertEqual(XML_CODEC.decode(result.body).body[0].data, "212")
        self.assertEqual(self.device("status", "unenrolled_at", "removed_at"), ("unenrolled", 20.0, None))
        revoked = self.store.read(registry.lookup, self.serial)
        self.assertEqual((revoked.status, revoked.revocation_reason), ("revoked", "cessationOfOperation"))
        self.assertIn("{device_id}: the user unenrolled the device; its certificate is revoked", [n for n, _ in result.notes])
        with self.assertRaises(DeviceRefused) as caught:
            self.send(self.client.reply(cred=True), 21.0)
        self.assertEqual(str(caught.exception), f"device {DEVICE_ID} is unenrolled")

    def test_contact_kept_to_a_minute(self) -> None:
        """
        Each check-in is contact; last_contact moves once a minute at most.
        """
        self.send(self.client.package1(), 20.0)
        self.assertEqual(self.device("last_contact"), (20.0,))
        self.send(self.client.package1(), 50.0)
        self.assertEqual(self.device("last_contact"), (20.0,))
        self.send(self.client.package1(), 80.0)
        self.assertEqual(self.device("last_contact"), (80.0,))

    def test_refused(self) -> None:
        """
        A removed or unknown device is refused, so is a missing certificate when one is required.
        """
        with self.assertRaises(ClientCertificateRefused):
            self.send(self.client.package1(), 20.0, settings=DMSettings())
        self.store.run(records.remove, DEVICE_ID, 30.0)
        with self.assertRaises(DeviceRefused) as caught:
            self.send(self.client.package1(), 40.0)
        self.assertEqual(str(caught.exception), f"device {DEVICE_ID} is removed")
        self.assertEqual(self.device("last_contact"), (None,))
        message = Client(session_id="B").package1()
        message = replace(message, header=replace(message.header, source=Location(loc_uri="STRANGER")))
        with self.assertRaises(DeviceRefused) as caught:
            self.send(message, 50.0)
        self.assertEqual(str(caught.exception), "unknown device STRANGER")

    def test_every_effect_has_a_handler(self) -> None:
        """
        Each kind of effect the engine reports has its handler; anything else is our bug.
        """
        self.assertEqual(set(checkin._EFFECTS), EFFECTS)

        def unknown(root: Any) -> None:
            work = checkin._Applying(root, root["devices"][DEVICE_ID], queue.queue_of(root, DEVICE_ID), 1.0)
            checkin._apply(work, (effects.Unenrolled(), object()))

        with self.assertRaises(TypeError) as caught:
            self.store.run(unknown)
        self.assertIn("no handler for the session effect <object", str(caught.exception))
        # the unit failed as a whole: the device did not leave
        self.assertEqual(self.device("status"), ("enrolled",))


class BootstrapAnsweredTests(SynchronousTestCase):
    """
    A bootstrap job ends with the first message that authenticates the
    device in a session begun after the job was submitted.
    """

    def setUp(self) -> None:
        self.store = memory_store_service().store
        assert self.store is not None
        self.store.run(add_classic_device, DEVICE_ID)
        server = DMServer("mdmd", "mdmd", "https://mdm.example.com/ManagementServer/MDM.svc")
        self.job = self.store.run(jobs.enqueue_bootstrap, DEVICE_ID, BootstrapPin.network(), server, jobs.PushSettings(), 10.0)

    def submit(self, now: float) -> None:
        self.store.run(jobs.record_submitted, self.job.ref, now, via="spool", spool_file="f")

    def send(self, message: SyncML, now: float) -> Any:
        return self.store.run(exchange, None, message, XML_CODEC, XML_CODEC.encode(message), None, now, SETTINGS)

    def header_status(self, result: Any) -> str:
        return XML_CODEC.decode(result.body).body[0].data

    def state(self) -> str:
        (info,) = self.store.read(jobs.list_pushes, DEVICE_ID)
        return info.state

    def test_authenticated_session(self) -> None:
        """
        An authenticated package 1 (client-initiated) after submission
        answers the bootstrap, with a note for the log.
        """
        self.submit(15.0)
        result = self.send(Client().package1(), 20.0)
        self.assertEqual(self.header_status(result), "212")
        (info,) = self.store.read(jobs.list_pushes, DEVICE_ID)
        self.assertEqual((info.state, info.answered_at), (jobs.ANSWERED, 20.0))
        self.assertIn(("{device_id}: authenticated session ends bootstrap #{seq}", {"seq": 1}), result.notes)

    def test_unauthenticated(self) -> None:
        """
        A package 1 without credentials leaves it submitted.
        """
        self.submit(15.0)
        self.assertEqual(self.header_status(self.send(Client().package1(cred=False), 20.0)), "407")
        self.assertEqual(self.state(), jobs.SUBMITTED)

    def test_session_begun_before_submission(self) -> None:
        """
        A session authenticated before the job was submitted does not answer
        it, nor do its later messages; the next session does.
        """
        self.store.run(queue.enqueue, [DEVICE_ID], parse_spec({"verb": "Get", "target": "./DevDetail/SwV"}), 11.0)
        client = Client(session_id="A")
        first = self.send(client.package1(), 20.0)
        self.assertEqual(self.header_status(first), "212")
        self.assertEqual(self.state(), jobs.QUEUED)
        self.submit(25.0)
        server = XML_CODEC.decode(first.body)
        (get,) = [c for c in server.body if c.name == "Get"]
        reply = client.reply(
            client.header_status(server),
            client.status_for(server, get, 200),
            client.results_for(server, get, "./DevDetail/SwV", "1.0"),
        )
        self.send(reply, 30.0)
        self.assertEqual(self.state(), jobs.SUBMITTED)
        nonce = self.store.read(lambda root: root["devices"][DEVICE_ID].dm_client_nonce)
        self.assertEqual(self.header_status(self.send(Client(session_id="B", nonce=nonce).package1(), 40.0)), "212")
        self.assertEqual(self.state(), jobs.ANSWERED)
