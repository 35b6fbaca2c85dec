#!/usr/bin/env bash
# Run the test suite N times, each on a fresh clone of the committed HEAD, and say which runs failed and which
# tests failed in some runs but not in others (flaky). `make test-repeat N=10` calls this.
#
#   scripts/repeat_tests.sh N [pytest args...]     e.g. scripts/repeat_tests.sh 10
#                                                       scripts/repeat_tests.sh 3 tests/unit
#
# Each clone gets this project's .venv (a symlink: `make test` would re-run setup, since a fresh checkout's
# requirement files are newer than the setup stamp) and a `shared` link beside it, so `../shared/data` resolves
# as in the project; then it runs what `make test` runs, `python -m pytest`. Uncommitted changes are not
# tested. Prints one line per run, a summary, and a last JSON line. Exits 1 when any run failed.
set -euo pipefail

runs="${1:?usage: scripts/repeat_tests.sh N [pytest args...]}"
shift
[[ "$runs" =~ ^[1-9][0-9]*$ ]] || { echo "N must be a positive whole number, got '$runs'" >&2; exit 2; }
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="$root/.venv/bin/python"
[[ -x "$python" ]] || { echo "no $python: run 'make setup' first" >&2; exit 2; }
work="$(mktemp -d "${TMPDIR:-/tmp}/repeat-tests.XXXXXX")"
trap 'rm -rf "$work"' EXIT
commit="$(git -C "$root" rev-parse --short HEAD)"
echo "repeating the suite $runs times on fresh clones of $commit (${*:-all tests}); work folder $work"
[[ -z "$(git -C "$root" status --porcelain)" ]] || echo "note: uncommitted changes in $root are not part of the runs"

for ((i = 1; i <= runs; i++)); do
    clone="$work/run$i/repo"
    mkdir -p "$work/run$i"
    git clone -q --no-hardlinks "$root" "$clone"
    ln -s "$root/.venv" "$clone/.venv"
    [[ -e "$root/../shared" ]] && ln -s "$(cd "$root/../shared" && pwd -P)" "$work/run$i/shared"
    started=$(date +%s)
    set +e
    (cd "$clone" && "$python" -m pytest -q -p no:cacheprovider --junitxml="$work/run$i/junit.xml" "$@" \
        > "$work/run$i/output.txt" 2>&1)
    code=$?
    set -e
    echo "$code $(( $(date +%s) - started ))" > "$work/run$i/result"
    # one line: run, exit code, counts, seconds, failed tests
    "$python" - "$work/run$i" "$i" "$runs" <<'EOF'
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

folder, i, runs = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
code, seconds = (folder / "result").read_text().split()
failed, counts = [], {"passed": 0, "failed": 0, "errors": 0, "skipped": 0}
junit = folder / "junit.xml"
if junit.exists():
    for case in ET.parse(junit).iter("testcase"):
        name = f"{case.get('classname')}::{case.get('name')}"
        kinds = {child.tag for child in case}
        if "failure" in kinds or "error" in kinds:
            counts["failed" if "failure" in kinds else "errors"] += 1
            failed.append(name)
        elif "skipped" in kinds:
            counts["skipped"] += 1
        else:
            counts["passed"] += 1
(folder / "failed.txt").write_text("".join(f"{name}\n" for name in failed))
summary = ", ".join(f"{n} {k}" for k, n in counts.items())
print(f"run {i}/{runs}: {'ok' if code == '0' else 'FAILED (exit ' + code + ')'}, {summary}, {seconds} s"
      + (f"; failed: {' '.join(failed)}" if failed else ""), flush=True)
EOF
    # keep the output of a failed run, drop the clone
    [[ "$code" == 0 ]] || cp "$work/run$i/output.txt" "$root/.repeat-tests-run$i.txt"
    rm -rf "$clone"
done

"$python" - "$work" "$runs" <<'EOF'
import json
import sys
from collections import Counter
from pathlib import Path

work, runs = Path(sys.argv[1]), int(sys.argv[2])
codes, seconds, failures = [], [], Counter()
for i in range(1, runs + 1):
    code, secs = (work / f"run{i}" / "result").read_text().split()
    codes.append(int(code))
    seconds.append(int(secs))
    failures.update(set((work / f"run{i}" / "failed.txt").read_text().split()))
green = sum(code == 0 for code in codes)
longest_streak = streak = 0
for code in codes:
    streak = streak + 1 if code == 0 else 0
    longest_streak = max(longest_streak, streak)
print(f"summary: {green}/{runs} runs passed, longest streak {longest_streak}, "
      f"{min(seconds)}-{max(seconds)} s per run")
for name, n in failures.most_common():
    print(f"  failed in {n}/{runs} runs{' (flaky)' if n < runs else ''}: {name}")
if failures:
    print("  the output of each failed run is kept as .repeat-tests-run<N>.txt in the project folder")
print(json.dumps({"runs": runs, "passed": green, "longest_streak": longest_streak, "seconds": seconds,
                  "failed_tests": dict(failures)}))
sys.exit(0 if green == runs else 1)
EOF
