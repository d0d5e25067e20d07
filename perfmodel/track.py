"""``perfmodel track``: the tracker end to end with asv (the README's main job).

Names this machine after its stack (GPU or CPU, driver, CUDA, torch, triton, TF32), registers it
with ``asv machine`` (no terminal needed), runs the asv suite in benchmarks/ over the last few
commits of the branch (commits this machine already measured are skipped), publishes the
history into html/ and prints where to look. Everything is plain asv underneath: the same
results are produced by ``asv run`` / ``asv continuous`` / ``asv publish`` by hand.
"""
from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
import sysconfig
import time

from .errors import UserError


def add_parser(sub) -> None:
    p = sub.add_parser("track", help="run the asv tracker over the last commits and publish html/")
    p.add_argument("--commits", type=int, default=3,
                   help="how many commits of the branch, newest first (default 3)")
    p.add_argument("--branch", default=None, help="default: the first branch in asv.conf.json")
    p.add_argument("--bench", "-b", action="append", default=None,
                   help="asv -b regex (repeatable): only these benchmarks")
    p.add_argument("--machine", default=None, help="asv machine name (default: from the stack)")
    p.add_argument("--rerun", action="store_true",
                   help="measure commits again even if this machine has results for them")
    p.add_argument("--no-publish", action="store_true", help="skip asv publish")
    p.add_argument("--dry-run", action="store_true", help="print the asv commands only")
    p.add_argument("--show-stderr", action="store_true",
                   help="asv --show-stderr: each cell's output, n/a reasons included (long)")
    p.set_defaults(func=main)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9.]+", "-", str(text).lower()).strip("-")


def stack() -> dict:
    """What results depend on besides the code (perfmodel.measure.environment)."""
    from .measure import environment, resolve_device  # noqa: PLC0415

    return environment(resolve_device("auto"))


def machine_name(env: dict) -> str:
    """e.g. ``nvidia-h100-80gb-hbm3-drv570.86-cu13.0-torch2.11.0-triton3.5.0-tf32off`` or
    ``cpu-intel-xeon-x2-torch2.13.0-triton3.5.0``: one graph line per device and stack."""
    parts = []
    if env.get("device") == "cuda":
        parts += [_slug(env.get("name")), f"drv{env.get('driver') or 'na'}",
                  f"cu{env.get('cuda') or 'na'}"]
    else:
        name = re.sub(r"\(r\)|\(tm\)|cpu|@.*?(?= x\d+$)|processor", " ", str(env.get("name")),
                      flags=re.I)
        parts += ["cpu", _slug(name)]
    parts += [f"torch{_slug(env.get('torch')).replace('-', '')}",
              f"triton{env.get('triton') or 'na'}"]
    if env.get("device") == "cuda":
        parts.append("tf32on" if env.get("tf32") else "tf32off")
    return "-".join(p for p in parts if p)[:120]


def _repo_root() -> str:
    try:
        root = subprocess.check_output(["git", "rev-parse", "--show-toplevel"], text=True,
                                       stderr=subprocess.DEVNULL).strip()
    except (OSError, subprocess.CalledProcessError):
        raise UserError("perfmodel track runs inside a git clone of the project "
                        "(no git repository here)") from None
    if not os.path.exists(os.path.join(root, "asv.conf.json")):
        raise UserError(f"no asv.conf.json in {root}: run perfmodel track in the project's clone")
    return root


def _asv(*args) -> list[str]:
    return [sys.executable, "-m", "asv", *args]


def machine_args(name: str, env: dict) -> list[str]:
    from .measure import cpu_model  # noqa: PLC0415

    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    cpu = cpu_model()
    os_name = f"{platform.system()} {platform.release()}"
    if env.get("device") == "cuda":  # the GPU stack travels with every result (machine params)
        os_name += (f" | {env.get('name')} driver {env.get('driver')} CUDA {env.get('cuda')}"
                    f" torch {env.get('torch')} triton {env.get('triton')}"
                    f" tf32 {'on' if env.get('tf32') else 'off'}")
    return ["machine", "--yes", "--machine", name, "--os", os_name, "--arch", platform.machine(),
            "--cpu", cpu, "--num_cpu", str(os.cpu_count()), "--ram", str(ram)]


def main(args) -> int:
    root = _repo_root()
    env = stack()
    name = args.machine or machine_name(env)
    branch = args.branch
    if branch is None:
        from asv.util import load_json  # noqa: PLC0415 (asv's own reader: // comments allowed)

        conf = load_json(os.path.join(root, "asv.conf.json"), js_comments=True)
        branch = (conf.get("branches") or ["main"])[0]
    if args.commits < 1:
        raise UserError(f"--commits must be at least 1, got {args.commits}")
    try:
        hashes = subprocess.check_output(
            ["git", "rev-list", "--first-parent", f"-n{args.commits}", branch], cwd=root,
            text=True, stderr=subprocess.PIPE).split()
    except subprocess.CalledProcessError as err:
        raise UserError(f"branch {branch!r}: {err.stderr.strip() or 'unknown'}") from None
    hashfile = os.path.join(root, ".asv", "track-commits.txt")
    os.makedirs(os.path.dirname(hashfile), exist_ok=True)
    with open(hashfile, "w") as f:
        f.write("\n".join(hashes) + "\n")

    # samples kept so that the summary tables can give mean and std, not only asv's median
    run = ["run", f"HASHFILE:{hashfile}", "--machine", name, "--record-samples"]
    if args.show_stderr:
        run.append("--show-stderr")
    if not args.rerun:
        run.append("--skip-existing-commits")
    for pattern in args.bench or []:
        run += ["-b", pattern]
    commands = [machine_args(name, env), run]
    if not args.no_publish:
        commands.append(["publish", "--no-pull"])
    child_env = dict(os.environ)
    child_env.setdefault("PERFMODEL_BASE_SITE", sysconfig.get_paths()["purelib"])

    print(f"perfmodel track: machine {name}; {len(hashes)} commit(s) of {branch}: "
          f"{' '.join(h[:8] for h in hashes)}", flush=True)
    status = 0
    for cmd in commands:
        full = _asv(*cmd)
        print("$ asv " + " ".join(cmd), flush=True)
        if args.dry_run:
            continue
        t0 = time.perf_counter()
        code = subprocess.call(full, cwd=root, env=child_env)
        print(f"  ({time.perf_counter() - t0:.0f} s, exit {code})", flush=True)
        if cmd[0] == "machine" and code != 0:
            raise UserError("asv machine failed; see above")
        if cmd[0] == "run" and code not in (0, 2):
            return code
        if cmd[0] == "run" and code == 2:
            status = 2  # some benchmark crashed: results are kept and published anyway
    if not args.dry_run and not args.no_publish:
        from .report import publish_site  # noqa: PLC0415

        site = publish_site(html_dir=os.path.join(root, "html"),
                            results_dir=os.path.join(root, "results"), machine=name, repo=root)
        for line in site.lines():
            print(line)
    if not args.dry_run:
        html = os.path.join(root, "html", "index.html")
        print(f"\nresults: {os.path.join(root, 'results', name)}/")
        if not args.no_publish:
            print(f"site:    {html}   (serve it: asv preview, then open the printed URL)")
        print(f"compare: asv continuous {branch}~1 {branch}   |   asv compare {hashes[-1][:8]} "
              f"{hashes[0][:8]} --machine {name}")
    return status
