"""Do two runs of the same recipe give the same model figures? For a change that should not
change results (a refactoring): run `recipes/every_stage.yaml` before and after it, then

    python benchmarks/compare_runs.py BEFORE_RUN AFTER_RUN

prints parameters, MACs, val macro F1 and accuracy per stage side by side and exits 1 when
any differs. Latency is not compared: timings differ between any two sittings.

Reproduces: no recorded figure; it checks that a change left a recipe's results as they
were.
Run time on the 2-core VM: not timed (it reads two finished runs).
Output: one line per stage with both runs' figures on stdout; exit status 1 when any
differs.
"""

from __future__ import annotations

import argparse
import sys

import compress

FIGURES = ("params", "macs", "macro_f1", "accuracy")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before")
    parser.add_argument("after")
    args = parser.parse_args()
    before, after = compress.read_run(args.before), compress.read_run(args.after)
    if not before or not after:
        print(f"error: no finished stages in {args.before if not before else args.after}",
              file=sys.stderr)
        return 2
    print(f"{'stage':<14}{'params':>11}{'MACs':>13}{'F1 before':>11}{'F1 after':>10}"
          f"{'acc before':>12}{'acc after':>11}  same")
    differ = len(before) != len(after)
    for old, new in zip(before, after):
        same = (old.name == new.name
                and all(getattr(old, key) == getattr(new, key) for key in FIGURES))
        differ |= not same
        f1 = [f"{r.macro_f1:.4f}" if r.macro_f1 is not None else "n/a" for r in (old, new)]
        acc = [f"{r.accuracy:.4f}" if r.accuracy is not None else "n/a" for r in (old, new)]
        print(f"{f'{old.index}:{old.name}':<14}{old.params:>11,}{old.macs:>13,}{f1[0]:>11}"
              f"{f1[1]:>10}{acc[0]:>12}{acc[1]:>11}  {'yes' if same else 'NO'}")
    print("identical" if not differ else "the runs differ")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
