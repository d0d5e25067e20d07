import argparse
import re
import subprocess
import sys

import pytest

from perfmodel.cli import main


@pytest.fixture(autouse=True)
def _never_too_busy(monkeypatch):
    # these tests check the commands' tables, not a time: a loaded machine (seen: a fresh
    # clone's CI, its two test workers on two cores) must not turn a cell "busy"
    import perfmodel.measure as measure  # noqa: PLC0415

    monkeypatch.setattr(measure, "CPU_BUSY_SHARE", 1.0)


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


def test_split_modes_share_the_row_of_their_forward_and_say_how_they_were_timed(capsys):
    assert main(["model", "--preset", "nano", "--context", "16", "--batch", "1", "--mode",
                 "fwd,bwd,train", "--split", "on", "--steps", "2", "--quiet"]) == 0
    out = capsys.readouterr().out
    rows = [l for l in out.splitlines() if l.startswith("| nano")]
    assert len(rows) == 1 and rows[0].count("| OK |") == 3
    assert "parts of one marked train step" in out


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


def test_markdown_says_why_a_cell_is_not_ok(capsys):
    """The status column only names a failure or an OOM; the lines under the table say why,
    one per cell, and an OK cell gets none."""
    assert main(["attention", "--impl", "eager", "--d", "16", "--seq", "64,65536", "--batch", "8",
                 "--pass", "fwd", "--steps", "2", "--device", "cpu", "--quiet"]) == 0
    out = capsys.readouterr().out
    rows = [l for l in out.splitlines() if l.startswith("| eager")]
    assert len(rows) == 2 and "| OK |" in rows[0] and "| OOM |" in rows[1]
    why = [l for l in out.splitlines() if l.startswith("- ")]
    assert len(why) == 1 and re.match(
        r"- OOM: impl=eager dtype=float32 d=16 seq=65536 pass=fwd: predicted [\d.]+ GiB > ", why[0]), why


def test_presets_command(capsys):
    assert main(["presets"]) == 0
    assert "3406809600" in capsys.readouterr().out


COMMANDS = ("model", "attention", "presets", "env", "report", "track", "gate")


def test_help_names_every_command_without_markup():
    out = run_cli("--help")
    assert out.returncode == 0
    assert "``" not in out.stdout
    description = out.stdout.split("positional arguments")[0]
    for command in COMMANDS:
        assert re.search(rf"\b{command}\b", description), command


def _subparsers():
    from perfmodel.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return parser, sub


def test_every_command_and_option_has_help_with_its_default():
    parser, sub = _subparsers()
    assert set(sub.choices) == set(COMMANDS)
    helped = {a.dest for a in sub._choices_actions if a.help}
    assert helped == set(COMMANDS)
    for command, p in sub.choices.items():
        assert p.description and "``" not in p.description, command
        text = p.format_help()
        assert "``" not in text, command
        for action in p._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            what = f"{command} {action.option_strings or action.dest}"
            assert action.help, f"{what} has no help"
            shown = p._get_formatter()._get_help_string(action) % vars(action)
            if action.option_strings and action.default not in (None, False):
                assert "default" in shown, f"{what} hides its default {action.default!r}"
    for command in ("gate", "track", "report"):  # what their exit status means
        assert re.search(r"[Ee]xit status.*\b0\b.*\b1\b.*\b2\b", sub.choices[command].description,
                         re.S), command


def test_each_command_is_its_own_module_with_add_parser_and_main():
    """One module per verb (perfmodel/commands/): its add_parser(sub) adds exactly its command,
    whose ``func`` is that module's main; the modules that are not verbs hold what verbs share."""
    import importlib
    import pkgutil

    import perfmodel.commands
    from perfmodel.cli import COMMANDS as registered

    assert set(registered) == set(COMMANDS)
    found = {m.name for m in pkgutil.iter_modules(perfmodel.commands.__path__)}
    assert set(COMMANDS) <= found and found - set(COMMANDS) == {"grid_options"}, found
    for command in COMMANDS:
        module = importlib.import_module(f"perfmodel.commands.{command}")
        parser = argparse.ArgumentParser()
        sub = parser.add_subparsers(dest="command")
        module.add_parser(sub)
        assert set(sub.choices) == {command}, (command, set(sub.choices))
        assert sub.choices[command].get_default("func") is module.main, command


def test_the_command_modules_import_no_torch():
    """perfmodel, its parser module and every command module load without torch (the asv plugin
    and the report run where torch is not installed; a command imports what measures when it
    runs)."""
    code = ("import importlib, sys; import perfmodel, perfmodel.cli, perfmodel.identity, "
            "perfmodel.repo\n"
            f"for c in {COMMANDS!r} + ('grid_options',): "
            "importlib.import_module('perfmodel.commands.' + c)\n"
            "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if 'torch' in m)[:5]")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_version():
    from perfmodel import __version__

    out = run_cli("--version")
    assert out.returncode == 0 and out.stdout.strip() == f"perfmodel {__version__}"


def test_a_bad_value_names_the_program_once():
    out = run_cli("attention", "--seq", "1e3")
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert lines == ["perfmodel attention: error: argument --seq: expected whole numbers, "
                     "got '1e3' (perfmodel attention --help lists the options)"], lines
