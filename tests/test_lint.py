"""
The whole tree passes the lint rules of ruff.toml (unused imports, undefined names).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from twisted.trial.unittest import SkipTest, SynchronousTestCase

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


class LintTests(SynchronousTestCase):
    def test_ruff(self) -> None:
        """
        ruff finds nothing in mdmd/, tests/, bench/ and the plugin.
        """
        ruff = os.path.join(os.path.dirname(sys.executable), "ruff")
        if not os.path.exists(ruff):
            ruff = shutil.which("ruff") or ""
        if not ruff:
            raise SkipTest("ruff is not installed (it is in requirements-dev.lock)")
        result = subprocess.run(
            [ruff, "check", "--output-format", "concise", "mdmd", "tests", "bench", "twisted"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
