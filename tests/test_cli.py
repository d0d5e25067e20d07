import subprocess
import sys

import pytest

from perfmodel.cli import main


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "perfmodel", *args], capture_output=True,
                          text=True, timeout=300)


@pytest.mark.parametrize("args, expect", [
    (["model", "--preset", "huge"], "unknown preset 'huge'; valid choices: nano, tiny, small"),
    (["attention", "--impl", "fastest"], "valid choices: eager, compiled, sdpa, flash"),
    (["attention", "--d", "sixty"], "expected whole numbers"),
    (["attention", "--seq", "0"], "seq must be a positive integer"),
    (["model", "--mode", "inference"], "valid choices: fwd, bwd, fwd_bwd, train"),
    (["model", "--device", "tpu"], "valid choices: auto, cpu, cuda"),
    (["model", "--steps", "0"], "--steps >= 1"),
    (["frobnicate"], "invalid choice"),
])
def test_user_mistakes_give_one_line(args, expect):
    out = run_cli(*args)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and expect in lines[0] and "Traceback" not in out.stderr


def test_model_grid_prints_a_seed_style_table(capsys):
    assert main(["model", "--preset", "nano", "--context", "16,32", "--batch", "2",
                 "--mode", "fwd,fwd_bwd", "--steps", "2", "--quiet"]) == 0
    out = capsys.readouterr().out
    header = out.splitlines()[0]
    for col in ("preset", "ctx", "d_model", "fwd status", "fwd mean ms", "fwd_bwd std ms"):
        assert col in header
    rows = [l for l in out.splitlines() if l.startswith("| nano")]
    assert len(rows) == 2 and all("| OK |" in r for r in rows)


def test_attention_grid_with_oom_cell_keeps_the_others(capsys, tmp_path):
    out_file = tmp_path / "t.csv"
    assert main(["attention", "--impl", "eager", "--d", "16", "--seq", "64,16384",
                 "--batch", "8", "--steps", "2", "--quiet", "--format", "csv",
                 "-o", str(out_file)]) == 0
    text = out_file.read_text()
    # eager at seq 16384 cannot fit 24 GiB (predicted OOM, both passes); seq 64 still ran.
    rows = [l for l in text.splitlines()[1:] if l.startswith("eager,")]
    assert len(rows) == 4
    assert all(",OOM," in l for l in rows if ",16384," in l)
    assert all(",OK," in l for l in rows if ",64," in l)


def test_presets_command(capsys):
    assert main(["presets"]) == 0
    assert "3406809600" in capsys.readouterr().out
