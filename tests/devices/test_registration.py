"""
Tests for L{mdmd.devices.registration}: registering classic devices, importing
fleets all or nothing, and editing accounts, as units of work on a real store
in memory.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from mdmd.devices import lifecycle, records, registration
from mdmd.devices.accounts import InvalidAccount
from mdmd.devices.registration import (
    AccountNotEditable,
    DeviceExists,
    ImportConflict,
    ImportRefused,
    InvalidRegistration,
    RegistrationSettings,
)
from mdmd.dm import queue as dm_queue
from mdmd.errors import Conflict, PeerError
from mdmd.testing.randomness import fixed_random
from mdmd.testing.store import memory_store_service

from .helpers import issued

SETTINGS = RegistrationSettings(server_id="mdmd", inventory=("./DevInfo/Man", "./DevDetail/FwV"))


class RegisterTests(SynchronousTestCase):
    def setUp(self) -> None:
        service = memory_store_service()
        self.addCleanup(service.stopService)
        assert service.store is not None
        self.store = service.store

    def register(self, **raw: object) -> registration.Registered:
        result: registration.Registered = self.store.run(registration.register, raw, SETTINGS, 100.0, fixed_random(1, 2, 3, 4))
        return result

    def test_register(self) -> None:
        """
        One transaction makes an enrolled classic device with its account,
        generates the secrets not given (returned once, the record copy
        shows none) and queues the inventory Gets.
        """
        registered = self.register(device_id="IMEI:490154203237518", msisdn="+491701234567", server_secret="ours")
        device = registered.device
        self.assertEqual((device.device_id, device.kind, device.status, device.enrolled_at), ("IMEI:490154203237518", "omadm", "enrolled", 100.0))
        self.assertEqual(list(registered.secrets), ["client_secret"])
        self.assertEqual(registered.row["client_secret"], registered.secrets["client_secret"])
        self.assertEqual((registered.row["server_secret"], registered.row["kind"]), ("ours", "omadm"))
        self.assertEqual((device.account["client_secret"], device.account["client_name"], device.account["server_name"]),
                         ("set", "IMEI:490154203237518", "mdmd"))
        self.assertNotIn(registered.secrets["client_secret"], repr(device))
        stored = self.store.read(lambda root: root["devices"]["IMEI:490154203237518"].dm_client_secret)
        self.assertEqual(stored, registered.secrets["client_secret"])
        queued = self.store.read(dm_queue.list_commands, "IMEI:490154203237518")
        self.assertEqual([(c.spec["verb"], c.spec["items"][0]["target"], c.state) for c in queued],
                         [("Get", "./DevInfo/Man", "queued"), ("Get", "./DevDetail/FwV", "queued")])
        self.assertEqual(registered.inventory, 2)

    def test_invalid(self) -> None:
        """
        A bad device id, a Windows kind and bad fields are all named in one
        400 error, and nothing is written.
        """
        with self.assertRaises(InvalidRegistration) as caught:
            self.register(device_id="no spaces", kind="windows", imsi="x", client_auth="md5")
        self.assertIsInstance(caught.exception, PeerError)
        self.assertEqual(
            [p.split(":")[0] for p in caught.exception.problems], ["device_id", "kind", "client_auth", "imsi"]
        )
        self.assertIn("made by their MS-MDE2 enrollment", str(caught.exception))
        with self.assertRaises(InvalidRegistration) as caught:
            self.register(kind="pager")
        self.assertEqual(caught.exception.problems, ("device_id: missing", "kind: expected omadm, got 'pager'"))
        self.assertEqual(self.store.read(records.list_devices), [])

    def test_existing_devices(self) -> None:
        """
        Registering an enrolled, registered or unenrolled device is a conflict
        (409) saying what it is; a removed one may be registered again, in
        place, with its queue attached.
        """

        def windows(root: Any) -> None:
            lifecycle.enroll(root, "WIN", issued(root, "WIN"), 10.0)
            lifecycle.unenroll(root, lifecycle.enroll(root, "LEFT", issued(root, "LEFT"), 10.0), 20.0)

        self.store.run(windows)
        self.register(device_id="OMA")
        for device_id, reason in (
            ("WIN", "device WIN is an enrolled Windows device"),
            ("OMA", "device OMA is registered already"),
            ("LEFT", "device LEFT is unenrolled; remove it first (mdmctl device remove LEFT) to register it"),
        ):
            with self.assertRaises(DeviceExists) as caught:
                self.register(device_id=device_id)
            self.assertIsInstance(caught.exception, Conflict)
            self.assertEqual(str(caught.exception), reason)
        self.store.run(records.remove, "OMA", 50.0)
        again = self.register(device_id="OMA", client_name="renamed")
        self.assertEqual((again.device.status, again.device.removed_at, again.device.account["client_name"]),
                         ("enrolled", None, "renamed"))
        self.assertEqual(len(self.store.read(dm_queue.list_commands, "OMA")), 4)


class ImportTests(SynchronousTestCase):
    def setUp(self) -> None:
        service = memory_store_service()
        self.addCleanup(service.stopService)
        assert service.store is not None
        self.store = service.store

    def run_import(self, rows: Sequence[Mapping[str, object]], dry_run: bool = False) -> registration.Imported:
        result: registration.Imported = self.store.run(
            registration.import_devices, rows, SETTINGS, 100.0, fixed_random(), dry_run
        )
        return result

    def test_all_or_nothing(self) -> None:
        """
        Every bad row is reported with its index (invalid, duplicate, known
        device) and nothing is imported, not even the good rows.
        """
        self.store.run(registration.register, {"device_id": "KNOWN"}, SETTINGS, 1.0, fixed_random())
        rows: list[dict[str, object]] = [
            {"device_id": "GOOD-1"},
            {"device_id": "BAD", "imsi": "1"},
            {"device_id": "GOOD-1"},
            {"device_id": "KNOWN", "msisdn": "+491701234567"},
            {"device_id": "GOOD-2"},
        ]
        with self.assertRaises(ImportRefused) as caught:
            self.run_import(rows)
        problems = caught.exception.problems
        self.assertNotIsInstance(caught.exception, Conflict)
        self.assertEqual([(p.row, p.device_id, p.conflict) for p in problems],
                         [(1, "BAD", False), (2, "GOOD-1", False), (3, "KNOWN", True)])
        self.assertEqual(problems[1].error, "device GOOD-1 is also in row 0")
        self.assertEqual(problems[2].error, "device KNOWN is registered already with other values (msisdn)")
        self.assertEqual(str(caught.exception), "3 bad rows; nothing was imported")
        self.assertEqual(caught.exception.details["rows"][0]["error"], "imsi: expected 6 to 15 digits, got '1'")
        self.assertEqual([d.device_id for d in self.store.read(records.list_devices)], ["KNOWN"])

    def test_only_conflicts(self) -> None:
        """
        When every bad row contradicts a device we have, the import is a conflict (409).
        """
        self.store.run(registration.register, {"device_id": "KNOWN"}, SETTINGS, 1.0, fixed_random())
        with self.assertRaises(ImportConflict) as caught:
            self.run_import([{"device_id": "NEW"}, {"device_id": "KNOWN", "client_name": "other"}])
        self.assertEqual(caught.exception.http_status, 409)

    def test_dry_run_then_idempotent_import(self) -> None:
        """
        A dry run writes nothing and answers the completed rows (generated
        secrets included); importing those registers every device; importing
        them again changes nothing (nonces aside, which sessions rotate).
        """
        checked = self.run_import([{"device_id": "A"}, {"device_id": "B", "msisdn": "+491701234567"}], dry_run=True)
        self.assertEqual(self.store.read(records.list_devices), [])
        self.assertEqual([(r.device_id, r.action) for r in checked.rows], [("A", "register"), ("B", "register")])
        complete: list[dict[str, str]] = []
        for r in checked.rows:
            assert r.row is not None
            complete.append(r.row)
        self.assertEqual(len(complete[0]["client_secret"]), 32)
        imported = self.run_import(list(complete))
        self.assertEqual(imported.as_json()["registered"], ["A", "B"])
        stored = self.store.read(lambda root: root["devices"]["A"].dm_server_secret)
        self.assertEqual(stored, complete[0]["server_secret"])
        self.store.run(lambda root: setattr(root["devices"]["A"], "dm_client_nonce", b"rotated"))
        again = self.run_import(list(complete))
        self.assertEqual((again.as_json()["registered"], again.as_json()["unchanged"]), ([], ["A", "B"]))
        self.assertEqual([r.row for r in again.rows], [None, None])
        self.assertEqual(len(self.store.read(dm_queue.list_commands, "A")), 2)

    def test_limits(self) -> None:
        """
        An empty import and one above MAX_IMPORT rows are refused as a whole.
        """
        with self.assertRaises(ImportRefused) as caught:
            self.run_import([])
        self.assertEqual(caught.exception.problems[0].error, "the import holds no devices")
        rows: list[dict[str, object]] = [{"device_id": f"D{i}"} for i in range(registration.MAX_IMPORT + 1)]
        with self.assertRaises(ImportRefused) as caught:
            self.run_import(rows)
        self.assertIn(f"at most {registration.MAX_IMPORT} devices", caught.exception.problems[0].error)


class EditTests(SynchronousTestCase):
    def setUp(self) -> None:
        service = memory_store_service()
        self.addCleanup(service.stopService)
        assert service.store is not None
        self.store = service.store
        self.store.run(registration.register, {"device_id": "OMA"}, SETTINGS, 1.0, fixed_random())
        self.store.run(lambda root: lifecycle.enroll(root, "WIN", issued(root, "WIN"), 10.0).device_id)

    def edit(self, device_id: str, generate: tuple[str, ...] = (), **raw: object) -> registration.Edited:
        result: registration.Edited = self.store.run(
            registration.edit_account, device_id, raw, list(generate), fixed_random(9)
        )
        return result

    def stored(self, device_id: str, *names: str) -> tuple[Any, ...]:
        return self.store.read(lambda root: tuple(getattr(root["devices"][device_id], n) for n in names))

    def test_edit_classic(self) -> None:
        """
        Any field of a classic device's account may change; a generated secret
        is returned once; cleared fields go back to their defaults.
        """
        edited = self.edit("OMA", generate=("server_secret",), client_auth="basic", msisdn="+491701234567",
                           client_certificate="required", client_secret="given")
        self.assertEqual(list(edited.secrets), ["server_secret"])
        self.assertEqual(self.stored("OMA", "dm_client_auth_type", "msisdn", "client_certificate", "dm_client_secret", "dm_server_secret"),
                         ("BASIC", "+491701234567", "required", "given", edited.secrets["server_secret"]))
        self.edit("OMA", msisdn="", client_certificate="")
        self.assertEqual(self.stored("OMA", "msisdn", "client_certificate"), ("", ""))

    def test_edit_windows(self) -> None:
        """
        A Windows device's operator settings may change; what its enrollment
        handed out may not (409 naming them).
        """
        self.edit("WIN", msisdn="+491701234567", client_certificate="optional", imsi="262011234567890")
        self.assertEqual(self.stored("WIN", "msisdn", "client_certificate", "imsi"), ("+491701234567", "optional", "262011234567890"))
        with self.assertRaises(AccountNotEditable) as caught:
            self.edit("WIN", generate=("client_secret",), server_id="x")
        self.assertEqual(
            str(caught.exception),
            "device WIN is a Windows device: its client_secret, server_id come from its enrollment "
            "(settable: msisdn, imsi, client_certificate)",
        )

    def test_edit_refusals(self) -> None:
        """
        An unknown device is a 404; an unknown secret to generate, or one both
        given and generated, is a 400.
        """
        with self.assertRaises(records.UnknownDevice):
            self.edit("NOPE", msisdn="+491701234567")
        with self.assertRaises(InvalidAccount) as caught:
            self.edit("OMA", generate=("client_nonce",))
        self.assertIn("cannot generate client_nonce", str(caught.exception))
        with self.assertRaises(InvalidAccount) as caught:
            self.edit("OMA", generate=("client_secret",), client_secret="x")
        self.assertEqual(str(caught.exception), "client_secret: given and to be generated")
