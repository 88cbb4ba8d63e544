"""
Long fuzzing runs: C{tools/fuzz} (C{make fuzz}), or C{python -m tests.fuzz}.

    tools/fuzz                                   every surface, 1,000,000 inputs each
    tools/fuzz --target smpp_pdu --seconds 600   one surface, for ten minutes
    tools/fuzz --replay pkcs10 FILE...           feed saved inputs again (a finding's reproduction)
    tools/fuzz --write-seeds                     make the seeds again with the emulators

Prints, per surface, the inputs tried, inputs per second and each distinct
uncaught exception kind with one example (saved under
C{tests/fuzz/corpus/NAME/}); exits 1 if there was any. Run one long run at a
time on a shared machine: each uses one core.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
import warnings
from collections.abc import Sequence

from tests.fuzz.engine import Report, corpus_dir, fuzz, kind_of, read_inputs, replay, seed_dir
from tests.fuzz.targets import NAMES, load


def _write_seeds(names: Sequence[str]) -> None:
    for name in names:
        module = load(name)
        if module is None:
            continue
        seeds: dict[str, bytes] = module.generate_seeds()
        directory = seed_dir(name)
        os.makedirs(directory, exist_ok=True)
        for old in os.listdir(directory):
            os.remove(os.path.join(directory, old))
        for seed_name, data in seeds.items():
            with open(os.path.join(directory, seed_name), "wb") as f:
                f.write(data)
        print(f"{name}: {len(seeds)} seeds in {os.path.relpath(directory)}")


def _replay(name: str, paths: Sequence[str]) -> int:
    module = load(name)
    if module is None:
        print(f"{name}: no target yet", file=sys.stderr)
        return 2
    target = module.target()
    failed = 0
    for path in paths:
        with open(path, "rb") as f:
            data = f.read()
        error = replay(target, data)
        if error is None:
            print(f"{path}: answered as declared")
        else:
            failed += 1
            print(f"{path}: UNCAUGHT {kind_of(error)}")
            traceback.print_exception(error)
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tools/fuzz", description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", action="append", choices=NAMES, help="a surface (default: all)")
    parser.add_argument("--inputs", type=int, help="inputs per surface (default 1000000)")
    parser.add_argument("--seconds", type=float, help="seconds per surface")
    parser.add_argument("--seed", type=int, default=1, help="the run's random seed (default 1)")
    parser.add_argument("--no-save", action="store_true", help="do not save findings")
    parser.add_argument("--replay", nargs="+", metavar=("NAME", "FILE"), help="feed saved inputs to NAME")
    parser.add_argument("--write-seeds", action="store_true", help="make the seeds with the emulators")
    options = parser.parse_args(argv)
    # cryptography warns about what it will refuse one day; mutated certificates say so constantly
    warnings.simplefilter("ignore")
    names = options.target or list(NAMES)
    if options.replay:
        if len(options.replay) < 2 or options.replay[0] not in NAMES:
            parser.error("--replay NAME FILE...")
        return _replay(options.replay[0], options.replay[1:])
    if options.write_seeds:
        _write_seeds(names)
        return 0
    inputs = options.inputs
    if inputs is None and options.seconds is None:
        inputs = 1_000_000
    reports: list[Report] = []
    for name in names:
        module = load(name)
        if module is None:
            print(f"{name}: no target yet (its slot in tests/fuzz/targets/__init__.py)", flush=True)
            continue
        target = module.target()
        report = fuzz(
            target,
            read_inputs(seed_dir(name)),
            inputs=inputs,
            seconds=options.seconds,
            seed=options.seed,
            save=not options.no_save,
            regressions=read_inputs(corpus_dir(name)),
            progress=lambda r: print(f"  {r.target}: {r.inputs} inputs, {r.rate:,.0f}/s", flush=True),
        )
        reports.append(report)
        print(report.summary(), flush=True)
    print()
    print(f"{'surface':<14} {'inputs':>10} {'inputs/s':>9} {'uncaught':>8}")
    for report in reports:
        print(f"{report.target:<14} {report.inputs:>10} {report.rate:>9,.0f} {len(report.findings):>8}")
    return 1 if any(r.findings for r in reports) else 0


if __name__ == "__main__":
    sys.exit(main())
