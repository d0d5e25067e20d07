"""History runs measure a grid point's cells in one process and replay them (benchmarks/common.py
Group): each cell is measured once, asv gets exactly its recorded samples through its timer, a cell
whose measuring process died is failed (not measured again into the same fault), and the warm-up
study's warm-ups are windows of one run. The cells here are stand-ins with known step times, so
what is replayed can be checked exactly; tests/test_asv_suite.py runs the real suite."""
from __future__ import annotations

import json
import os
import time

import pytest
import torch

from benchmarks import bench_attention, bench_model, common, tiers
import perfmodel.measure as measure
from perfmodel.names import FAILED, OK, OOM


class FakeRunnable:
    """Steps of known seconds: the n-th sample of a cell is base * (1 + n / 100)."""

    def __init__(self, base):
        self.base, self.n, self.released = base, 0, False

    def sample(self):
        seconds = self.base * (1 + self.n / 100)
        self.n += 1
        measure.DEVICE_CLOCK.total += seconds
        return seconds

    def release(self):
        self.released = True


@pytest.fixture
def suite(tmp_path, monkeypatch):
    """A history run's process in an empty working directory, cells opened as FakeRunnables."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(*tiers.HISTORY_RUN_ENV)
    monkeypatch.setenv("PERFMODEL_ASV_DEVICE", "cpu")
    # each mode its own cell; split_suite below turns the split on
    monkeypatch.setattr(tiers, "SPLIT_TRAIN_STEP", False)
    opened = []

    def fake_open(self, history=False):
        mode = self.fields.get("mode", self.fields.get("pass_"))
        if mode == "train" and os.environ.get("PLANT_OOM"):
            self.info = {"status": "OOM", "error": "planted", "peak_bytes": None,
                         "before_backward_bytes": None, "step_s": None, "issue_s": None}
            common._write_side_file(self.path, json.dumps(self.info))
            return
        base = {"fwd": 0.010, "bwd": 0.020, "fwd_bwd": 0.030, "train": 0.040}.get(mode, 0.005)
        self._runnable = FakeRunnable(base)
        self.info = {"status": OK, "error": "", "peak_bytes": 1, "before_backward_bytes": None,
                     "step_s": base, "issue_s": None}
        common._write_side_file(self.path, json.dumps(self.info))
        opened.append((self.kind, dict(self.fields), self.warmup))

    monkeypatch.setattr(common.CellHandle, "_open", fake_open)
    common._HANDLES.clear()
    yield opened
    common._HANDLES.clear()


def _asv_samples(bench, method, n):
    """What asv's timer sees for n samples of ``method``."""
    out = []
    for _ in range(n):
        t0 = common.device_clock()
        getattr(bench, method)()
        out.append(common.device_clock() - t0)
    return out


def test_a_grid_point_is_measured_once_and_each_cell_replayed(suite):
    model = bench_model.Model()
    clock = measure.DEVICE_CLOCK.total
    model.setup("nano", 128, "fp32", "eager")
    assert len(suite) == 4 and measure.DEVICE_CLOCK.total == clock  # measuring is not timed
    least, most, _ = tiers.HISTORY["repeat_cpu"]
    count = model.repeat[0]
    assert model.repeat == (count, count, 0.0) and least <= count <= most
    got = _asv_samples(model, "time_backward", count)
    assert got == pytest.approx([0.020 * (1 + n / 100) for n in range(count)])
    with pytest.raises(NotImplementedError, match="more samples than were recorded"):
        for _ in range(most + 1):
            model.time_backward()

    # another process of the same run (fresh handles) replays, measures nothing
    common._HANDLES.clear()
    again = bench_model.Model()
    again.setup("nano", 128, "fp32", "eager")
    assert len(suite) == 4 and again.repeat == model.repeat
    assert _asv_samples(again, "time_train_step", 2) == pytest.approx([0.040, 0.0404])
    assert again.track_status_train_step() == 1


def test_a_cell_that_is_not_ok_is_na_and_the_others_still_measured(suite, monkeypatch):
    monkeypatch.setenv("PLANT_OOM", "1")
    model = bench_model.Model()
    model.setup("nano", 128, "fp32", "eager")
    assert len(suite) == 3
    assert model.track_status_train_step() == 2  # OOM's code
    with pytest.raises(NotImplementedError, match="OOM: planted"):
        model.time_train_step()
    assert _asv_samples(model, "time_forward", 1) == pytest.approx([0.010])


def test_a_process_that_died_measuring_a_cell_leaves_it_failed(suite):
    attention = bench_attention.Attention()
    cell = ("eager", "float32", 16, 256)
    # a process claimed the backward cell, then died before recording it
    common._HANDLES.clear()
    bwd = common.handle("AttentionCell", dict(zip(("impl", "dtype", "d", "seq"), cell),
                                              pass_="bwd"), "cpu")
    common._write_side_file(bwd.path[:-len(".json")] + common.CLAIM_SUFFIX, "")
    common._HANDLES.clear()
    attention.setup(*cell)
    assert [k for k, *_ in suite] == ["AttentionCell"]  # the forward only
    facts = json.loads(open(attention.bwd.path).read())
    assert facts["status"] == FAILED and "ended while measuring it" in facts["error"]
    with pytest.raises(NotImplementedError, match="failed"):
        attention.time_backward()
    assert attention.track_status_backward() == 3  # failed's code
    assert _asv_samples(attention, "time_forward", 1) == pytest.approx([0.010])


def test_the_warmup_study_is_windows_of_one_run(suite):
    warmups = sorted(tiers.GRID["Warmup"][1]["warmup"])
    runs = {}
    for w in warmups:
        study = bench_model.Warmup()
        study.setup("nano", 128, "fwd", w)
        assert study.repeat == (bench_model.STUDY_STEPS,) * 2 + (600.0,)
        runs[w] = _asv_samples(study, "time_step", bench_model.STUDY_STEPS)
    assert len(suite) == 1 and suite[0][2] == 0  # one run, no untimed step before it
    for w in warmups:
        assert runs[w] == pytest.approx([0.010 * (1 + n / 100)
                                         for n in range(w, w + bench_model.STUDY_STEPS)])


def test_cells_the_gate_compares_are_never_grouped():
    gpu_gate = [c for c in tiers.cells("Attention") if tiers.gated("cuda", "Attention", c)]
    assert gpu_gate
    assert not any(tiers.grouped("cuda", "Attention", c, history_run=True) for c in gpu_gate)
    assert not tiers.grouped("cpu", "Attention", gpu_gate[0], history_run=False)
    assert tiers.grouped("cpu", "Attention", gpu_gate[0], history_run=True)


class MeteredRunnable(FakeRunnable):
    """A stand-in with an allocator meter and an issue time, opened without a metered step."""

    class Meter:
        before_backward = 7

        @staticmethod
        def peak():
            return 4096

    meter = Meter()
    launch = 0.002          # a burst's median issue time
    last = 0.01
    first = (0.0095, 0.0011)  # the burst's first step: device and issue seconds
    backlog = 0.004           # the device's work left after the burst
    free_steps: list = []

    def free_step(self, issue_s):
        self.free_steps.append(issue_s)
        return 0.004


def _open_unmetered(monkeypatch, runnable_class) -> list:
    """Cells open as ``runnable_class`` (a 10 ms step) with no metered figures; returns the
    ``history`` flag of each opening, in order."""
    histories = []

    def open_unmetered(self, history=False):
        histories.append(history)
        self._runnable = runnable_class(0.010)
        self.info = {"status": OK, "error": "", "peak_bytes": None,
                     "before_backward_bytes": None, "step_s": None, "issue_s": None}
        common._write_side_file(self.path, json.dumps(self.info))

    monkeypatch.setattr(common.CellHandle, "_open", open_unmetered)
    return histories


def test_a_history_cell_reads_its_figures_over_its_samples(suite, monkeypatch):
    """History cells are opened with one warm-up step and no metered step (tiers.HISTORY_OPEN):
    their memory is the peak over their samples, their step and issue times those of the first
    step of their first sample (a step begun on an idle device, as a metered step was)."""
    histories = _open_unmetered(monkeypatch, MeteredRunnable)
    model = bench_model.Model()
    model.setup("nano", 128, "fp32", "eager")
    assert histories == [True] * 4  # every cell of the group, by the history protocol
    facts = common._read_side_file(model.cells["forward"].path)
    assert facts["peak_bytes"] == 4096 and facts["before_backward_bytes"] == 7
    assert facts["step_s"] == 0.0095 and facts["issue_s"] == 0.0011  # the first step's
    assert facts["backlog_s"] == 0.004 and facts.get("free_s") is None  # not in doubt: no probe
    assert MeteredRunnable.free_steps == []
    assert model.track_status_forward() == 1.0


def test_a_history_cell_in_doubt_takes_a_head_start_step(suite, monkeypatch):
    """A step issued in most of its time with little work left (names.in_doubt) is run once
    more with a head start, and its time recorded beside the others for the report."""
    class Paced(MeteredRunnable):
        first = (0.0095, 0.0098)
        backlog = 0.0002
        free_steps: list = []

    _open_unmetered(monkeypatch, Paced)
    model = bench_model.Model()
    model.setup("nano", 128, "fp32", "eager")
    model.track_status_forward()
    facts = common._read_side_file(model.cells["forward"].path)
    assert facts["free_s"] == 0.004 and Paced.free_steps[0] == 0.0098
    assert len(Paced.free_steps) == 4  # each mode of the grid point, once


def test_the_history_protocol_is_the_devices_with_one_warmup_step_and_no_metered_step():
    import torch  # noqa: PLC0415

    from perfmodel.workloads import AttentionCell  # noqa: PLC0415

    cpu = torch.device("cpu")
    p = common._history_protocol(measure, cpu)
    base = measure.Protocol.for_device(cpu)
    assert (p.warmup_steps, p.meter_step) == (1, False)
    assert (p.burst_s, p.warmup_s) == (base.burst_s, base.warmup_s)
    gpu = common._history_protocol(measure, torch.device("cuda"))
    assert gpu.hold_factor == measure.Protocol.for_device(torch.device("cuda")).hold_factor
    opened = measure.open_cell(AttentionCell("eager", 16, 64, batch=2), cpu, p)
    assert opened.status == OK and opened.peak_bytes is None and "meter_s" not in opened.costs
    assert opened.runnable.last is not None  # the warm-up was timed: it sizes the first burst
    opened.runnable.sample()
    step_s, issue_s = opened.runnable.first  # the burst's first step (no launches on a CPU)
    assert step_s > 0 and issue_s is None
    opened.runnable.release()


class PartsRunnable(FakeRunnable):
    """A marked train step of known parts: sample n's bwd, fwd_bwd and train are 0.020, 0.030
    and 0.040 times (1 + n / 100); the first step's issue times leave the backward in doubt."""

    PARTS = {"bwd": 0.020, "fwd_bwd": 0.030, "train": 0.040}
    backlog = 0.0001
    free_steps: list = []

    def __init__(self, base):
        super().__init__(base)
        self.meter = type("Meter", (), {"peak": lambda _: 8192, "before_backward": 5})()
        self.parts_free = {}

    def sample(self):
        k = 1 + self.n / 100
        self.parts_sample = {m: v * k for m, v in self.PARTS.items()}
        self.parts_first = {"bwd": (0.019, 0.0195), "fwd_bwd": (0.029, 0.002),
                            "train": (0.039, 0.003)}
        return super().sample()

    def free_step(self, issue_s):
        PartsRunnable.free_steps.append(issue_s)
        self.parts_free = {"bwd": 0.011, "fwd_bwd": 0.021, "train": 0.031}
        return self.parts_free["bwd"]


@pytest.fixture
def split_suite(suite, monkeypatch):
    """The suite with the model's train step split (tiers.SPLIT_TRAIN_STEP): a split cell opens
    as a PartsRunnable reporting the backward."""
    monkeypatch.setattr(tiers, "SPLIT_TRAIN_STEP", True)
    fake_open = common.CellHandle._open
    PartsRunnable.free_steps = []

    def open_split(self, history=False):
        fake_open(self, history)
        if self.fields.get("split"):  # opened by the history protocol: no metered step
            self._runnable = PartsRunnable(0.020)
            self.info = dict(self.info, peak_bytes=None, step_s=None)
            common._write_side_file(self.path, json.dumps(self.info))
    monkeypatch.setattr(common.CellHandle, "_open", open_split)
    return suite


def test_a_parts_doubt_is_not_cleared_by_the_whole_steps_backlog(split_suite, monkeypatch):
    """A backlog of a tenth of the backward's step or more would clear a step of its own, but
    the burst's backlog is the train step's: the backward, issued in most of its span, still
    takes the head-start step, and the train step (issued in little of its time) does not."""
    monkeypatch.setattr(PartsRunnable, "backlog", 0.01)
    model = bench_model.Model()
    model.setup("nano", 128, "fp32", "eager")
    assert PartsRunnable.free_steps == [0.0195]
    bwd = common._read_side_file(model.cells["backward"].path)
    train = common._read_side_file(model.cells["train_step"].path)
    assert (bwd["backlog_s"], bwd["free_s"]) == (None, 0.011)
    assert (train["backlog_s"], train.get("free_s")) == (0.01, None)


def test_a_split_train_step_is_sampled_once_for_its_three_modes(split_suite):
    model = bench_model.Model()
    model.setup("nano", 128, "fp32", "eager")
    assert [f["mode"] for _, f, _ in split_suite] == ["fwd", "bwd"]  # two cells opened, not four
    assert all(f.get("split") for _, f, _ in split_suite[1:])
    count = model.repeat[0]
    for method, base in (("time_backward", 0.020), ("time_forward_backward", 0.030),
                         ("time_train_step", 0.040)):
        assert _asv_samples(model, method, count) == pytest.approx(
            [base * (1 + n / 100) for n in range(count)])
    # each part's figures are its own span's; only the doubtful backward took the head start
    assert PartsRunnable.free_steps == [0.0195]
    bwd = common._read_side_file(model.cells["backward"].path)
    train = common._read_side_file(model.cells["train_step"].path)
    assert (bwd["step_s"], bwd["issue_s"], bwd["free_s"]) == (0.019, 0.0195, 0.011)
    assert (train["step_s"], train["issue_s"], train.get("free_s")) == (0.039, 0.003, None)
    # the burst's backlog is the train step's: the parts that end inside it record none
    assert (bwd["backlog_s"], train["backlog_s"]) == (None, 0.0001)
    assert bwd["peak_bytes"] == train["peak_bytes"] == 8192  # the train step's memory
    fwd_bwd = common._read_side_file(model.cells["forward_backward"].path)
    assert fwd_bwd["before_backward_bytes"] == 5
    # another process of the run replays them, measuring nothing
    common._HANDLES.clear()
    again = bench_model.Model()
    again.setup("nano", 128, "fp32", "eager")
    assert len(split_suite) == 2
    assert _asv_samples(again, "time_forward_backward", 1) == pytest.approx([0.030])


def test_a_split_train_step_that_is_not_ok_leaves_its_three_modes_na(split_suite, monkeypatch):
    def oom(self, history=False):
        self.info = {"status": "OOM", "error": "planted", "peak_bytes": None,
                     "before_backward_bytes": None, "step_s": None, "issue_s": None}
        common._write_side_file(self.path, json.dumps(self.info))
    opener = common.CellHandle._open
    monkeypatch.setattr(common.CellHandle, "_open",
                        lambda self, history=False: (oom if self.fields.get("split") else opener)(
                            self, history))
    model = bench_model.Model()
    model.setup("nano", 128, "fp32", "eager")
    for suffix in ("backward", "forward_backward", "train_step"):
        assert getattr(model, f"track_status_{suffix}")() == 2
        with pytest.raises(NotImplementedError, match="OOM: planted"):
            getattr(model, f"time_{suffix}")()
    assert _asv_samples(model, "time_forward", 1) == pytest.approx([0.010])


class RaisesAfter(PartsRunnable):
    """A runnable whose warm-up fitted and whose ``fail_at``-th sample raises ``err``: a step at
    the card's edge, where the allocator's fragmentation decides (2.7B ctx 1024 eager on an H100)."""

    fail_at, err = 1, None

    def sample(self):
        if self.n == self.fail_at:
            raise self.err
        return super().sample()


def _raising(monkeypatch, err, split_only=True):
    """Cells opened as RaisesAfter(err) (the split train step's only, or every cell)."""
    RaisesAfter.err = err
    opener = common.CellHandle._open

    def open_raising(self, history=False):
        opener(self, history)
        if self._runnable is not None and (self.fields.get("split") or not split_only):
            self._runnable = RaisesAfter(0.020)
    monkeypatch.setattr(common.CellHandle, "_open", open_raising)


def test_a_train_step_that_runs_out_of_memory_while_sampled_is_oom_and_the_rest_measured(
        split_suite, monkeypatch):
    _raising(monkeypatch, torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 160 MiB"))
    model = bench_model.Model()
    model.setup("nano", 128, "fp32", "eager")  # no traceback: the grid point's process goes on
    for suffix in ("backward", "forward_backward", "train_step"):
        assert getattr(model, f"track_status_{suffix}")() == 2  # OOM's code
        with pytest.raises(NotImplementedError, match="OOM: ran out of memory while sampling"):
            getattr(model, f"time_{suffix}")()
        facts = common._read_side_file(model.cells[suffix].path)
        assert facts["status"] == OOM and "160 MiB" in facts["error"]
        assert facts["step_s"] is None  # no figure of a step that was not sampled to the end
    assert _asv_samples(model, "time_forward", 1) == pytest.approx([0.010])
    # a later process of the run reads the OOM; it does not claim the cells failed
    common._HANDLES.clear()
    again = bench_model.Model()
    again.setup("nano", 128, "fp32", "eager")
    assert again.track_status_train_step() == 2


def test_a_cell_whose_sampling_raises_is_failed_in_one_line_and_the_others_measured(
        suite, monkeypatch):
    _raising(monkeypatch, RuntimeError("an illegal memory access\nwas encountered"),
             split_only=False)
    RaisesAfter.fail_at = 0
    try:
        attention = bench_attention.Attention()
        attention.setup("eager", "float32", 16, 256)
    finally:
        RaisesAfter.fail_at = 1
    assert attention.track_status_backward() == 3  # failed's code
    facts = common._read_side_file(attention.bwd.path)
    assert facts["status"] == FAILED and "\n" not in facts["error"]
    assert "illegal memory access" in facts["error"]


def test_a_fault_on_a_gpu_ends_the_process_and_the_next_measures_the_rest(suite, monkeypatch):
    """An error other than OOM on a GPU may have poisoned the CUDA context (an illegal memory
    access fails every later launch): the cell is recorded failed with its reason and the
    process ends, as a crash would; the next process measures the group's other cells."""
    monkeypatch.setenv("PERFMODEL_ASV_DEVICE", "cuda")  # the stand-in cells never touch it
    monkeypatch.setattr(measure, "free_device_memory", lambda device: None)
    fake_open = common.CellHandle._open  # the fixture's, restored once the fault has happened
    _raising(monkeypatch, RuntimeError("an illegal memory access was encountered"),
             split_only=False)
    RaisesAfter.fail_at = 0
    attention = bench_attention.Attention()
    try:
        with pytest.raises(RuntimeError, match="illegal memory access"):
            attention.setup("eager", "float32", 16, 256)
    finally:
        RaisesAfter.fail_at = 1
    assert [f["pass_"] for _, f, _ in suite] == ["fwd"]  # the backward never began here
    common._HANDLES.clear()
    monkeypatch.setattr(common.CellHandle, "_open", fake_open)
    again = bench_attention.Attention()
    again.setup("eager", "float32", 16, 256)
    assert again.track_status_forward() == 3  # its own reason, not "ended while measuring it"
    assert "illegal memory access" in common._read_side_file(again.fwd.path)["error"]
    assert again.track_status_backward() == 1
    assert [f["pass_"] for _, f, _ in suite] == ["fwd", "bwd"]


def test_a_warmup_study_that_runs_out_of_memory_is_oom(suite, monkeypatch):
    _raising(monkeypatch, torch.OutOfMemoryError("CUDA out of memory"), split_only=False)
    study = bench_model.Warmup()
    study.setup("nano", 128, "fwd", 0)
    assert study.track_status() == 2
    with pytest.raises(NotImplementedError, match="OOM"):
        study.time_step()


def test_a_gate_cell_that_runs_out_of_memory_while_sampled_is_oom_not_an_asv_failure(
        suite, monkeypatch):
    # an asv failure would make `asv continuous` return before comparing (notes/protocol.md)
    monkeypatch.delenv(tiers.HISTORY_RUN_ENV[0])
    _raising(monkeypatch, torch.OutOfMemoryError("CUDA out of memory"), split_only=False)
    attention = bench_attention.Attention()
    attention.setup("eager", "float32", 16, 256)
    assert attention.bwd.group is None  # its own process samples it
    attention.time_backward()  # the first sample fits
    with pytest.raises(NotImplementedError, match="OOM: ran out of memory while sampling"):
        attention.time_backward()
    assert attention.bwd._runnable is None  # its memory given back
    with pytest.raises(NotImplementedError, match="OOM"):
        attention.time_backward()
    assert attention.track_status_backward() == 2


def test_the_suites_split_modes_are_the_train_steps_parts_and_real_cells_agree(tmp_path,
                                                                                monkeypatch):
    """tiers.SPLIT_MODES names perfmodel's TRAIN_PARTS (the suite runs against older commits, so
    it states its own); and on the CPU a real history run of a split grid point replays, sample
    by sample, a backward shorter than its forward+backward, shorter than its train step."""
    from perfmodel.workloads import TRAIN_PARTS  # noqa: PLC0415

    assert tiers.SPLIT_MODES == tuple(TRAIN_PARTS)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(*tiers.HISTORY_RUN_ENV)
    monkeypatch.setenv("PERFMODEL_ASV_DEVICE", "cpu")
    monkeypatch.setattr(tiers, "SPLIT_TRAIN_STEP", True)
    common._HANDLES.clear()
    try:
        model = bench_model.Model()
        model.setup("nano", 128, "fp32", "sdpa")
        n = model.repeat[0]
        got = {m: _asv_samples(model, f"time_{m}", n)
               for m in ("backward", "forward_backward", "train_step")}
        assert all(b < fb < t for b, fb, t in zip(*got.values()))
        assert model.track_status_backward() == 1
    finally:
        common._HANDLES.clear()


def test_split_modes_file_their_numbers_on_lines_of_their_own(monkeypatch):
    import importlib  # noqa: PLC0415

    monkeypatch.setattr(tiers, "SPLIT_TRAIN_STEP", True)
    try:
        split = importlib.reload(bench_model).Model
        assert split.time_backward.version == common.TIME_VERSION + common.SPLIT_SUFFIX
        assert split.track_before_backward_bytes.version.endswith(common.SPLIT_SUFFIX)
        assert not hasattr(split.time_train_step, "version")  # the train step keeps its line
        assert split.track_status_train_step.version == common.FACTS_VERSION
        monkeypatch.setattr(tiers, "SPLIT_TRAIN_STEP", False)
        plain = importlib.reload(bench_model).Model
    finally:
        monkeypatch.undo()
        importlib.reload(bench_model)
    assert not hasattr(plain.time_backward, "version")
    assert plain.track_before_backward_bytes.version == common.FACTS_VERSION


@pytest.fixture
def gpu_run(monkeypatch):
    """A history run's process that takes its device for a GPU (the cells are stand-ins, and
    giving memory back is a no-op here)."""
    monkeypatch.setenv("PERFMODEL_ASV_DEVICE", "cuda")
    monkeypatch.setattr(measure, "free_device_memory", lambda device: None, raising=False)


def test_a_compiled_cells_process_measures_its_span_of_grid_points(suite, gpu_run):
    """torch.compile's cells (tiers.SPANS): the first process that needs a compiled attention
    cell measures the cells of every sequence length of its (dtype, d), in grid order; a
    process of another length measures nothing and replays its own cells' samples."""
    seqs = tiers.GRID["Attention"][1]["seq"]
    attention = bench_attention.Attention()
    attention.setup("compiled", "float32", 16, seqs[1])
    assert [(f["seq"], f["pass_"]) for _, f, _ in suite] == [(s, p) for s in seqs
                                                            for p in ("fwd", "bwd")]
    least, most, _ = tiers.HISTORY["repeat_gpu"]
    assert least <= attention.repeat[0] <= most
    common._HANDLES.clear()
    other = bench_attention.Attention()
    other.setup("compiled", "float32", 16, seqs[-1])
    assert len(suite) == 2 * len(seqs)  # nothing measured again
    got = _asv_samples(other, "time_backward", other.repeat[0])
    assert got == pytest.approx([0.020 * (1 + n / 100) for n in range(other.repeat[0])])
    # another (dtype, d) is a span of its own; an eager cell's group is its own grid point
    other.setup("compiled", "float32", 32, seqs[0])
    assert len(suite) == 4 * len(seqs)
    bench_attention.Attention().setup("eager", "float32", 32, seqs[0])
    assert len(suite) == 4 * len(seqs) + 2


def test_a_compiled_model_span_keeps_each_contexts_train_step_apart(split_suite, gpu_run):
    """The compiled model's span over contexts: each context's split train step is opened and
    sampled once for its three parts, its forward on its own, and every context's cells get
    their own records."""
    contexts = tiers.GRID["Model"][1]["context"]
    model = bench_model.Model()
    model.setup("small", contexts[0], "bf16", "compiled")
    assert [(f["context"], f["mode"]) for _, f, _ in split_suite] == [
        (c, m) for c in contexts for m in ("fwd", "bwd")]
    for context in contexts:
        common._HANDLES.clear()
        again = bench_model.Model()
        again.setup("small", context, "bf16", "compiled")
        assert again.track_status_train_step() == 1
        n = again.repeat[0]
        got = {m: _asv_samples(again, f"time_{m}", n)
               for m in ("backward", "forward_backward", "train_step")}
        assert all(b < fb < t for b, fb, t in zip(*got.values()))
    assert len(split_suite) == 2 * len(contexts)


def test_spans_follow_the_tier_and_can_be_turned_off(monkeypatch):
    compiled = dict(impl="compiled", dtype="bfloat16", d=64, seq=4096)
    points = tiers.span("cuda", "Attention", compiled, history_run=True)
    assert [c["seq"] for c in points] == tiers.GRID["Attention"][1]["seq"] and compiled in points
    assert tiers.span("cuda", "Attention", compiled) == [compiled]  # not a history run
    eager = dict(compiled, impl="eager")
    assert tiers.span("cuda", "Attention", eager, history_run=True) == [eager]
    small = dict(preset="small", context=512, precision="fp32", variant="compiled")
    assert [c["context"] for c in tiers.span("cuda", "Model", small, history_run=True)] == \
        tiers.GRID["Model"][1]["context"]
    big = dict(small, preset="xl")  # outside the GPU tier: no span of cells nobody measures
    assert tiers.span("cuda", "Model", big, history_run=True) == [big]
    monkeypatch.setenv("PERFMODEL_ASV_SPAN", "0")
    assert tiers.span("cuda", "Attention", compiled, history_run=True) == [compiled]


def test_a_spans_process_logs_each_cell_under_its_own_grid_point(suite, gpu_run, tmp_path,
                                                                  monkeypatch):
    log = tmp_path / "cost.jsonl"
    monkeypatch.setenv(common.COST_LOG, str(log))
    attention = bench_attention.Attention()
    attention.setup("compiled", "bfloat16", 64, 256)
    attention.teardown("compiled", "bfloat16", 64, 256)
    line = json.loads(log.read_text().splitlines()[-1])
    assert abs(line["t"] - time.time()) < 600  # the wall clock: the gaps between processes
    points = [c.get("params") for c in line["cells"]]
    seqs = tiers.GRID["Attention"][1]["seq"]
    assert points.count(None) == 2  # its own forward and backward
    assert sorted({tuple(p) for p in points if p}) == sorted(
        ("compiled", "bfloat16", "64", str(s)) for s in seqs[1:])


def test_a_head_start_that_did_not_take_is_kept_only_to_convict(split_suite, monkeypatch):
    """When the device reached the step before its host had queued all of it (a step of more
    launches than the launch queue holds), the head-start step's time can show the step
    host-bound but not clear it: recorded when the step as sampled took PARTIAL_WAIT_SHARE
    times as long, else left out (unknown)."""
    from perfmodel.names import PARTIAL_WAIT_SHARE  # noqa: PLC0415

    monkeypatch.setattr(PartsRunnable, "free_took", False, raising=False)
    model = bench_model.Model()
    model.setup("nano", 128, "fp32", "eager")  # the backward's step about 0.020, free 0.011
    assert 0.020 > PARTIAL_WAIT_SHARE * 0.011
    assert common._read_side_file(model.cells["backward"].path)["free_s"] == 0.011

    def barely_faster(self, issue_s):
        self.parts_free = {"bwd": 0.019, "fwd_bwd": 0.029, "train": 0.039}
        return self.parts_free["bwd"]
    monkeypatch.setattr(PartsRunnable, "free_step", barely_faster)
    model = bench_model.Model()
    model.setup("nano", 256, "fp32", "eager")
    assert common._read_side_file(model.cells["backward"].path)["free_s"] is None
    monkeypatch.setattr(PartsRunnable, "free_took", True)  # had it taken: kept as measured
    model = bench_model.Model()
    model.setup("tiny", 128, "fp32", "eager")
    assert common._read_side_file(model.cells["backward"].path)["free_s"] == 0.019
