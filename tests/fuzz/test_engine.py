"""
Tests for L{tests.fuzz.engine}: findings, their reproduction, determinism.
"""

from __future__ import annotations

import os
import shutil
import tempfile

from twisted.trial.unittest import SynchronousTestCase

from mdmd.errors import PeerError
from tests.fuzz import mutate
from tests.fuzz.engine import Target, fuzz, kind_of, replay


class _Refused(PeerError):
    pass


def _surface(data: bytes) -> None:
    """
    Refuses what does not start with "ok", and breaks on a NUL (the bug to find).
    """
    if b"\0" in data:
        raise KeyError("a NUL")
    if not data.startswith(b"ok"):
        raise _Refused("not ok")


TARGET = Target("example", _surface, (_Refused,), mutate.BYTES, bounded_inputs=500)


class EngineTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.corpus = tempfile.mkdtemp(prefix="mdmd-fuzz-test-")
        self.addCleanup(shutil.rmtree, self.corpus, True)
        self.patch(os, "environ", dict(os.environ, MDMD_FUZZ_CORPUS=self.corpus))

    def test_finding_saved_with_reproduction(self) -> None:
        """
        An undeclared exception is one finding per kind, its input saved and a command to replay it.
        """
        report = fuzz(TARGET, [b"ok fine", b"ok"], inputs=2000, seed=3)
        self.assertEqual(report.inputs, 2000)
        (finding,) = report.findings.values()
        self.assertTrue(finding.kind.startswith("builtins.KeyError at "), finding.kind)
        assert finding.path is not None
        with open(finding.path, "rb") as f:
            self.assertIn(b"\0", f.read())
        self.assertIn(f"tools/fuzz --replay example {finding.path}", report.summary())
        self.assertIsInstance(replay(TARGET, finding.example), KeyError)
        self.assertIsNone(replay(TARGET, b"nope"))

    def test_deterministic(self) -> None:
        """
        The same seed feeds the same inputs: two runs find the same example.
        """
        first = fuzz(TARGET, [b"ok fine"], inputs=1000, seed=5, save=False)
        second = fuzz(TARGET, [b"ok fine"], inputs=1000, seed=5, save=False)
        self.assertEqual(
            [f.example for f in first.findings.values()], [f.example for f in second.findings.values()]
        )
        self.assertEqual(first.outcomes, second.outcomes)

    def test_regressions_first(self) -> None:
        """
        Kept inputs are fed as they are, before any mutation.
        """
        report = fuzz(TARGET, [b"ok"], inputs=1, seed=0, save=False, regressions=[b"\0"])
        self.assertEqual(report.inputs, 1)
        self.assertEqual([f.example for f in report.findings.values()], [b"\0"])

    def test_kind_names_the_frame(self) -> None:
        """
        A kind is the exception's class and where it was raised.
        """
        try:
            _surface(b"\0")
        except KeyError as e:
            kind = kind_of(e)
        self.assertIn("KeyError", kind)
        self.assertIn("(_surface)", kind)
