"""File results measured before the suite stated its protocol under the protocol that took them.

    python3 -m tools.label_protocols RESULTS_DIR/MACHINE

Until protocol 2, asv's benchmark version was a hash of each benchmark's source, which did not
change when perfmodel/measure.py changed how a step is timed: the shipped H100 history has
single-step times (protocol 0, before e21bc53) and burst times (protocol 1, from e21bc53) on one
graph line, and the published regressions read that change of method as a change of speed.
This labels each result with what took it: time_ results with ``perfmodel-protocol-<N>`` by
whether the commit has e21bc53, status and memory figures with the facts version they share
with today's suite (a cell's classification and its allocator peak over one step after warm-up,
unchanged since). Run once per machine directory; it rewrites the files in place.
"""
import json
import subprocess
import sys
from pathlib import Path

BURSTS = "e21bc53"  # measure: time sub-millisecond GPU steps in bursts


def protocol_of(commit: str) -> int:
    has = subprocess.run(["git", "merge-base", "--is-ancestor", BURSTS, commit, "--"],
                         capture_output=True).returncode == 0
    return 1 if has else 0


def main(machine_dir: str) -> int:
    from benchmarks.common import FACTS_VERSION  # noqa: PLC0415

    for path in sorted(Path(machine_dir).glob("*.json")):
        if path.name == "machine.json":
            continue
        data = json.loads(path.read_text())
        column = data["result_columns"].index("version")
        commit = data["commit_hash"]
        if not all(c in "0123456789abcdef" for c in commit):
            raise SystemExit(f"{path}: commit_hash is not a hash")
        n = protocol_of(commit)
        for name, row in data["results"].items():
            method = name.rsplit(".", 1)[-1]
            row[column] = f"perfmodel-protocol-{n}" if method.startswith("time_") else FACTS_VERSION
        # asv writes NaN bare; json keeps it that way
        path.write_text(json.dumps(data, indent=None, sort_keys=True))
        print(f"{path.name}: commit {commit[:8]}: time_ results under protocol {n}")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
