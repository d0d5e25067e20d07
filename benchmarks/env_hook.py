"""Run by asv.conf.json's build and install commands inside each per-commit environment.

Makes the interpreter that runs asv (its site-packages: torch, triton, numpy, ...) importable in
the new environment, so no environment ever installs torch: a ``.pth`` file in the environment's
site-packages names that directory. A plain path line appends it to sys.path (the commit's own
perfmodel, installed in the environment, still wins) and, unlike ``site.addsitedir``, does not run
that directory's own .pth files (an editable install of the working tree there would otherwise
shadow the commit under test).

Which site-packages: $PERFMODEL_BASE_SITE if set, else the one of the Python that runs asv
(this script's parent process).
"""
import os
import shutil
import subprocess
import sys
import sysconfig

PTH = "perfmodel_base_site.pth"


def _parent_python() -> str:
    ppid = os.getppid()
    with open(f"/proc/{ppid}/cmdline", "rb") as f:
        exe = f.read().split(b"\0")[0].decode()
    if os.sep not in exe:  # "python -m asv": resolve it as the parent did
        with open(f"/proc/{ppid}/environ", "rb") as f:
            env = dict(kv.split(b"=", 1) for kv in f.read().split(b"\0") if b"=" in kv)
        exe = shutil.which(exe, path=env.get(b"PATH", b"").decode()) or exe
    elif not os.path.isabs(exe):
        exe = os.path.join(os.readlink(f"/proc/{ppid}/cwd"), exe)
    return exe


def base_site() -> str:
    site = os.environ.get("PERFMODEL_BASE_SITE")
    if site:
        return site
    code = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    return subprocess.check_output([_parent_python(), "-c", code], text=True).strip()


def main() -> int:
    base = base_site()
    target = os.path.join(sysconfig.get_paths()["purelib"], PTH)
    if os.path.realpath(base) == os.path.realpath(os.path.dirname(target)):
        return 0
    with open(target, "w") as f:
        f.write(base + "\n")
    print(f"{target}: {base}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
