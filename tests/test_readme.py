"""Every command in the README works as typed on a fresh clone: the README's bash blocks are run in
a throwaway clone of this repository, on this CPU, with a scratch HOME (asv's machine file).

What is not run as typed, and why (a README block the rules below do not cover fails the test):
- blocks marked ``<!-- gpu-box -->``: they need a GPU box (or take a GPU's memory and hours);
- blocks marked ``<!-- long -->``: half an hour or more of measuring (the gate demonstrations);
- ``<!-- test-command -->``: it is what runs this test (CI runs it as typed);
- ``<!-- main-command -->``: its install steps are not repeated (this test runs in an installed
  environment) and its ``perfmodel track`` (3 commits, the whole CPU tier: minutes) is checked
  with ``--dry-run``; the README's ``perfmodel track --commits 2`` below runs for real;
- ``asv run`` / ``asv continuous`` get ``--quick --bench=<one cheap benchmark>`` added, and
  ``perfmodel track`` and ``perfmodel gate`` the same selection: the full CPU tier takes
  minutes a commit;
- ``asv preview`` serves until stopped: it is started, its page fetched, and stopped.
After all of it, ``git status`` in the clone may show only the new results of this machine.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHEAP = "bench_model.Warmup.track_status"   # deterministic values (1 = OK), a few nano cells
BLOCK = re.compile(r"(?:<!--\s*([\w-]+)[^>]*-->\s*\n)?```bash\n(.*?)```", re.S)

PRELUDE = f"""
set -euo pipefail
asv_preview_check() {{  # asv preview as typed, in the background; its page fetched, then stopped
    asv preview > .asv/preview.log 2>&1 &
    local pid=$! url=""
    for _ in $(seq 100); do
        url=$(grep -o 'http://[^ ]*' .asv/preview.log | head -1 || true)
        [ -n "$url" ] && break
        sleep 0.2
    done
    [ -n "$url" ] || {{ kill $pid; cat .asv/preview.log; echo "asv preview printed no address"; return 1; }}
    {sys.executable} -c "import sys, urllib.request; page = urllib.request.urlopen(sys.argv[1], \
timeout=30).read().decode(); assert 'Summary tables' in page, page[:500]; print('preview ok')" "$url"
    kill $pid
}}
"""


def blocks(text: str) -> list[tuple[str | None, str]]:
    return [(m.group(1), m.group(2)) for m in BLOCK.finditer(text)]


def as_run_here(line: str) -> str:
    """One README line as this test runs it (see the module doc)."""
    cmd = line.split("  #", 1)[0].rstrip()
    if cmd.startswith(". .venv/bin/activate"):
        return "true  # the test's PATH has the environment's asv and perfmodel"
    if re.match(r"asv (run|continuous)\b", cmd):
        return f"{cmd} --quick --bench={CHEAP}"
    if cmd.startswith("perfmodel gate"):
        return f"{cmd} --bench={CHEAP}"
    if cmd.startswith("perfmodel track") and "--print-machine" not in cmd:
        return f"{cmd} --bench={CHEAP} | tee .asv/track.out"
    if cmd == "asv publish && asv preview":
        return "asv publish && asv_preview_check"
    return cmd


def _bin(tmp: Path) -> Path:
    """``asv`` and ``perfmodel`` commands of the Python running the tests."""
    bin_dir = tmp / "bin"
    bin_dir.mkdir()
    for name, module in (("asv", "asv"), ("perfmodel", "perfmodel")):
        path = bin_dir / name
        path.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m {module} "$@"\n')
        path.chmod(0o755)
    return bin_dir


def _shell(script: str, clone: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", PRELUDE + script], cwd=clone, env=env, text=True,
                          capture_output=True, timeout=600)


def test_readme_commands_work_on_a_fresh_clone(tmp_path):
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    readme = (ROOT / "README.md").read_text()
    found = blocks(readme)
    kinds = [k for k, _ in found]
    assert kinds.count("main-command") == 1 and kinds.count("test-command") == 1
    assert "gpu-box" in kinds

    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True, timeout=120)
    # the clone's checked-out commit plays main, the branch asv.conf.json tracks
    subprocess.run(["git", "checkout", "-q", "-B", "main"], cwd=clone, check=True, timeout=60)
    (tmp_path / "home").mkdir()
    env = dict(os.environ, HOME=str(tmp_path / "home"),
               PATH=f"{_bin(tmp_path)}{os.pathsep}{os.environ['PATH']}",
               PYTHONPATH=str(clone))   # the clone's perfmodel, as an editable install gives
    (clone / ".asv").mkdir()

    main_cmd = next(body for kind, body in found if kind == "main-command").strip()
    assert main_cmd.endswith(".venv/bin/perfmodel track"), main_cmd
    dry = _shell("perfmodel track --dry-run", clone, env)  # what the main command would run
    assert dry.returncode == 0 and "3 commit(s) of main" in dry.stdout, dry.stdout + dry.stderr
    assert "$ asv run HASHFILE:" in dry.stdout and "$ asv publish" in dry.stdout

    ran = 0
    for kind, body in found:
        if kind in ("gpu-box", "test-command", "main-command", "long"):
            continue
        script = "\n".join(as_run_here(line) for line in body.splitlines()
                           if line.strip() and not line.lstrip().startswith("#"))
        proc = _shell(script, clone, env)
        assert proc.returncode == 0, (f"README block failed:\n{body}\n--- stdout:\n"
                                      f"{proc.stdout[-3000:]}\n--- stderr:\n{proc.stderr[-3000:]}")
        ran += script.count("\n") + 1
    assert ran >= 10

    # perfmodel track's own output: a line per commit and a summary, the cells in the log only
    lines = (clone / ".asv" / "track.out").read_text().splitlines()
    per_commit = [line for line in lines if re.match(r"\s+\[\d/2\] [0-9a-f]{8} ", line)]
    assert len(per_commit) == 2 and all("cells measured" in line for line in per_commit), lines
    assert len(lines) < 30 and not any(line.strip().endswith("n/a") for line in lines), lines
    log = clone / ".asv" / "track.log"
    assert log.is_file() and "n/a" in log.read_text() and any(str(log) in s for s in lines)

    machine = _shell("perfmodel track --print-machine", clone, env).stdout.strip()
    status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=clone,
                            capture_output=True, text=True, check=True).stdout.splitlines()
    others = [s for s in status if not s.startswith(f"?? results/{machine}/")]
    assert status and not others, f"git status after the README's commands: {others}"


def test_one_spelling_of_the_interpreter():
    """python3 makes the venv (and is the GPU box's Python); inside the venv it is
    .venv/bin/python: never a bare ``python``, which may be another Python or none."""
    text = "\n".join(body for _, body in blocks((ROOT / "README.md").read_text()))
    bare = [line for line in text.splitlines() if re.search(r"(?<![/\w.-])python(?![\w.-])", line)]
    assert not bare, bare
