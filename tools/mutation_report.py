"""Print mutation scores per module, and every surviving mutant, from mutmut's results.

Run after `make mutate` (from the repository root). Reads `mutmut results --all true` and
groups the mutants by module: killed (a test failed, or the mutant timed out or crashed),
survived, and not yet run. The table it prints is the one docs/testing.md records.
"""

from __future__ import annotations

import collections
import subprocess
import sys
from pathlib import Path

KILLED = {"killed", "timeout", "segfault", "suspicious"}


def main() -> int:
    mutmut = Path(sys.executable).with_name("mutmut")
    listing = subprocess.run(
        [str(mutmut), "results", "--all", "true"], capture_output=True, text=True, check=False
    )
    counts: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    survivors: list[str] = []
    for line in listing.stdout.splitlines():
        name, _, status = line.strip().rpartition(": ")
        if not name:
            continue
        module = name.split(".x_")[0].split(".xǁ")[0]
        outcome = "killed" if status in KILLED else status
        counts[module][outcome] += 1
        if status == "survived":
            survivors.append(name)
    print("| module | mutants | killed | survived | not run | score |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for module, seen in sorted(counts.items()):
        total = sum(seen.values())
        run = seen["killed"] + seen["survived"]
        score = f"{100 * seen['killed'] / run:.1f}%" if run else "-"
        not_run = total - run
        killed, survived = seen["killed"], seen["survived"]
        print(f"| `{module}` | {total} | {killed} | {survived} | {not_run} | {score} |")
    if survivors:
        print("\nSurvivors (`mutmut show NAME` prints the change):")
        for name in survivors:
            print(f"- `{name}`")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
