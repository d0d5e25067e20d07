"""tools.fork_safe: the probe a GPU box answers (here, without a GPU, only its plumbing)."""
from tools import fork_safe


def test_a_probe_imports_in_a_fresh_interpreter_and_forks_a_child_that_computes():
    row = fork_safe.probe("torch._inductor.codecache", "cpu", nvml=True)
    assert row["error"] == "" and row["child"] == "ok" and row["nvml"] is True
    assert row["initialized"] is False and row["import_s"] >= 0


def test_a_module_that_fails_to_import_is_named_in_the_table():
    row = fork_safe.probe("perfmodel.no_such_module", "cpu", nvml=False)
    assert "ModuleNotFoundError" in row["error"]
    text = fork_safe.table([row])
    assert "perfmodel.no_such_module | off" in text and "ModuleNotFoundError" in text
