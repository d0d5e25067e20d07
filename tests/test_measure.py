"""The measurement core: statistics, what is timed, memory, and OOM / failure as results."""
import gc
import math
import statistics
import time
import weakref

import pytest
import torch

from perfmodel import cpu, measure
from perfmodel.errors import UserError
from perfmodel.grid import run_grid
from perfmodel.measure import DEVICE_CLOCK, Runnable, Stats, run_cell
from perfmodel.memory import MemoryMeter
from perfmodel.names import FAILED, OK, OOM, SKIPPED
from perfmodel.workloads import AttentionCell, ModelCell

CPU = torch.device("cpu")
REAL_RUN_QUEUE = measure.run_queue_seconds


@pytest.fixture(autouse=True)
def _undisturbed(monkeypatch):
    """Tests that count steps must not see a retake: the CI machine may be loaded. The test of
    disturbance detection patches this itself."""
    monkeypatch.setattr(measure, "run_queue_seconds", lambda: 0.0)


class FakeCell:
    """A cell whose build and step are given by the test."""

    def __init__(self, step=None, prepare=None, bytes_needed=0, build_error=None, available=True):
        self.step, self.prepare = step or (lambda _: None), prepare
        self.bytes_needed, self.build_error, self.available = bytes_needed, build_error, available
        self.built = 0
        self.tensor_ref = None

    def validate(self):
        pass

    def describe(self):
        return {"name": "fake"}

    def availability(self, device):
        return (True, "") if self.available else (False, "not here")

    def estimate_bytes(self):
        return self.bytes_needed

    def flops(self):
        return 1e9

    def math_kind(self):
        return "fp32"

    def build(self, device):
        self.built += 1
        if self.build_error:
            raise self.build_error
        big = torch.ones(1 << 20)
        self.tensor_ref = weakref.ref(big)
        step = self.step
        return Runnable(device, lambda s: step((s, big)), self.prepare)


def test_stats():
    s = Stats.of([1.0, 2.0, 3.0, 10.0])
    assert (s.n, s.mean, s.median, s.min, s.max) == (4, 4.0, 2.5, 1.0, 10.0)
    assert s.std == pytest.approx(4.0825, abs=1e-4)  # sample standard deviation
    assert Stats.of([2.0]).std == 0.0


def test_prepare_is_not_timed():
    # A backward step's forward runs in prepare(): it must not count in the step's time.
    cell = FakeCell(step=lambda s: time.sleep(0.002), prepare=lambda: time.sleep(0.03))
    r = run_cell(cell, CPU, warmup=0, steps=5)
    assert 0.002 <= r.stats.min and r.stats.median < 0.02
    assert r.total_s >= 5 * 0.03


def test_bad_warmup_or_steps_is_a_user_error():
    with pytest.raises(UserError, match="steps >= 1"):
        run_cell(FakeCell(), CPU, warmup=0, steps=0)


def test_gpu_out_of_memory_is_a_result_and_memory_is_released():
    # Simulated: the step raises the error a CUDA allocation raises.
    def boom(_):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 64.00 GiB")

    cell = FakeCell(step=boom)
    r = run_cell(cell, CPU, warmup=1, steps=3)
    assert r.status == OOM and "out of memory" in r.error and r.stats is None
    gc.collect()
    assert cell.tensor_ref() is None, "the cell's tensors outlived its OOM"


def test_oom_or_failure_never_loses_other_cells():
    good = FakeCell()
    cells = [good, FakeCell(build_error=torch.OutOfMemoryError("out of memory")),
             FakeCell(build_error=RuntimeError("kernel exploded\nsecond line")), good,
             FakeCell(available=False)]
    results = run_grid(cells, CPU, warmup=0, steps=2, progress=None)
    assert [r.status for r in results] == [OK, OOM, FAILED, OK, SKIPPED]
    assert results[2].error == "RuntimeError: kernel exploded"  # one line
    assert results[4].error == "not here"


def test_cpu_cell_that_would_not_fit_is_predicted_oom_and_never_built():
    cell = FakeCell(bytes_needed=10 * measure.available_host_bytes())
    r = run_cell(cell, CPU, warmup=1, steps=2)
    assert r.status == OOM and "predicted" in r.error and cell.built == 0


def test_seed_cells_that_cannot_fit_this_machine_are_predicted_oom():
    # eager attention at batch 8, seq 16384 holds 8 GiB per seq x seq fp32 tensor.
    big = AttentionCell("eager", d=64, seq=16384, pass_="bwd")
    assert big.estimate_bytes() > 5 * 8 * 16384**2 * 4 * 0.99
    assert AttentionCell("sdpa", d=64, seq=16384).estimate_bytes() < 2**30
    train = ModelCell("2.7B", 1024, mode="train")
    assert train.estimate_bytes() > 16 * 3_406_809_600  # weights, grads, two AdamW moments
    if train.estimate_bytes() > measure.HOST_MEMORY_FRACTION * measure.available_host_bytes():
        assert run_cell(train, CPU, 1, 1).status == OOM


def test_cpu_memory_meter_sees_a_large_allocation():
    import mmap  # noqa: PLC0415  (a mapping of its own: freed at once, whatever malloc keeps)

    meter = MemoryMeter(CPU)
    meter.reset()
    base = meter.current()
    buf = mmap.mmap(-1, 256 * 2**20)
    chunk = b"x" * 2**20
    for _ in range(256):  # touched, so resident (in small writes: no large temporary)
        buf.write(chunk)
    assert meter.peak() - base > 200 * 2**20
    buf.close()
    meter.reset()
    assert meter.peak() < base + 200 * 2**20


def test_a_sample_advances_the_device_clock():
    r = Runnable(CPU, lambda s: time.sleep(0.003))
    before = DEVICE_CLOCK()
    seconds = r.sample()
    assert DEVICE_CLOCK() - before == pytest.approx(seconds) and seconds >= 0.003


@pytest.mark.parametrize("mode", ["fwd", "bwd", "fwd_bwd", "train"])
def test_model_cells_run_and_report_figures(mode):
    r = run_cell(ModelCell("nano", 32, batch=2, mode=mode), CPU, warmup=1, steps=2)
    assert r.status == OK, r.error
    assert r.stats.median > 0 and r.peak_bytes > 0 and r.flops > 0 and r.tflops > 0
    assert (r.before_backward_bytes is None) == (mode == "fwd")
    assert r.cell["params"] == 1_411_392 and r.env["tf32"] is False


def test_model_flops_are_6_params_tokens_plus_attention():
    cell = ModelCell("small", 1024, batch=4, mode="fwd_bwd")
    tokens = 4 * 1024
    attn = 12 * 4 * 4 * 12 * 1024 * 1024 * 64 / 2  # layers * 4*b*h*s^2*hd, causal
    assert cell.flops() == pytest.approx(6 * 128_625_408 * tokens + 3 * attn)


@pytest.mark.parametrize("pass_", ["fwd", "bwd", "fwd_bwd"])
def test_attention_cells_run(pass_):
    r = run_cell(AttentionCell("sdpa", 16, 64, pass_=pass_), CPU, warmup=1, steps=2)
    assert r.status == OK and r.stats.n == 2
    assert (r.before_backward_bytes is not None) == (pass_ != "fwd")
    fwd = 4 * 8 * 64 * 64 * 16 / 2
    assert r.flops == {"fwd": fwd, "bwd": 2.5 * fwd, "fwd_bwd": 3.5 * fwd}[pass_]


def test_unknown_choices_name_the_valid_ones():
    with pytest.raises(UserError, match="valid choices: nano, tiny"):
        run_cell(ModelCell("giant", 128), CPU)
    with pytest.raises(UserError, match="valid choices: fwd, bwd, fwd_bwd, train"):
        run_cell(ModelCell("nano", 128, mode="step"), CPU)
    with pytest.raises(UserError, match="seq must be a positive integer"):
        run_cell(AttentionCell("sdpa", 16, -4), CPU)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_real_gpu_oom_then_next_cell_runs():
    cuda = torch.device("cuda")
    small = AttentionCell("eager", 64, 1024)
    assert run_cell(small, cuda, 0, 2).status == OK  # library workspaces (cuBLAS) now allocated
    baseline = torch.cuda.memory_allocated()
    free, total = torch.cuda.mem_get_info()
    seq = int((2 * total / 4 / 8) ** 0.5)  # one fp32 score tensor twice the card
    results = run_grid([AttentionCell("eager", 64, seq), small], cuda, 0, 2, progress=None)
    assert [r.status for r in results] == [OOM, OK]
    assert "out of memory" in results[0].error.lower()
    assert torch.cuda.memory_allocated() <= baseline


def test_a_sample_is_the_median_step_of_a_burst_sized_by_the_protocol():
    r = Runnable(CPU, lambda s: None)
    r.protocol = measure.Protocol(burst_s=0.02, min_burst=3, max_burst=50)
    seen = []

    def fake_timed_steps(n):
        seen.append(n)
        return [1.0] + [1e-3] * (n - 1)  # an outlier (e.g. the step that began on an idle GPU)

    r.timed_steps = fake_timed_steps
    assert r.sample() == pytest.approx(1e-3) and seen == [3]  # nothing known yet: min_burst
    assert seen[-1] == 3
    r.sample()
    assert seen[-1] == 20  # 20 ms of 1 ms steps
    r.last = 1e-6
    r.sample()
    assert seen[-1] == 50  # capped
    r.last = 0.5
    r.sample()
    assert seen[-1] == 3  # long steps: min_burst
    single = Runnable(CPU, lambda s: None)
    single.protocol = measure.Protocol.warmup_study(0)
    single.last = 1e-6
    assert single.burst_size() == 1


def test_the_gpu_hold_covers_the_launch_within_its_bounds():
    r = Runnable(CPU, lambda s: None)
    r.protocol = measure.Protocol.for_device(torch.device("cuda"))
    p = r.protocol
    assert p.hold_factor > 1
    assert r.hold_seconds() == p.hold_max_s  # launch not yet measured: the longest hold
    r.launch = 100e-6
    assert r.hold_seconds() == pytest.approx(p.hold_factor * 100e-6)  # covers the launch
    r.launch = 1e-7
    assert r.hold_seconds() == p.hold_min_s
    r.launch = 0.04  # a host-bound step: not held for its whole launch
    assert r.hold_seconds() == p.hold_max_s
    r.protocol = measure.Protocol.for_device(CPU)
    assert r.hold_seconds() == 0.0
    # cycles for torch.cuda._sleep: at least the hold on a GPU clocked at up to 2 GHz
    assert int(p.hold_max_s * measure.HOLD_CLOCK_HZ) >= p.hold_max_s * 1.98e9


def test_warmup_study_protocol_times_exactly_the_steps_after_the_warmup():
    calls = []
    cell = FakeCell(step=lambda s: calls.append(time.sleep(0.001)))
    for warmup in (0, 1, 5):
        calls.clear()
        r = run_cell(cell, CPU, warmup=warmup, steps=4)
        # no memory step, no burst in between: the first sample is step warmup + 1
        assert r.status == OK and r.stats.n == 4 and len(calls) == warmup + 4
        assert r.protocol["burst_s"] == 0 and r.protocol["version"] == measure.PROTOCOL_VERSION


def test_device_protocol_warms_up_for_its_time_then_meters_one_step():
    calls = []
    cell = FakeCell(step=lambda s: calls.append(time.sleep(0.002)))
    protocol = measure.Protocol(warmup_steps=1, warmup_s=0.05, burst_s=0.0, samples=3)
    r = run_cell(cell, CPU, protocol=protocol)
    assert r.status == OK and r.warmup >= 0.05 / 0.003 - 2 and r.warmup_s >= 0.05
    assert len(calls) == r.warmup + 1 + 3  # warm-up, the metered step, the samples
    assert r.peak_bytes is not None


def test_a_sample_that_waited_for_the_cpu_is_retaken_then_the_machine_is_called_busy(monkeypatch):
    clock = {"queue": 0.0, "steal": 0.0}
    monkeypatch.setattr(measure, "run_queue_seconds", lambda: clock["queue"])

    def step(_):
        time.sleep(0.002)
        clock["queue"] += clock["steal"]  # another process held the core for this long

    r = Runnable(CPU, step)
    r.protocol = measure.Protocol(burst_s=0.0)
    clock["steal"] = 0.0
    assert r.sample() >= 0.002 and r.disturbed == 0
    clock["steal"] = 0.01  # every burst disturbed
    with pytest.raises(measure.MachineBusy, match="too busy"):
        for _ in range(5):
            r.sample()
    # a single disturbed burst is simply taken again
    r2 = Runnable(CPU, step)
    r2.protocol = measure.Protocol(burst_s=0.0)
    bursts = []
    orig = r2._burst

    def once_disturbed():
        bursts.append(1)
        clock["steal"] = 0.01 if len(bursts) == 1 else 0.0
        return orig()

    r2._burst = once_disturbed
    r2.sample()
    assert len(bursts) == 2 and r2.disturbed == 0


def test_sleeping_is_not_waiting_for_the_cpu(monkeypatch):
    # code that starts to block must read as slower, never as a busy machine
    if REAL_RUN_QUEUE() is None:
        pytest.skip("this kernel does not report run-queue time")
    monkeypatch.setattr(measure, "run_queue_seconds", REAL_RUN_QUEUE)
    r = Runnable(CPU, lambda s: time.sleep(0.02))
    r.protocol = measure.Protocol(burst_s=0.0)
    for _ in range(3):
        assert r.sample() >= 0.02
    assert r.disturbed == 0


def test_cpu_cells_run_on_the_recorded_number_of_threads(monkeypatch):
    monkeypatch.setenv("PERFMODEL_CPU_THREADS", "1")
    r = run_cell(AttentionCell("sdpa", 16, 64), CPU, steps=2)
    assert torch.get_num_threads() == 1 and r.env["threads"] == 1
    monkeypatch.setenv("PERFMODEL_CPU_THREADS", "zero")
    with pytest.raises(UserError, match="PERFMODEL_CPU_THREADS"):
        cpu.cpu_threads()


def test_host_bound_needs_issue_backlog_and_a_head_start():
    """Host-bound: issued in most of the step, little device work left once issued, and the
    step faster when the host had queued it first. A long step that filled the launch queue
    (2.7B fp32 fwd_bwd on the H200: issue 1631 of 2075 ms, 446 ms queued) is not; a train step
    whose queued tail is short optimizer kernels (backlog 45 of 2150 ms) is in doubt until its
    head-start step shows the device busy throughout; a doubtful step without it is unknown."""
    from perfmodel.names import (BACKLOG_SHARE, HOST_BOUND_SHARE, WAIT_SHARE, host_bound,
                                 in_doubt)

    assert host_bound(2.075, 1.631, 0.446) is False and not in_doubt(2.075, 1.631, 0.446)
    assert in_doubt(2.150, 2.105, 0.045)
    assert host_bound(2.150, 2.105, 0.045) is None            # not told without the free step
    assert host_bound(2.150, 2.105, 0.045, 2.140) is False    # the device was busy throughout
    assert host_bound(0.0100, 0.0106, 0.0002, 0.0041) is True  # small fwd: 2.4x with a head start
    step = 1.0
    assert host_bound(step, 0.5 * step, None) is False and not in_doubt(step, 0.5, 0.0)
    assert host_bound(step, HOST_BOUND_SHARE * step, BACKLOG_SHARE * step) is False
    assert host_bound(step, HOST_BOUND_SHARE * step, 0.0, step / WAIT_SHARE) is True
    assert host_bound(step, HOST_BOUND_SHARE * step, 0.0, step / WAIT_SHARE * 1.01) is False
    assert host_bound(step, HOST_BOUND_SHARE * step * 0.99, 0.0, 0.1) is False
    assert host_bound(None, 0.1, 0.0) is None and host_bound(step, None, 0.0) is None
    assert host_bound(float("nan"), 0.1, 0.0) is None
    assert not in_doubt(step, 0.9, None) and not in_doubt(None, 0.9, 0.0)


class _PassedEvent:
    """A CUDA event stand-in: whether the device has passed it, and its clock in ms."""

    def __init__(self, passed: bool, ms: float):
        self.passed, self.ms = passed, ms

    def query(self):
        return self.passed

    def elapsed_time(self, other):
        return other.ms - self.ms


def test_a_head_start_that_did_not_take_can_convict_but_not_clear(monkeypatch):
    """The head-start step counts as the device's own time only when the host had queued the
    whole step before the device reached it; when the device was already past the step's start
    as the host finished (a step of more launches than the launch queue holds), its time is kept
    only to show a host-bound step (flash_torch float32 d16 s4096 forward on two H100 boxes:
    step 546 and 283 ms, "free" 540 and 279, the host's pace both times)."""
    from perfmodel.names import PARTIAL_WAIT_SHARE, host_bound, kept_free

    assert kept_free(0.546, 0.540, took=True) == 0.540
    assert kept_free(0.546, 0.540, took=False) is None
    assert host_bound(0.546, 0.571, 0.0001, kept_free(0.546, 0.540, False)) is None
    assert kept_free(0.030, 0.012, took=False) == 0.012          # faster even so: host-bound
    assert kept_free(1.0, 1.0 / PARTIAL_WAIT_SHARE * 1.01, took=False) is None
    assert kept_free(0.03, None, took=False) is None
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *_: None)
    for passed in (False, True):
        r = Runnable(CPU, lambda _: None)
        monkeypatch.setattr(r, "_queue_step", lambda hold, p=passed: (
            (_PassedEvent(p, 0.0), _PassedEvent(True, 250.0), 0.0), 0.3))
        assert r.free_step(0.3) == pytest.approx(0.25) and r.free_took is (not passed)


def test_backlog_is_recorded_on_a_gpu_only():
    from perfmodel.workloads import AttentionCell

    opened = measure.open_cell(AttentionCell("eager", 16, 64, batch=1), torch.device("cpu"))
    assert opened.status == "OK" and opened.backlog_s is None
    assert opened.runnable.backlog is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_host_bound_on_a_gpu_for_steps_whose_answer_is_known():
    """300 tiny kernels (the host paces the device), one 20 ms kernel (the device works alone),
    3000 kernels of 50 us (the launch queue fills: the host blocks and issues for the whole step,
    yet the device never waits), and those followed by 1500 tiny kernels (a train step's tail of
    short kernels: little work is left queued, and with 4500 launches the head start cannot take
    either: the device runs no faster with it, and such a step is not told)."""
    import statistics

    from perfmodel.names import host_bound, in_doubt, kept_free

    dev = torch.device("cuda")
    x = torch.zeros(1, device=dev)
    cycles = int(measure.HOLD_CLOCK_HZ * 50e-6)

    def verdict(step):
        r = Runnable(dev, step, flush_l2=False)
        r.timed_steps(2)
        step_s = statistics.median(r.timed_steps(3))
        issue, backlog = r.launch, r.backlog
        free = r.free_step(issue) if in_doubt(step_s, issue, backlog) else None
        print(f"step {step_s * 1e3:.3f} ms, issue {issue * 1e3:.3f} ms, backlog "
              f"{backlog * 1e3:.3f} ms, free {free and free * 1e3} (head start took: "
              f"{r.free_took})")  # pytest -s: for the notes
        free = None if free is None else kept_free(step_s, free, r.free_took)
        return host_bound(step_s, issue, backlog, free)

    def queued(_):
        for _ in range(3000):
            torch.cuda._sleep(cycles)

    def queued_then_tail(_):
        queued(_)
        for _ in range(1500):
            x.add_(1)

    assert verdict(lambda _: [x.add_(1) for _ in range(300)]) is True
    assert verdict(lambda _: torch.cuda._sleep(int(measure.HOLD_CLOCK_HZ * 0.02))) is False
    assert verdict(queued) is False
    # more launches than the queue holds: its head start cannot take, and the step (the device
    # busy throughout) ran no faster with it: not told
    assert verdict(queued_then_tail) is None


def _spin(seconds: float) -> None:
    """Busy for at least ``seconds`` of the host's clock (the host is the device on a CPU)."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def _marked_step(marks, counter, spans=(0.004, 0.008, 0.002)):
    """A step with three marks inside, each span busy for at least its seconds: start, A, mark,
    B, mark, C, mark, end (the model's train step: forward, backward, optimizer)."""
    def step(_):
        counter.append(1)
        _spin(spans[0])
        marks.mark()
        _spin(spans[1])
        marks.mark()
        _spin(spans[2])
        marks.mark()
    return step


TRAIN = {"bwd": (1, 2), "fwd_bwd": (0, 2), "train": (0, 4)}


def test_one_burst_of_a_marked_step_times_every_part():
    """The parts of a split train step come from the steps of one burst (counted), each part the
    span between its points: backward (B) is shorter than forward+backward (A + B) by at least
    A, and the train part is the whole step as timed."""
    marks, counter = measure.Marks(CPU), []
    r = Runnable(CPU, _marked_step(marks, counter), marks=marks, parts=TRAIN, report="bwd")
    r.protocol = measure.Protocol(burst_s=0.05, min_burst=3, max_burst=50)
    seconds = r.sample()
    n = len(counter)
    assert n == 3  # nothing known yet: min_burst, and no step beyond the burst
    assert seconds == r.parts_sample["bwd"] == statistics.median(r.parts_times["bwd"])
    for i in range(n):
        bwd, fwd_bwd, train = (r.parts_times[p][i] for p in ("bwd", "fwd_bwd", "train"))
        assert bwd >= 0.008 and fwd_bwd >= bwd + 0.004 and train >= fwd_bwd + 0.002
    # the next burst is sized by the whole step (at least 14 ms), not by the reported part
    expect = r.burst_size()
    assert r.whole >= 0.014 and expect == math.ceil(0.05 / r.whole)
    r.sample()
    assert len(counter) == n + expect
    assert r.parts_first["train"][0] == r.parts_times["train"][0]


def test_a_step_that_marks_unevenly_is_an_error_not_a_number():
    marks = measure.Marks(CPU)
    steps = []

    def step(_):
        steps.append(1)
        for _ in range(1 + len(steps) % 2):  # one mark, then two
            marks.mark()
    r = Runnable(CPU, step, marks=marks, parts={"a": (0, 1)}, report="a")
    with pytest.raises(RuntimeError, match="marks"):
        r.timed_steps(2)
    with pytest.raises(ValueError):
        Runnable(CPU, step, marks=marks, parts={"a": (0, 1)}, report="b")


def test_a_split_model_cell_reports_its_mode_from_the_train_steps_parts():
    """A split cell of each mode runs the train step (its optimizer's state exists) and reports
    its own part; forward alone cannot be split."""
    for mode in ("bwd", "fwd_bwd", "train"):
        opened = measure.open_cell(ModelCell("nano", 32, batch=1, mode=mode, split=True), CPU)
        r = opened.runnable
        assert opened.status == OK and set(r.parts) == {"bwd", "fwd_bwd", "train"}
        assert r.sample() == r.parts_sample[mode]
        assert r.parts_sample["bwd"] < r.parts_sample["fwd_bwd"] < r.parts_sample["train"]
        r.release()
    with pytest.raises(UserError, match="bwd, fwd_bwd, train"):
        ModelCell("nano", 32, mode="fwd", split=True).validate()
    assert (ModelCell("nano", 1024, mode="fwd_bwd", split=True).estimate_bytes()
            == ModelCell("nano", 1024, mode="train").estimate_bytes())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_marked_step_on_a_gpu_times_and_issues_each_part():
    """On a GPU the parts are CUDA events: kernels of 4, then 8, then 2 units (clock cycles of
    about a millisecond), each part in proportion to its kernels within 10%; every part has an
    issue time, and the head-start step gives each part's device time too."""
    dev = torch.device("cuda")
    marks = measure.Marks(dev)

    def step(_):
        for seconds in (0.004, 0.008, 0.002):
            torch.cuda._sleep(int(seconds * measure.HOLD_CLOCK_HZ * 0.99))
            marks.mark()
    r = Runnable(dev, step, flush_l2=False, marks=marks, parts=TRAIN, report="bwd")
    r.timed_steps(2)
    r.sample()
    part = r.parts_sample
    unit = (part["fwd_bwd"] - part["bwd"]) / 4  # the first kernel's time, per unit
    assert part["bwd"] == pytest.approx(8 * unit, rel=0.1)
    assert part["train"] == pytest.approx(14 * unit, rel=0.1)
    assert all(r.parts_issue[p] and min(r.parts_issue[p]) >= 0 for p in TRAIN)
    free = r.free_step(r.issued)
    assert free == r.parts_free["bwd"] and r.parts_free["train"] > r.parts_free["fwd_bwd"] > free
