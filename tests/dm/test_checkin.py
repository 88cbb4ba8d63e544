"""
Tests for L{mdmd.dm.checkin}: L{exchange}, the DM endpoint's unit of work, on
a real store in memory.
"""

from __future__ import annotations

import datetime
import functools
import itertools
import typing
from dataclasses import replace
from typing import Any, cast

from twisted.internet import defer
from twisted.trial.unittest import SynchronousTestCase

from mdmd.devices import records
from mdmd.devices.accounts import DeviceKind
from mdmd.dm import checkin, effects, engine, queue
from mdmd.dm.checkin import DeviceRefused, DMSettings, exchange
from mdmd.dm.commands import parse_spec
from mdmd.dm.sweeper import dm_facts
from mdmd.notify import jobs
from mdmd.notify.bootstrap import BootstrapPin
from mdmd.notify.pkg0 import session_id_text
from mdmd.notify.provisioning_doc import DMServer
from mdmd.pki import registry
from mdmd.pki.ca import generate_rsa_key
from mdmd.pki.registry import ClientCertificateRefused
from mdmd.store import due
from mdmd.syncml import auth
from mdmd.syncml.codec import WBXML_CODEC, XML_CODEC
from mdmd.syncml.model import Alert, Chal, Cred, Get, Item, Location, Meta, Status, SyncML
from mdmd.testing.devices import CLIENT_NONCE, CLIENT_SECRET, SERVER_NONCE, SERVER_SECRET, add_device
from mdmd.testing.omadm import AccountCredential, DMAccount, OMADMDevice
from mdmd.testing.randomness import fixed_random
from mdmd.testing.store import memory_store_service

from ..devices.helpers import issued
from ..narrowing import narrowed
from ..notify.cp import add_classic_device

from ..pki.helpers import DevicePKI
from .helpers import DEVICE_ID, Client, first_item

SETTINGS = DMSettings(require_client_certificate=False)


def header_status(body: bytes) -> str:
    """
    The Data of the first Status of an answer in XML: the one for the device's SyncHdr.
    """
    return narrowed(str, narrowed(Status, XML_CODEC.decode(body).body[0]).data)


class PushAnsweredTests(SynchronousTestCase):
    def setUp(self) -> None:
        store = memory_store_service().store
        assert store is not None
        self.store = store
        self.store.run(add_device, DEVICE_ID)
        (job,) = self.store.run(jobs.enqueue, [DEVICE_ID], jobs.PushSettings(), 10.0, fixed_random(0xD))
        assert job.info.session_id is not None
        self.session_id = session_id_text(job.info.session_id)

    def open_session(self, session_id: str, alert: str, cred: bool = True) -> str:
        """
        Send package 1; return the status the server gave our SyncHdr.
        """
        message = Client(session_id=session_id).package1(alert=alert, cred=cred)
        body = XML_CODEC.encode(message)
        result = self.store.run(exchange, None, message, XML_CODEC, body, None, 20.0, SETTINGS)
        return header_status(result.body)

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
        self.assertEqual(header_status(result.body), "212")
        self.assertEqual(self.device("status", "unenrolled_at", "removed_at"), ("unenrolled", 20.0, None))
        revoked = self.store.read(registry.lookup, self.serial)
        assert revoked is not None
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

    def test_session_filed_once(self) -> None:
        """
        A new session is filed in the deadline index at its deadline; the
        next messages move the deadline on and leave the index as it is (the
        sweeper moves the entry when it falls due).
        """

        def filed(root: Any) -> tuple[list[Any], Any, float]:
            record = root["sessions"][DEVICE_ID]
            return list(root["session_deadlines"]), record.due_slot, record.state["deadline"]

        answer = self.send(self.client.package1(), 20.0)
        slot = due.slot_of(20.0 + 1800.0)
        self.assertEqual(self.store.read(filed), ([(slot, DEVICE_ID)], slot, 1820.0))
        server = XML_CODEC.decode(answer.body)
        self.send(self.client.reply(self.client.header_status(server)), 500.0)
        self.assertEqual(self.store.read(filed), ([(slot, DEVICE_ID)], slot, 2300.0))

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
            checkin.apply_effects(
                root, root["devices"][DEVICE_ID], queue.queue_of(root, DEVICE_ID), (effects.Unenrolled(), cast(Any, object())), 1.0
            )

        with self.assertRaises(TypeError) as caught:
            self.store.run(unknown)
        self.assertIn("no handler for the session effect <object", str(caught.exception))
        # the unit failed as a whole: the device did not leave
        self.assertEqual(self.device("status"), ("enrolled",))


class FailedLoginTests(SynchronousTestCase):
    """
    Failed DM authentications are logged and kept on the device record, and limited across sessions.
    """

    def setUp(self) -> None:
        service = memory_store_service()
        self.addCleanup(service.stopService)
        assert service.store is not None
        self.store = service.store
        self.store.run(add_device, DEVICE_ID)
        self.settings = replace(SETTINGS, session=effects.Settings(max_auth_failures=2, auth_lockout=600.0))

    def send(self, session_id: str, secret: str, now: float) -> tuple[str | None, Any]:
        client = Client(session_id=session_id)
        client.device = replace(client.device, client=replace(client.device.client, secret=secret))
        client.nonce = self.store.read(lambda root: root["devices"][DEVICE_ID].dm_client_nonce)
        message = client.package1()
        result = self.store.run(exchange, None, message, XML_CODEC, XML_CODEC.encode(message), None, now, self.settings)
        return narrowed(Status, XML_CODEC.decode(result.body).body[0]).data, result

    def record(self) -> Any:
        record: dict[str, Any] | None = self.store.read(lambda root: root["devices"][DEVICE_ID].dm_login_failures)
        return record

    def test_logged_and_recorded(self) -> None:
        """
        Every failure is a note with its scheme and count and is kept on the
        device record (shown by dm_facts); past the limit the device is refused
        for the lockout, a note says so, and the device's nonce stays as it was.
        """
        answers = []
        for n, session_id in enumerate("ABCD"):
            code, result = self.send(session_id, "wrong", 20.0 + n)
            answers.append(code)
            if n == 0:
                self.assertIn(
                    ("{device_id}: authentication failed ({code}, {scheme}), {count} failure(s) lately",
                     {"scheme": "digest", "code": 401, "count": 1}),
                    result.notes,
                )
        self.assertEqual(answers, ["401", "401", "401", "417"])
        self.assertEqual(self.record(), {"count": 3, "last": 22.0, "locked_until": 622.0})
        self.assertIn(
            ("{device_id}: message refused (417) unread: {count} failed authentications, locked out {seconds:.0f} s more",
             {"count": 3, "seconds": 599.0}),
            result.notes,
        )
        nonce = self.store.read(lambda root: root["devices"][DEVICE_ID].dm_client_nonce)
        self.assertEqual(self.send("E", "wrong", 30.0)[0], "417")
        self.assertEqual(self.store.read(lambda root: root["devices"][DEVICE_ID].dm_client_nonce), nonce)
        facts = self.store.read(dm_facts, DEVICE_ID)
        assert facts is not None
        self.assertEqual(facts["login_failures"]["count"], 3)

    def test_cleared_by_a_success(self) -> None:
        """
        The right credentials after a failure clear the record.
        """
        self.assertEqual(self.send("A", "wrong", 20.0)[0], "401")
        self.assertEqual(self.record()["count"], 1)
        self.assertEqual(self.send("B", CLIENT_SECRET, 21.0)[0], "212")
        self.assertIsNone(self.record())
        self.assertIsNone(narrowed(dict, self.store.read(dm_facts, DEVICE_ID))["login_failures"])


CLASSIC = "IMEI:490154203237518"


class ClassicDeviceTests(SynchronousTestCase):
    """
    A classic OMA DM device (kind omadm) checking in: our credential per kind,
    what it answers to our SyncHdr kept on its record, refused commands requeued.
    """

    def setUp(self) -> None:
        service = memory_store_service()
        self.addCleanup(service.stopService)
        assert service.store is not None
        self.store = service.store
        self.now = 100.0

    def add(self, device_id: str = CLASSIC, **options: Any) -> OMADMDevice:
        """
        A classic device in the store, and its emulator with the same account.
        """
        options.setdefault("kind", "omadm")
        self.store.run(add_device, device_id, client_name=device_id, **options)
        account = DMAccount(
            server_id="mdmd",
            server_uri="https://mdm.example.com/ManagementServer/MDM.svc",
            client=AccountCredential("DIGEST", device_id, CLIENT_SECRET, CLIENT_NONCE),
            server=AccountCredential(options.get("server_auth_type", "DIGEST"), "mdmd", SERVER_SECRET, SERVER_NONCE),
        )
        counter = itertools.count(1)
        return OMADMDevice(device_id, account, random=lambda n: bytes([next(counter)]) * n)

    def queue(self, device_id: str, *specs: dict[str, Any]) -> None:
        for spec in specs:
            self.store.run(queue.enqueue, [device_id], parse_spec(spec), self.now)

    def converse(self, device: OMADMDevice, first: bytes, settings: DMSettings = SETTINGS) -> list[Any]:
        """
        Run the device's session through exchange(); return every check-in's result.
        """
        results = []
        body: bytes | None = first
        while body is not None:
            message = device.codec.decode(body)
            result = self.store.run(exchange, None, message, device.codec, body, None, self.now, settings)
            self.now += 1
            results.append(result)
            body = device.receive(result.body)
        self.now += 3600
        return results

    def record(self, device_id: str, *names: str) -> tuple[Any, ...]:
        return self.store.read(lambda root: tuple(getattr(root["devices"][device_id], n) for n in names))

    def commands(self, device_id: str) -> list[tuple[str, int | None, int]]:
        return self.store.read(
            lambda root: [(c.state, c.status, c.attempts) for c in root["queues"][device_id].commands.values()]
        )

    def test_our_credential_per_kind(self) -> None:
        """
        By default a classic device gets our MD5 Cred in the first reply, a Windows
        device does not; [dm] send_server_credential decides.
        """
        self.store.run(add_device, CLASSIC, kind="omadm")
        self.store.run(add_device, DEVICE_ID)
        for device_id in (CLASSIC, DEVICE_ID):
            self.queue(device_id, {"verb": "Get", "target": "./DevInfo/Mod"})
        first: dict[tuple[str, frozenset[DeviceKind]], Cred | None] = {}
        for device_id in (CLASSIC, DEVICE_ID):
            for settings in (SETTINGS, replace(SETTINGS, send_server_credential=frozenset({DeviceKind.WINDOWS}))):
                client = Client(session_id="1", nonce=self.record(device_id, "dm_client_nonce")[0])
                message = client.package1()
                message = replace(message, header=replace(message.header, source=Location(loc_uri=device_id)))
                result = self.store.run(exchange, None, message, XML_CODEC, XML_CODEC.encode(message), None, self.now, settings)
                self.now += 3600
                first[device_id, settings.send_server_credential] = XML_CODEC.decode(result.body).header.cred
        md5 = auth.md5_cred_data("mdmd", SERVER_NONCE, password=SERVER_SECRET)
        self.assertEqual(narrowed(Cred, first[CLASSIC, frozenset({DeviceKind.OMADM})]).data, md5)
        self.assertIsNone(first[DEVICE_ID, frozenset({DeviceKind.OMADM})])
        self.assertIsNone(first[CLASSIC, frozenset({DeviceKind.WINDOWS})])
        self.assertEqual(narrowed(Cred, first[DEVICE_ID, frozenset({DeviceKind.WINDOWS})]).data, md5)

    def test_session_with_the_emulator(self) -> None:
        """
        The emulated classic device (SyncML DS media type, our Cred checked) runs
        the queued Get, Replace and Exec; results and its generic alert are stored.
        """
        device = self.add(CLASSIC)
        self.queue(
            CLASSIC,
            {"verb": "Get", "target": "./DevDetail/SwV"},
            {"verb": "Replace", "target": "./Vendor/memory/setting", "data": "on", "format": "chr"},
            {"verb": "Exec", "target": "./test/execute"},
        )
        results = self.converse(device, device.start())
        self.assertEqual(device.log.checks, [True])
        self.assertEqual([s for s, _, _ in self.commands(CLASSIC)], ["done"] * 3)
        self.assertEqual(self.store.read(queue.get_command, CLASSIC, 1).results[0]["data"], "2.4.1")
        (alert,) = self.record(CLASSIC, "alerts")[0]
        self.assertEqual((alert["type"], alert["source"]), ("urn:test", "./test/execute"))
        self.assertEqual(self.record(CLASSIC, "dm_server_nonce")[0], narrowed(AccountCredential, device.account.server).nonce)
        self.assertEqual(self.record(CLASSIC, "header_events"), ((),))
        self.assertEqual(len(results), 2)

    def test_basic_server_credential(self) -> None:
        """
        A device whose server auth type is BASIC gets (and accepts) our Basic Cred.
        """
        device = self.add(CLASSIC, server_auth_type="BASIC")
        self.queue(CLASSIC, {"verb": "Get", "target": "./DevInfo/Mod"})
        results = self.converse(device, device.start())
        self.assertEqual(narrowed(Meta, narrowed(Cred, XML_CODEC.decode(results[0].body).header.cred).meta).type, "syncml:auth-basic")
        self.assertEqual(device.log.checks, [True])
        self.assertEqual(self.commands(CLASSIC)[0][:2], ("done", 200))

    def test_invalid_status_kept_and_logged(self) -> None:
        """
        Without our Cred the device answers 0: that is kept on its record (session,
        time) and logged; the command's 0 is its recorded status.
        """
        device = self.add(CLASSIC)
        self.queue(CLASSIC, {"verb": "Get", "target": "./DevInfo/Mod"})
        results = self.converse(device, device.start(), replace(SETTINGS, send_server_credential=frozenset()))
        ((event,),) = self.record(CLASSIC, "header_events")
        self.assertEqual(event, {"time": 101.0, "session_id": "1", "event": "invalid", "status": "0"})
        notes = [(text, fields) for result in results for text, fields in result.notes]
        self.assertIn(("invalid", "0"), [("invalid", f["status"]) for t, f in notes if "not a status code" in t])
        self.assertEqual(self.commands(CLASSIC), [("failed", 0, 1)])
        facts = self.store.read(dm_facts, CLASSIC)
        assert facts is not None
        self.assertEqual(facts["header_events"], [event])

    def test_refusal_kept_and_commands_requeued(self) -> None:
        """
        A stale server nonce: the device refuses our Cred (kept as "refused"), the
        command goes out again (its attempt not counted) and is done.
        """
        device = self.add(CLASSIC)
        narrowed(AccountCredential, device.account.server).nonce = b"stale"
        self.queue(CLASSIC, {"verb": "Get", "target": "./DevInfo/Mod"})
        results = self.converse(device, device.start())
        ((event,),) = self.record(CLASSIC, "header_events")
        self.assertEqual((event["event"], event["status"], event["session_id"]), ("refused", "401", "1"))
        self.assertEqual(self.commands(CLASSIC), [("done", 200, 1)])
        notes = [text for result in results for text, _ in result.notes]
        self.assertIn("{device_id}: the device refused our credential ({status}) in session {session_id}", notes)
        self.assertIn("{device_id}: command {seq} answered {status} before the device authenticated us: sent again", notes)

    def test_events_bounded(self) -> None:
        """
        The record keeps the last KEEP_HEADER_EVENTS answers, oldest first.
        """
        device = self.add(CLASSIC)
        off = replace(SETTINGS, send_server_credential=frozenset())
        for n in range(checkin.KEEP_HEADER_EVENTS + 3):
            self.queue(CLASSIC, {"verb": "Get", "target": "./DevInfo/Mod"})
            self.converse(device, device.start(n + 1), off)
        (events,) = self.record(CLASSIC, "header_events")
        self.assertEqual(len(events), checkin.KEEP_HEADER_EVENTS)
        self.assertEqual([e["session_id"] for e in events], [format(n + 1, "X") for n in range(3, checkin.KEEP_HEADER_EVENTS + 3)])
        self.assertEqual(
            self.store.read(lambda root: type(root["devices"][CLASSIC].header_events)), tuple
        )

    def test_challenged_without_our_credential(self) -> None:
        """
        A 407 to a message that carried no Cred of ours is kept as "challenged".
        """
        self.store.run(add_device, DEVICE_ID)
        self.queue(DEVICE_ID, {"verb": "Get", "target": "./DevInfo/Mod"})
        client = Client(session_id="C")
        message = client.package1()
        reply = XML_CODEC.decode(self.store.run(exchange, None, message, XML_CODEC, XML_CODEC.encode(message), None, 10.0, SETTINGS).body)
        client.cmd_ids = itertools.count(1)
        answer = client.reply(client.header_status(reply, 407))
        self.store.run(exchange, None, answer, XML_CODEC, XML_CODEC.encode(answer), None, 11.0, SETTINGS)
        ((event,),) = self.record(DEVICE_ID, "header_events")
        self.assertEqual((event["event"], event["status"]), ("challenged", "407"))

    def test_atomic_without_its_own_status(self) -> None:
        """
        The emulated libdmclient answers an Atomic's members only: the command is
        done, with the note kept on its record and logged, and not sent again.
        """
        device = self.add(CLASSIC)
        self.queue(
            CLASSIC,
            {"verb": "Atomic", "commands": [{"verb": "Replace", "target": "./Vendor/memory/setting", "data": "on", "format": "chr"}]},
        )
        results = self.converse(device, device.start())
        command = self.store.read(queue.get_command, CLASSIC, 1)
        note = "the device sent no status for the Atomic itself: answered from its members' statuses"
        self.assertEqual((command.state, command.status, command.statuses, command.note), ("done", 200, (("1", 200),), note))
        notes = [(text, fields) for result in results for text, fields in result.notes]
        self.assertIn(("{device_id}: command {seq} answered {status}: {note}", {"seq": 1, "status": 200, "note": note}), notes)
        self.converse(device, device.start(2))
        self.assertEqual(device.log.executed, [])

    def test_add_and_replace_spelt_out(self) -> None:
        """
        A classic device gets Add and Replace items with Meta/Format (chr when
        none was given) and Data (empty when none was given), which the emulated
        libdmclient needs (it crashes without them); a Windows device gets them as given.
        """
        device = self.add(CLASSIC)
        specs = (
            {"verb": "Add", "target": "./Vendor/memory/new"},
            {"verb": "Replace", "target": "./Vendor/memory/setting", "data": "on"},
            {"verb": "Replace", "target": "./Vendor/memory/setting", "data": "7", "format": "int"},
        )
        self.queue(CLASSIC, *specs)
        results = self.converse(device, device.start())
        sent = [c for c in XML_CODEC.decode(results[0].body).body if not isinstance(c, Status)]
        self.assertEqual(
            [(narrowed(Meta, first_item(c).meta).format, first_item(c).data) for c in sent],
            [("chr", ""), ("chr", "on"), ("int", "7")],
        )
        self.assertEqual([s for s, _, _ in self.commands(CLASSIC)], ["done"] * 3)
        self.store.run(add_device, DEVICE_ID)
        self.queue(DEVICE_ID, *specs[:2])
        message = Client(session_id="W").package1()
        reply = XML_CODEC.decode(self.store.run(exchange, None, message, XML_CODEC, XML_CODEC.encode(message), None, 10.0, SETTINGS).body)
        sent = [c for c in reply.body if not isinstance(c, Status)]
        self.assertEqual([(first_item(c).meta, first_item(c).data) for c in sent], [(None, None), (None, "on")])
class BootstrapAnsweredTests(SynchronousTestCase):
    """
    A bootstrap job ends with the first message that authenticates the
    device in a session begun after the job was submitted.
    """

    def setUp(self) -> None:
        store = memory_store_service().store
        assert store is not None
        self.store = store
        self.store.run(add_classic_device, DEVICE_ID)
        server = DMServer("mdmd", "mdmd", "https://mdm.example.com/ManagementServer/MDM.svc")
        self.job = self.store.run(jobs.enqueue_bootstrap, DEVICE_ID, BootstrapPin.network(), server, jobs.PushSettings(), 10.0)

    def submit(self, now: float) -> None:
        self.store.run(jobs.record_submitted, self.job.ref, now, via="spool", spool_file="f")

    def send(self, message: SyncML, now: float) -> Any:
        return self.store.run(exchange, None, message, XML_CODEC, XML_CODEC.encode(message), None, now, SETTINGS)

    def header_status(self, result: Any) -> str:
        return header_status(result.body)

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


@functools.cache
def _pkis() -> tuple[DevicePKI, DevicePKI, Any]:
    """
    An operator's device PKI, a CA standing for ours, and a client key (made once: keys are slow).
    """
    return DevicePKI(), DevicePKI("mdmd device CA (test)"), generate_rsa_key(2048).public_key()


class ClientCertificateTests(SynchronousTestCase):
    """
    Which TLS client certificates a session needs and honours: the
    device's own setting, else its kind's; ours as issued; a device CA's for
    classic devices it names.
    """

    def setUp(self) -> None:
        self.pki, self.our_ca, self.key = _pkis()
        service = memory_store_service()
        self.addCleanup(service.stopService)
        assert service.store is not None
        self.store = service.store
        self.store.run(add_device, DEVICE_ID)
        self.settings = DMSettings(device_cas=(self.pki.certificate,))

    def set(self, **values: Any) -> None:
        def unit(root: Any) -> None:
            for name, value in values.items():
                setattr(root["devices"][DEVICE_ID], name, value)

        self.store.run(unit)

    def send(self, certificate: Any = None) -> str:
        """
        Send package 1 of a new session; return the status of our SyncHdr, or the refusal's message.
        """

        def fresh(root: Any) -> None:
            root["devices"][DEVICE_ID].dm_client_nonce = b"\x01" * 16
            root["sessions"].pop(DEVICE_ID, None)

        self.store.run(fresh)
        message = Client(session_id="A").package1()
        try:
            result = self.store.run(exchange, certificate, message, XML_CODEC, XML_CODEC.encode(message), None, 20.0, self.settings)
        except (ClientCertificateRefused, DeviceRefused) as e:
            return f"{type(e).__name__}: {e}"
        return header_status(result.body)

    def ours(self, device_id: str = DEVICE_ID) -> Any:
        """
        A certificate of "our" CA, recorded as issued to C{device_id}.
        """
        certificate = self.our_ca.authority.issue_client(self.key, device_id, datetime.timedelta(days=1), self.our_ca.now)
        self.store.run(registry.record_issued, certificate, device_id, 1.0)
        return certificate

    def test_kind_defaults(self) -> None:
        """
        Without its own setting a Windows device needs a certificate, a classic one does not.
        """
        self.assertEqual(self.send(), "ClientCertificateRefused: a client certificate is required")
        self.set(kind="omadm")
        self.assertEqual(self.send(), "212")
        self.settings = replace(self.settings, require_client_certificate_omadm=True)
        self.assertEqual(self.send(), "ClientCertificateRefused: a client certificate is required")

    def test_device_setting_first(self) -> None:
        """
        A device's own setting overrides its kind's default, both ways.
        """
        self.set(client_certificate="optional")
        self.assertEqual(self.send(), "212")
        self.set(kind="omadm", client_certificate="required")
        self.assertEqual(self.send(), "ClientCertificateRefused: a client certificate is required")

    def test_our_certificates(self) -> None:
        """
        One of ours is honoured for its device, as issued and not revoked, whatever the kind.
        """
        certificate = self.ours()
        self.assertEqual(self.send(certificate), "212")
        self.set(kind="omadm")
        self.assertEqual(self.send(certificate), "212")
        other = self.ours("SOMEONE-ELSE")
        self.assertEqual(self.send(other), f"DeviceRefused: the certificate of SOMEONE-ELSE was presented for device {DEVICE_ID}")
        self.store.run(registry.revoke, certificate.serial_number, "keyCompromise", 30.0)
        self.assertIn("is revoked", self.send(certificate))

    def test_device_ca_certificates(self) -> None:
        """
        A device CA's certificate is honoured for a classic device it names by
        its CN, a SAN URI or a SAN DNS name; not for another device, and not
        for a Windows device.
        """
        self.set(kind="omadm")
        for certificate in (
            self.pki.issue(self.key, DEVICE_ID),
            self.pki.issue(self.key, "modem 17", uris=(DEVICE_ID,)),
            self.pki.issue(self.key, "modem 17", dns=(DEVICE_ID,)),
        ):
            self.assertEqual(self.send(certificate), "212")
        self.assertEqual(
            self.send(self.pki.issue(self.key, "modem 17", uris=("urn:imei:1",))),
            f"DeviceRefused: the certificate of modem 17, urn:imei:1 was presented for device {DEVICE_ID}",
        )
        self.set(kind="windows")
        self.assertEqual(
            self.send(self.pki.issue(self.key, DEVICE_ID)),
            f"ClientCertificateRefused: device {DEVICE_ID} is a windows device: a certificate from a "
            "device CA is honoured for classic OMA DM devices only",
        )

    def test_unknown_issuer(self) -> None:
        """
        A certificate neither ours nor from a configured device CA is refused
        as today (without device CAs, a device PKI's certificate is just that).
        """
        self.set(kind="omadm")
        certificate = self.pki.issue(self.key, DEVICE_ID)
        self.settings = DMSettings()
        self.assertIn("was not issued by this server", self.send(certificate))


class AccountSchemeTests(SynchronousTestCase):
    def test_scheme_of_the_account(self) -> None:
        """
        The session checks the device with its account's scheme: a device
        registered for HMAC is refused an MD5 digest and challenged for HMAC.
        """
        service = memory_store_service()
        self.addCleanup(service.stopService)
        assert service.store is not None
        service.store.run(add_device, DEVICE_ID)

        def hmac(root: Any) -> None:
            root["devices"][DEVICE_ID].dm_client_auth_type = "HMAC"

        service.store.run(hmac)
        message = Client(session_id="A").package1()
        result = service.store.run(exchange, None, message, XML_CODEC, XML_CODEC.encode(message), None, 20.0, SETTINGS)
        header = narrowed(Status, XML_CODEC.decode(result.body).body[0])
        self.assertEqual((header.data, narrowed(Chal, header.chal).meta.type), ("401", "syncml:auth-MAC"))


class IssueTwelveCheckInTests(SynchronousTestCase):
    """
    Through exchange() and a store: resends, the unenrollment closing what was
    pending, 202 finished by the device's alert, events kept, peer text.
    """

    def setUp(self) -> None:
        service = memory_store_service()
        self.addCleanup(service.stopService)
        assert service.store is not None
        self.store = service.store
        self.store.run(add_device, DEVICE_ID)
        self.client = Client(session_id="A")
        self.now = 100.0

    def send(self, message: SyncML, codec: Any = XML_CODEC, raw: bytes | None = None) -> Any:
        body = codec.encode(message) if raw is None else raw
        self.now += 1
        return self.store.run(exchange, None, codec.decode(body), codec, body, None, self.now, SETTINGS)

    def queue(self, *specs: dict[str, Any]) -> None:
        for spec in specs:
            self.store.run(queue.enqueue, [DEVICE_ID], parse_spec(spec), self.now)

    def commands(self) -> list[tuple[str, int | None, int, str | None]]:
        return self.store.read(
            lambda root: [(c.state, c.status, c.attempts, c.error) for c in root["queues"][DEVICE_ID].commands.values()]
        )

    def facts(self) -> dict[str, Any]:
        facts = self.store.read(dm_facts, DEVICE_ID)
        assert facts is not None
        return facts

    def test_resent_message_applied_once(self) -> None:
        """
        A resent message gets the same answer; its commands are sent once (one attempt);
        the answer is kept beside the state, and dropped once the session ended.
        """
        self.queue({"verb": "Get", "target": "./DevDetail/SwV"})
        body = XML_CODEC.encode(self.client.package1())
        first = self.send(XML_CODEC.decode(body), raw=body)
        again = self.send(XML_CODEC.decode(body), raw=body)
        self.assertEqual((again.body, again.headers), (first.body, first.headers))
        self.assertIn("{device_id}: message {msg_id} of session {session_id} resent: our answer again", [n for n, _ in again.notes])
        self.assertEqual(self.commands(), [("sent", None, 1, None)])
        kept = self.store.read(lambda root: root["sessions"][DEVICE_ID].last_answer)
        self.assertEqual(kept["body"], first.body)
        reply = XML_CODEC.decode(first.body)
        (get,) = [c for c in reply.body if isinstance(c, Get)]
        c = self.client
        c.cmd_ids = itertools.count(1)
        self.send(c.reply(c.header_status(reply), c.status_for(reply, get, 200), c.results_for(reply, get, "./DevDetail/SwV", "1")))
        self.assertEqual(self.commands(), [("done", 200, 1, None)])
        self.assertIsNone(self.store.read(lambda root: root["sessions"][DEVICE_ID].last_answer))

    def test_unenrollment_closes_what_was_pending(self) -> None:
        """
        The unenrollment alert is answered with statuses only; every pending command
        (queued, sent, accepted) is cancelled with the reason, and shown so.
        """
        self.queue({"verb": "Exec", "target": "./Vendor/X/Run"}, {"verb": "Get", "target": "./DevDetail/SwV"})
        reply = XML_CODEC.decode(self.send(self.client.package1()).body)
        exec_, get = [c for c in reply.body if not isinstance(c, Status)]
        self.queue({"verb": "Get", "target": "./DevDetail/OEM"})
        c = self.client
        c.cmd_ids = itertools.count(1)
        alert = Alert(cmd_id="9", data="1226", items=(Item(meta=Meta(type=engine.UNENROLL_ALERT, format="int"), data="1"),))
        result = self.send(c.reply(c.header_status(reply), c.status_for(reply, exec_, 202), alert))
        answer = XML_CODEC.decode(result.body)
        self.assertEqual([type(x).__name__ for x in answer.body], ["Status", "Status"])
        self.assertEqual(
            self.commands(),
            [("cancelled", 202, 1, checkin.UNENROLLED_REASON), ("cancelled", None, 1, checkin.UNENROLLED_REASON), ("cancelled", None, 0, checkin.UNENROLLED_REASON)],
        )
        self.assertIn("{device_id}: {count} pending command(s) cancelled: the device left", [n for n, _ in result.notes])
        self.assertEqual(self.facts()["commands"], {"cancelled": 3})

    def test_202_finished_by_the_alert(self) -> None:
        """
        Exec answered 202 stays accepted (not done) and sends nothing again; the device's
        completion alert in a later session (1224 as Microsoft's MSI sample, or 1226),
        naming the node, finishes it with the alert kept among its results.
        """
        msi = "./Device/Vendor/MSFT/EnterpriseDesktopAppManagement/MSI/%7BAF92%7D/DownloadInstall"
        hosted = "./User/Vendor/MSFT/EnterpriseModernAppManagement/AppInstallation/App_1/HostedInstall"
        self.queue({"verb": "Exec", "target": msi, "data": "<MsiInstallJob/>"}, {"verb": "Exec", "target": hosted}, {"verb": "Exec", "target": "./Vendor/X/Run", "correlator": "c-9"})
        reply = XML_CODEC.decode(self.send(self.client.package1()).body)
        c = self.client
        c.cmd_ids = itertools.count(1)
        statuses = [c.status_for(reply, x, 202) for x in reply.body if not isinstance(x, Status)]
        self.send(c.reply(c.header_status(reply), *statuses))
        self.assertEqual([s for s, *_ in self.commands()], ["accepted"] * 3)
        self.assertEqual(self.store.read(queue.list_commands, DEVICE_ID, ("accepted",))[0].status, 202)

        def item(uri: str, kind: str, data: str) -> Item:
            return Item(source=Location(loc_uri=uri), meta=Meta(type=kind, format="int", mark="informational"), data=data)

        self.client = Client(session_id="B", nonce=self.store.read(lambda root: root["devices"][DEVICE_ID].dm_client_nonce))
        message = self.client.package1()
        events = (
            Alert(cmd_id="7", data="1224", items=(item(msi.replace("./Device/", "./device/"), "Reversed-Domain-Name:com.microsoft.mdm.win32csp_install", "0"),)),
            Alert(cmd_id="8", data="1226", items=(item(hosted, "Reversed-Domain-Name:com.microsoft.mdm.EnterpriseHostedAppInstall.result", "2147942405"),)),
            Alert(cmd_id="9", data="1226", correlator="c-9", items=(item("./elsewhere", "urn:x", "200"),)),
        )
        result = self.send(replace(message, body=message.body + events))
        answer = XML_CODEC.decode(result.body)
        self.assertEqual([x.data for x in answer.body if isinstance(x, Status)][-3:], ["200", "200", "200"])
        done = self.commands()
        self.assertEqual([(s, e) for s, _, _, e in done], [("done", None), ("failed", "its completion alert reports '2147942405'"), ("done", None)])
        first = self.store.read(queue.get_command, DEVICE_ID, 1)
        self.assertEqual((first.status, first.results[-1]["type"], first.results[-1]["data"]), (202, "Reversed-Domain-Name:com.microsoft.mdm.win32csp_install", "0"))
        self.assertEqual([a["alert"] for a in self.facts()["alerts"]], ["1224", "1226", "1226"])

    def test_events_kept_and_bounded(self) -> None:
        """
        1224 items other than LoginStatus are kept with the generic alerts, the last
        KEEP_ALERTS of them, oldest first.
        """
        message = self.client.package1()
        items = tuple(Item(meta=Meta(type="com.microsoft.mdm.synctype", format="chr"), data=f"v{i}") for i in range(checkin.KEEP_ALERTS + 5))
        self.send(replace(message, body=message.body + (Alert(cmd_id="9", data="1224", items=items),)))
        alerts = self.facts()["alerts"]
        self.assertEqual(len(alerts), checkin.KEEP_ALERTS)
        self.assertEqual((alerts[0]["data"], alerts[-1]["data"], alerts[-1]["alert"]), ("v5", f"v{checkin.KEEP_ALERTS + 4}", "1224"))
        self.assertEqual(self.facts()["login_status"], "user")

    def test_opaque_login_status_in_wbxml(self) -> None:
        """
        The issue's defect 3: a LoginStatus alert whose WBXML opaque data is not UTF-8
        is answered (not a 500); the login status is what it was sent as (base64).
        """
        message = self.client.package1()
        login = narrowed(Alert, message.body[1])
        odd = replace(login, items=(replace(login.items[0], data=b"\xc3\x28"),))
        result = self.send(replace(message, body=(message.body[0], odd, message.body[2])), codec=WBXML_CODEC)
        answer = WBXML_CODEC.decode(result.body)
        self.assertEqual([x.data for x in answer.body if isinstance(x, Status)], ["212", "200", "200", "200"])
        self.assertEqual(self.facts()["login_status"], "wyg=")

    def test_copy_refused_for_windows(self) -> None:
        """
        Copy cannot be queued for a Windows device (declared 400); a classic device takes it.
        """
        copy = parse_spec({"verb": "Copy", "target": "./Vendor/B", "source": "./Vendor/A"})
        in_sequence = parse_spec({"verb": "Sequence", "commands": [copy.as_json()]})
        for spec in (copy, in_sequence):
            with self.assertRaises(queue.UnsupportedByDevice) as caught:
                self.store.run(queue.enqueue, [DEVICE_ID], spec, self.now)
            self.assertEqual(str(caught.exception), f"device {DEVICE_ID}: windows devices do not support Copy")
            self.assertEqual(caught.exception.http_status, 400)
        self.store.run(add_device, CLASSIC, kind="omadm")
        (queued,) = self.store.run(queue.enqueue, [CLASSIC], copy, self.now)
        self.assertEqual(queued.state, "queued")


class LostAnswerTests(SynchronousTestCase):
    """
    The emulated Windows DM client losing answers, through exchange() and a store:
    the issue's "object announced 3000 bytes, chunks carry 2301" no more.
    """

    def setUp(self) -> None:
        service = memory_store_service()
        self.addCleanup(service.stopService)
        assert service.store is not None
        self.store = service.store
        self.store.run(add_device, DEVICE_ID)
        self.now = 100.0

    async def post(self, body: bytes, content_type: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        self.now += 1
        result = self.store.run(exchange, None, XML_CODEC.decode(body), XML_CODEC, body, None, self.now, SETTINGS)
        return 200, {"content-type": XML_CODEC.content_type}, result.body

    def test_every_answer_lost_once(self) -> None:
        """
        Every answer of a session sending a 3000-byte object in chunks is lost once:
        each chunk still arrives once, the object whole, each command done in one attempt.
        """
        from mdmd.testing.dmclient import DMClient

        data = "".join(chr(65 + i % 26) for i in range(3000))
        self.store.run(queue.enqueue, [DEVICE_ID], parse_spec({"verb": "Replace", "target": "./Vendor/Big", "data": data, "format": "chr"}), 1.0)
        self.store.run(queue.enqueue, [DEVICE_ID], parse_spec({"verb": "Get", "target": "./DevDetail/SwV"}), 1.0)
        device = DMClient(
            device_id=DEVICE_ID,
            server_url="https://mdm.example.com/ManagementServer/MDM.svc",
            client_name="device-name",
            client_secret=CLIENT_SECRET,
            client_nonce=CLIENT_NONCE,
            max_msg_size=1500,
            lose=frozenset(range(1, 40)),
        )
        log = self.successResultOf(defer.ensureDeferred(device.session(self.post)))
        self.assertGreaterEqual(log.messages, 4)
        self.assertEqual(log.resent, log.messages)
        self.assertEqual(device.tree["./Vendor/Big"], data)
        found = self.store.read(lambda root: [(c.state, c.status, c.attempts) for c in root["queues"][DEVICE_ID].commands.values()])
        self.assertEqual(found, [("done", 200, 1), ("done", 200, 1)])
class PushChannelTests(SynchronousTestCase):
    """
    With WNS, the check-in sets up and follows the device's channel, and
    answers WNS pushes; driven by the emulated DM client with its Push node.
    """

    PFN = "Contoso.MDMPush_8wekyb3d8bbwe"

    def setUp(self) -> None:
        from mdmd.notify.channels import ChannelSettings
        from mdmd.testing.dmclient import DMClient
        from mdmd.testing.windows.push import PushNode

        service = memory_store_service()
        self.addCleanup(service.stopService)
        assert service.store is not None
        self.store = service.store
        self.store.run(add_device, DEVICE_ID)
        self.settings = replace(SETTINGS, push_channel=ChannelSettings(pfn=self.PFN, provider_id="mdmd"))
        self.channels = iter(f"https://db5p.notify.windows.com/w/?token=T{n}" for n in range(1, 100))
        self.push = PushNode("mdmd", register=lambda pfn: next(self.channels))
        self.client = DMClient(
            device_id=DEVICE_ID,
            server_url="https://mdm.example.com/ManagementServer/MDM.svc",
            client_name="device-name",
            client_secret="device-secret",
            client_nonce=b"\x01" * 16,
            handlers=[self.push],
        )
        self.now = 1000.0

    def session(self, alert: str = "1201") -> Any:
        from twisted.internet.defer import Deferred

        async def post(body: bytes, content_type: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
            message = XML_CODEC.decode(body)
            self.now += 1.0
            result = self.store.run(exchange, None, message, XML_CODEC, body, None, self.now, self.settings)
            return 200, {"content-type": XML_CODEC.content_type}, result.body

        return self.successResultOf(Deferred.fromCoroutine(self.client.session(post, alert=alert)))

    def channel(self) -> Any:
        from mdmd.notify import channels

        return self.store.read(lambda root: channels.channel_of(root["devices"][DEVICE_ID]))

    def test_first_session_sets_up_the_channel(self) -> None:
        """
        The first session sets the PFN and reads back the channel the device got, and its status.
        """
        log = self.session()
        targets = [c.items[0].target.loc_uri for c in log.received]
        base = "./Vendor/MSFT/DMClient/Provider/mdmd/Push/"
        self.assertEqual(targets, [base + "PFN", base + "ChannelURI", base + "Status"])
        channel = self.channel()
        self.assertEqual(
            (channel.pfn, channel.pfn_via, channel.uri, channel.status),
            (self.PFN, "session", "https://db5p.notify.windows.com/w/?token=T1", 0),
        )
        self.assertEqual(self.session().received, [])

    def test_channel_renewed_after_wns_said_gone(self) -> None:
        """
        Once WNS says the channel is gone, the next session reads the new one.
        """
        from mdmd.notify import channels

        self.session()
        self.store.run(channels.mark_gone, DEVICE_ID, self.channel().uri, self.now)
        self.push.renew()
        self.session()
        channel = self.channel()
        self.assertEqual((channel.uri, channel.expired_at), ("https://db5p.notify.windows.com/w/?token=T2", None))

    def test_wns_push_answered_by_the_next_session(self) -> None:
        """
        A WNS job is answered by the first authenticated session that begins
        after it was submitted (not one while it is still queued), whatever
        its alert and session id.
        """
        self.session()
        (job,) = self.store.run(jobs.enqueue_wns, [(DEVICE_ID, self.channel().uri)], jobs.PushSettings(), self.now)
        self.session()
        self.assertEqual(self.store.read(jobs.list_pushes, DEVICE_ID)[0].state, jobs.QUEUED)
        self.store.run(jobs.record_submitted, job.ref, self.now, via="wns", message_ids=["M"], keys=[None])
        self.session()
        (info,) = self.store.read(jobs.list_pushes, DEVICE_ID)
        self.assertEqual((info.seq, info.state), (job.info.seq, jobs.ANSWERED))

    def test_without_wns(self) -> None:
        """
        Without WNS settings nothing about the channel is queued.
        """
        self.settings = SETTINGS
        self.assertEqual([c for c in self.session().received if "Push" in c.items[0].target.loc_uri], [])
