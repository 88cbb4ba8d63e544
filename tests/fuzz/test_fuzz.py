"""
Bounded fuzzing of every peer-facing surface (issue 12): the inputs that
once found a bug (C{tests/fuzz/corpus/}), then a fixed number of mutated
seeds, with a fixed random seed, so every run feeds the same inputs. A
surface fails its test if any input raises what it does not declare; the
input is saved and the failure says how to reproduce it. Long runs:
C{make fuzz} (C{tools/fuzz}).
"""

from __future__ import annotations

import os

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from tests.fuzz.engine import Report, corpus_dir, fuzz, read_inputs, seed_dir
from tests.fuzz.targets import NAMES, load

#: The bounded runs' random seed (MDMD_FUZZ_SEED tries another set of inputs).
SEED = int(os.environ.get("MDMD_FUZZ_SEED", "0"))


class BoundedFuzzTests(SynchronousTestCase):
    def run_target(self, name: str) -> Report:
        module = load(name)
        if module is None:
            raise SkipTest(f"{name}: no target yet")
        target = module.target()
        seeds = read_inputs(seed_dir(name))
        self.assertTrue(seeds, f"{name} has no seeds (tools/fuzz --write-seeds)")
        report = fuzz(
            target,
            seeds,
            inputs=target.bounded_inputs,
            seed=SEED,
            regressions=read_inputs(corpus_dir(name)),
        )
        if report.findings:
            self.fail("uncaught exceptions:\n" + report.summary())
        return report

    def test_names(self) -> None:
        """
        Every surface of the issue has a slot, the DM engine's included.
        """
        self.assertEqual(
            set(NAMES),
            {"soap", "pkcs10", "pkcs7", "xmldsig", "syncml_xml", "wbxml", "smpp_pdu",
             "smpp_session", "admin_api", "config", "dm_engine"},
        )

    def test_soap(self) -> None:
        """
        Discover, GetPolicies and RequestSecurityToken (Issue and Renew) through the endpoints' parsing.
        """
        self.run_target("soap")

    def test_pkcs10(self) -> None:
        """
        PKCS#10 requests: mutated DER is refused with InvalidRequest only.
        """
        self.run_target("pkcs10")

    def test_pkcs7(self) -> None:
        """
        PKCS#7 renewal requests: mutated DER is refused with InvalidRequest only.
        """
        self.run_target("pkcs7")

    def test_xmldsig(self) -> None:
        """
        Certificate-policy signed headers: refused with a SOAP fault only.
        """
        self.run_target("xmldsig")

    def test_syncml_xml(self) -> None:
        """
        SyncML XML: refused with SyncMLDecodeError only.
        """
        self.run_target("syncml_xml")

    def test_wbxml(self) -> None:
        """
        SyncML WBXML: refused with SyncMLDecodeError only.
        """
        self.run_target("wbxml")

    def test_smpp_pdu(self) -> None:
        """
        SMPP PDU streams and receipts: refused with PduError only.
        """
        self.run_target("smpp_pdu")

    def test_smpp_session(self) -> None:
        """
        A bound ESME session never raises, and ends only when the SMSC unbinds or breaks framing.
        """
        self.run_target("smpp_session")

    def test_admin_api(self) -> None:
        """
        Admin API requests: every refusal is a declared error, never a 500.
        """
        self.run_target("admin_api")

    def test_config(self) -> None:
        """
        Configuration files: refused with ConfigErrors only.
        """
        self.run_target("config")

    def test_dm_engine(self) -> None:
        """
        The DM session engine fed decoded messages (its target is another change's).
        """
        self.run_target("dm_engine")
