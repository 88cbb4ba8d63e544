"""
The fuzzing loop shared by the bounded runs of the test suite and the long
runs of C{tools/fuzz}.

A L{Target} names one peer-facing surface: its seeds (files under
C{tests/fuzz/seeds/NAME/}, made by the project's own emulators with
C{tools/fuzz --write-seeds}), how to mutate them, the function that feeds
one input to the surface as its endpoint does, and the exceptions the
surface declares for a peer's mistake (its answer path: a L{PeerError}
subclass, mostly). Anything else an input raises is I{uncaught}: it would be
a 500, an internal SOAP fault or a dropped SMPP link in the daemon.

Each input is one seed (or an input that found a new outcome earlier in the
run) changed by one to four mutations. There is no coverage
instrumentation; as a cheap stand-in, an input whose outcome (the declared
error's class and message, numbers and quoted values blanked) was not seen
before joins the pool that later inputs are mutated from, so a run goes
deeper past each check it learns to pass.

An uncaught exception is a finding: its kind is the exception's class and
the innermost frame of mdmd that raised it; the input is saved in the
corpus directory (C{tests/fuzz/corpus/NAME/}, where inputs that found a
bug stay, to be replayed by every run) and a one-line command reproduces it.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from random import Random

from tests.fuzz.mutate import Mutator, mutate

__all__ = [
    "HERE",
    "Finding",
    "Report",
    "Target",
    "corpus_dir",
    "fuzz",
    "kind_of",
    "read_inputs",
    "replay",
    "reproduce_command",
    "seed_dir",
]

HERE = os.path.dirname(os.path.abspath(__file__))
#: Inputs slower than this are reported (not failures: timing is the machine's).
SLOW_SECONDS = 0.5


@dataclass(frozen=True)
class Target:
    """
    One surface to fuzz.

    @ivar run: feeds one input to the surface as its endpoint does; returns
        normally or raises one of C{declared}. What it returns, if text,
        tells outcomes apart (see L{fuzz}).
    @ivar declared: the errors the surface answers a peer with.
    @ivar mutators: weighted mutators (see L{tests.fuzz.mutate}).
    @ivar bounded_inputs: inputs of the deterministic run in the test suite
        (chosen so that each target takes a few seconds).
    @ivar max_size: mutated inputs are cut to this size.
    """

    name: str
    run: Callable[[bytes], object]
    declared: tuple[type[BaseException], ...]
    mutators: Sequence[tuple[Mutator, int]]
    bounded_inputs: int = 2000
    max_size: int = 256 * 1024


@dataclass
class Finding:
    kind: str
    summary: str
    path: str | None
    example: bytes


@dataclass
class Report:
    target: str
    inputs: int = 0
    seconds: float = 0.0
    findings: dict[str, Finding] = field(default_factory=dict)
    slowest: float = 0.0
    slow_inputs: int = 0
    outcomes: int = 0

    @property
    def rate(self) -> float:
        return self.inputs / self.seconds if self.seconds else 0.0

    def summary(self) -> str:
        lines = [
            f"{self.target}: {self.inputs} inputs in {self.seconds:.1f} s ({self.rate:,.0f}/s), "
            f"{len(self.findings)} uncaught kinds, {self.outcomes} distinct outcomes, "
            f"slowest input {self.slowest * 1000:.0f} ms"
            + (f" ({self.slow_inputs} over {SLOW_SECONDS:g} s)" if self.slow_inputs else "")
        ]
        for finding in self.findings.values():
            lines.append(f"  UNCAUGHT {finding.kind}: {finding.summary}")
            if finding.path:
                lines.append(f"    reproduce: {reproduce_command(self.target, finding.path)}")
        return "\n".join(lines)


def seed_dir(name: str) -> str:
    return os.path.join(HERE, "seeds", name)


def corpus_dir(name: str) -> str:
    """
    Where inputs that found a bug in C{name} are kept (C{MDMD_FUZZ_CORPUS} overrides the root).
    """
    root = os.environ.get("MDMD_FUZZ_CORPUS") or os.path.join(HERE, "corpus")
    return os.path.join(root, name)


def read_inputs(directory: str) -> list[bytes]:
    """
    The files of C{directory}, in name order (none if it does not exist).
    """
    if not os.path.isdir(directory):
        return []
    found = []
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name)
        if os.path.isfile(path) and not name.startswith("."):
            with open(path, "rb") as f:
                found.append(f.read())
    return found


#: The repository: reproduction commands run from there.
ROOT = os.path.dirname(os.path.dirname(HERE))


def reproduce_command(target: str, path: str) -> str:
    relative = os.path.relpath(path, ROOT)
    return f"tools/fuzz --replay {target} {path if relative.startswith('..') else relative}"


def kind_of(error: BaseException) -> str:
    """
    The exception's class and the innermost frame of mdmd (or, failing that, any) where it was raised.
    """
    frames = traceback.extract_tb(error.__traceback__)
    ours = [f for f in frames if f"{os.sep}mdmd{os.sep}" in f.filename] or frames
    where = ""
    if ours:
        frame = ours[-1]
        filename = frame.filename
        marker = f"{os.sep}mdmd{os.sep}"
        if marker in filename:
            filename = "mdmd/" + filename.rsplit(marker, 1)[1]
        where = f" at {filename}:{frame.lineno} ({frame.name})"
    cls = type(error)
    return f"{cls.__module__}.{cls.__qualname__}{where}"


_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"|b'[^']*'")
_NUMBERS = re.compile(r"[0-9a-fA-F]*[0-9][0-9a-fA-F]*")


def _blank(text: str) -> str:
    return _NUMBERS.sub("#", _QUOTED.sub("'…'", text))[:80]


def _outcome(error: BaseException | None, result: object) -> str:
    """
    What an input led to, for telling new outcomes from seen ones: the
    declared error, or what the target returned if it is text (a surface
    that declares no error, such as the ESME session, describes its events).
    """
    if error is not None:
        return f"{type(error).__name__}: {_blank(str(error))}"
    return _blank(result) if isinstance(result, str) else "ok"


def _save(target: str, data: bytes) -> str | None:
    directory = corpus_dir(target)
    path = os.path.join(directory, "crash-" + hashlib.sha1(data).hexdigest()[:16])
    try:
        os.makedirs(directory, exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
    except OSError:
        return None
    return path


def replay(target: Target, data: bytes) -> BaseException | None:
    """
    Feed one input; the uncaught exception, or None if the surface answered it as declared.
    """
    try:
        target.run(data)
    except target.declared:
        return None
    except Exception as e:  # an uncaught kind: what we are looking for
        return e
    return None


def fuzz(
    target: Target,
    seeds: Sequence[bytes],
    *,
    inputs: int | None = None,
    seconds: float | None = None,
    seed: int = 0,
    save: bool = True,
    regressions: Sequence[bytes] = (),
    progress: Callable[[Report], None] | None = None,
) -> Report:
    """
    Feed C{regressions} as they are, then mutated seeds, until C{inputs}
    inputs or C{seconds} have gone (whichever is given; both: the first).
    Deterministic for a given C{seed} and count.
    """
    if not seeds:
        raise ValueError(f"{target.name}: no seeds (tools/fuzz --write-seeds makes them)")
    rng = Random(seed)
    report = Report(target.name)
    pool: list[bytes] = list(seeds)
    seen: set[str] = set()
    started = time.perf_counter()
    deadline = None if seconds is None else started + seconds
    next_progress = started + 10.0

    def feed(data: bytes) -> None:
        began = time.perf_counter()
        error: BaseException | None = None
        result: object = None
        uncaught = False
        try:
            result = target.run(data)
        except target.declared as e:
            error = e
        except Exception as e:
            error, uncaught = e, True
        spent = time.perf_counter() - began
        report.inputs += 1
        report.slowest = max(report.slowest, spent)
        if spent > SLOW_SECONDS:
            report.slow_inputs += 1
        if uncaught:
            assert error is not None
            kind = kind_of(error)
            if kind not in report.findings:
                summary = f"{type(error).__name__}: {str(error)[:200]}"
                report.findings[kind] = Finding(
                    kind, summary, _save(target.name, data) if save else None, data
                )
            return
        outcome = _outcome(error, result)
        if outcome not in seen:
            seen.add(outcome)
            if len(pool) < 512:
                pool.append(data)
            else:
                pool[rng.randrange(len(seeds), len(pool))] = data

    for data in regressions:
        feed(data)
    while True:
        if inputs is not None and report.inputs >= inputs:
            break
        now = time.perf_counter()
        if deadline is not None and now >= deadline:
            break
        if progress is not None and now >= next_progress:
            report.seconds = now - started
            progress(report)
            next_progress = now + 10.0
        data = rng.choice(pool)
        for _ in range(rng.choice((1, 1, 1, 2, 2, 3, 4))):
            data = mutate(data, rng, pool, target.mutators)
        feed(data[: target.max_size])
    report.seconds = time.perf_counter() - started
    report.outcomes = len(seen)
    return report
