"""
Encode and decode throughput of the SyncML codecs, WBXML against XML, on the same messages.

Run from the repository root: .venv/bin/python bench/bench_syncml_codecs.py
Prints per-message medians (of interleaved timeit rounds) and WBXML/XML
ratios from this one run; below 1.00 means WBXML is faster. Not a test.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import timeit
from typing import Callable

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))

import lxml  # noqa: E402

from mdmd.syncml import wbxml, xml  # noqa: E402
from mdmd.syncml.model import SyncML  # noqa: E402
from mdmd.testing import syncml as samples  # noqa: E402


def medians(calls: list[Callable[[], object]], repeat: int) -> list[float]:
    """
    Median seconds per call of each of C{calls}, timed in turn in each of C{repeat} rounds.

    Interleaving keeps a change of machine load from favouring one codec.
    """
    timers = [timeit.Timer(call) for call in calls]
    numbers = [timer.autorange()[0] for timer in timers]
    rounds: list[list[float]] = [[] for _ in calls]
    for _ in range(repeat):
        for timer, number, times in zip(timers, numbers, rounds):
            times.append(timer.timeit(number) / number)
    return [statistics.median(times) for times in rounds]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--repeat", type=int, default=9, help="timed rounds per figure (default 9)")
    args = parser.parse_args()

    messages: dict[str, SyncML] = {
        "package 1 (Windows)": xml.decode(samples.WINDOWS_PACKAGE1),
        "server, 20 commands": samples.server_message(),
        "Results, 64 KiB": samples.large_results(total=64 * 1024, items=16),
    }
    print(f"Python {platform.python_version()}, lxml {lxml.__version__}, {platform.machine()}")
    print(f"medians of {args.repeat} interleaved timeit rounds; ratio = WBXML / XML")
    header = (
        f"{'message':22} {'bytes xml':>9} {'wbxml':>6}"
        f"  {'encode µs xml':>13} {'wbxml':>7} {'ratio':>5}"
        f"  {'decode µs xml':>13} {'wbxml':>7} {'ratio':>5}  {'enc+dec ratio':>13}"
    )
    print(header)
    print("-" * len(header))
    for name, msg in messages.items():
        as_xml, as_wbxml = xml.encode(msg), wbxml.encode(msg)
        assert xml.decode(as_xml) == msg and wbxml.decode(as_wbxml) == msg
        enc_x, enc_w, dec_x, dec_w = medians(
            [
                lambda: xml.encode(msg),
                lambda: wbxml.encode(msg),
                lambda: xml.decode(as_xml),
                lambda: wbxml.decode(as_wbxml),
            ],
            args.repeat,
        )
        print(
            f"{name:22} {len(as_xml):9} {len(as_wbxml):6}  {enc_x * 1e6:13.1f} {enc_w * 1e6:7.1f}"
            f" {enc_w / enc_x:5.2f}  {dec_x * 1e6:13.1f} {dec_w * 1e6:7.1f} {dec_w / dec_x:5.2f}"
            f"  {(enc_w + dec_w) / (enc_x + dec_x):13.2f}"
        )


if __name__ == "__main__":
    main()
