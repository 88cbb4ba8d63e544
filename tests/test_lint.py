"""
The whole tree passes the lint rules of ruff.toml (unused imports, undefined
names) and the type checks of setup.cfg's [mypy] section, as `make lint` runs them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from twisted.trial.unittest import SkipTest, SynchronousTestCase

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def _tool(name: str) -> str:
    """
    The dev tool C{name} of this venv (or from PATH); skip when it is not installed.
    """
    path = os.path.join(os.path.dirname(sys.executable), name)
    if not os.path.exists(path):
        path = shutil.which(name) or ""
    if not path:
        raise SkipTest(f"{name} is not installed (it is in requirements-dev.lock)")
    return path


class LintTests(SynchronousTestCase):
    def test_ruff(self) -> None:
        """
        ruff finds nothing in mdmd/, tests/, bench/ and the plugin.
        """
        result = subprocess.run(
            [_tool("ruff"), "check", "--output-format", "concise", "mdmd", "tests", "bench", "twisted"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)

    def test_mypy(self) -> None:
        """
        mypy finds nothing in what setup.cfg's [mypy] C{files} names. Its
        incremental cache (.mypy_cache, shared with `make lint`) keeps a run
        with few changed files to a second or so.
        """
        result = subprocess.run(
            [_tool("mypy"), "--no-error-summary", "--hide-error-context"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
