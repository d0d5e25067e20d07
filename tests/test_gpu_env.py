"""scripts/gpu_env.sh: compile caches carried between GPU boxes keep their kernels, and keep
their autotuning choices only on the card that timed them."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _source(tmp_path: Path, card: str | None) -> subprocess.CompletedProcess:
    """Source gpu_env.sh in ``tmp_path`` on a box whose nvidia-smi names ``card`` (None: none)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    smi = bin_dir / "nvidia-smi"
    smi.unlink(missing_ok=True)
    if card is not None:
        smi.write_text(f"#!/bin/sh\necho '{card}'\n")
        smi.chmod(0o755)
    path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep)
                           if not (Path(p) / "nvidia-smi").exists())
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{path}", HOME=str(tmp_path),
               PYTHON=sys.executable, PERFMODEL_GPU_CACHE=str(tmp_path / "cache"),
               GIT_CONFIG_NOSYSTEM="1")
    if not (tmp_path / ".git").exists():  # the box's copy is a repository
        subprocess.run(["git", "init", "-q", str(tmp_path)], check=True, env=env)
    # as scripts/gpu_asv.sh sources it: under set -euo pipefail
    got = subprocess.run(["bash", "-c", f"set -euo pipefail; source '{ROOT}/scripts/gpu_env.sh'"
                          "; echo sourced"], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=60)
    assert got.stdout.strip().endswith("sourced"), got.stderr
    return got


def _cache(tmp_path: Path) -> dict:
    files = {"triton/K/_fwd.autotune.json": "{}", "triton/K/_fwd.cubin": "x",
             "inductor/ab/cx.best_config": "{}", "inductor/ab/cx.py": "x"}
    for name, text in files.items():
        (tmp_path / "cache" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "cache" / name).write_text(text)
    return files


def _left(tmp_path: Path) -> set:
    cache = tmp_path / "cache"
    return {str(p.relative_to(cache)) for p in cache.rglob("*") if p.is_file()}


def test_choices_from_an_unnamed_or_other_card_are_dropped_and_the_kernels_kept(tmp_path):
    _cache(tmp_path)
    got = _source(tmp_path, "NVIDIA H200")  # a cache that names no card
    assert "2 autotuning choices made on another card dropped" in got.stderr, got.stderr
    assert _left(tmp_path) == {"triton/K/_fwd.cubin", "inductor/ab/cx.py", "card"}
    assert (tmp_path / "cache" / "card").read_text() == "NVIDIA H200\n"

    _cache(tmp_path)  # the choices the H200's own run made are kept on the next H200
    got = _source(tmp_path, "NVIDIA H200")
    assert "dropped" not in got.stderr and "triton/K/_fwd.autotune.json" in _left(tmp_path)

    got = _source(tmp_path, "NVIDIA H100 80GB HBM3")  # and dropped on an H100
    assert "2 autotuning choices" in got.stderr
    assert not {"triton/K/_fwd.autotune.json", "inductor/ab/cx.best_config"} & _left(tmp_path)
    assert (tmp_path / "cache" / "card").read_text() == "NVIDIA H100 80GB HBM3\n"


def test_a_box_without_a_gpu_touches_no_choice(tmp_path):
    files = _cache(tmp_path)
    got = _source(tmp_path, None)
    assert "dropped" not in got.stderr
    assert _left(tmp_path) == set(files)
