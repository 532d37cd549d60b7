"""Where the test suite spends its time: the seconds of a pytest junit XML summed by test
folder (tests/<folder>, or tests (top) for files directly in tests/), largest first.

    PYTEST_ADDOPTS="--junitxml=suite.xml" python -m pytest -q
    python benchmarks/suite_times.py suite.xml [--files N]

Under pytest-xdist each test is timed while the other workers run, so the sum is about
the workers' count times the wall time; compare sums of runs made the same way.

Reproduces: the suite's time split by test folder (benchmarks/RESULTS.md, "The test suite's
time").
Run time: not timed (it reads one XML file).
Output: seconds and test counts per folder on stdout, largest first (--files N: also the N
slowest files).
"""

from __future__ import annotations

import argparse
import collections
import sys
import xml.etree.ElementTree as ET
from pathlib import Path


def folder_and_file(classname: str) -> tuple[str, str]:
    """`tests.stages.test_plan` -> ('tests/stages', 'tests/stages/test_plan.py')."""
    parts = classname.split(".")
    if len(parts) > 2:
        return "tests/" + parts[1], "/".join(parts[:3]) + ".py"
    return "tests (top)", "/".join(parts[:2]) + ".py"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("junit", type=Path)
    parser.add_argument("--files", type=int, default=0, help="also the N slowest files")
    args = parser.parse_args(argv)
    try:
        root = ET.parse(args.junit).getroot()
    except (OSError, ET.ParseError) as exc:
        print(f"error: {args.junit}: not a readable junit XML ({exc})", file=sys.stderr)
        return 2
    seconds, counts, files = collections.Counter(), collections.Counter(), collections.Counter()
    for case in root.iter("testcase"):
        folder, file = folder_and_file(case.get("classname", ""))
        seconds[folder] += float(case.get("time", 0))
        counts[folder] += 1
        files[file] += float(case.get("time", 0))
    if not counts:
        print(f"error: {args.junit}: no test cases in it", file=sys.stderr)
        return 2
    total = sum(seconds.values())
    print(f"{'folder':24} {'tests':>5} {'seconds':>8} {'share':>6}")
    for folder, value in seconds.most_common():
        print(f"{folder:24} {counts[folder]:5d} {value:8.1f} {100 * value / total:5.1f}%")
    print(f"{'total':24} {sum(counts.values()):5d} {total:8.1f}")
    for file, value in files.most_common(args.files):
        print(f"{file:50} {value:8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
