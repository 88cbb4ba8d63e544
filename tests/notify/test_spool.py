"""
Tests for L{mdmd.notify.spool}: the spool transport on its own (the notifier
with it is in L{tests.notify.test_notifier}).
"""

from __future__ import annotations

import json
import os

from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from mdmd.notify import jobs
from mdmd.notify.bootstrap import BootstrapPin
from mdmd.notify.jobs import PushSettings
from mdmd.notify.provisioning_doc import DMServer
from mdmd.notify.spool import SPOOL_FORMAT, SpoolTransport, spool_document, spool_name
from mdmd.notify.transport import IPushTransport, Refused, Sent
from mdmd.testing.store import memory_store_service

from .cp import MSISDN, add_classic_device
from .helpers import queued_job



class SpoolTransportTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.directory = os.path.abspath(self.mktemp())

    def test_provides_the_interface(self) -> None:
        """
        A spool transport is an IPushTransport with nothing to run, named "spool" in the jobs.
        """
        transport = SpoolTransport(self.directory)
        self.assertTrue(verifyObject(IPushTransport, transport))
        self.assertEqual((transport.via, transport.service), ("spool", None))

    def test_needs_a_directory(self) -> None:
        """
        A spool transport without a directory is refused.
        """
        with self.assertRaises(ValueError):
            SpoolTransport("")

    def test_send_writes_the_file_at_once(self) -> None:
        """
        Sending writes the job's document under its stable name (creating the
        directory) and has settled when send returns: sent, at that path.
        """
        job = queued_job()
        outcome = self.successResultOf(SpoolTransport(self.directory).send(job))
        path = os.path.join(self.directory, spool_name(job.ref))
        self.assertEqual(outcome, Sent(location=path, detail=f"written to {path}"))
        with open(path) as f:
            document = json.load(f)
        self.assertEqual(document, spool_document(job))
        self.assertEqual(document["format"], SPOOL_FORMAT)
        self.assertEqual(os.listdir(self.directory), [os.path.basename(path)])

    def test_unwritable_is_refused_for_now(self) -> None:
        """
        A spool that cannot be written refuses the job for now, saying why.
        """
        with open(self.directory, "w"):
            pass  # a file where the directory should be
        outcome = self.successResultOf(SpoolTransport(self.directory).send(queued_job()))
        assert isinstance(outcome, Refused)
        self.assertTrue(outcome.retry)
        self.assertTrue(outcome.error.startswith("cannot write to the spool: "), outcome.error)
        self.assertEqual(outcome.message_ids, ())

    def test_describe(self) -> None:
        """
        Status output says there is no SMSC and where pushes go.
        """
        self.assertEqual(
            SpoolTransport(self.directory).describe(),
            {"state": "not configured", "smsc": None, "spool_dir": self.directory},
        )

    def test_names_are_safe_and_distinct(self) -> None:
        """
        A file name keeps the device id's safe characters only, and a digest
        of it keeps ids that differ in unsafe characters apart.
        """
        first, second = spool_name(("a/b", 7)), spool_name(("a b", 7))
        self.assertTrue(first.startswith("push-a_b-") and first.endswith("-7.json"), first)
        self.assertNotEqual(first, second)
        self.assertNotIn("/", first)


class BootstrapSpoolTests(SynchronousTestCase):
    def test_bootstrap_document(self) -> None:
        """
        A bootstrap's spool document is a push's with a null session id; its
        segments are the job's.
        """
        service = memory_store_service()
        assert service.store is not None
        service.store.run(add_classic_device, "C1")
        server = DMServer("mdmd", "mdmd", "https://h/ManagementServer/MDM.svc")
        job = service.store.run(jobs.enqueue_bootstrap, "C1", BootstrapPin.network(), server, PushSettings(), 1.0)
        service.stopService()
        document = spool_document(job)
        self.assertEqual((document["device_id"], document["session_id"], document["msisdn"]), ("C1", None, MSISDN))
        self.assertEqual([bytes.fromhex(s["short_message"]) for s in document["segments"]], [s.short_message for s in job.segments])
