"""The Transformer LM: perfmodel.workloads.ModelCell (batch 4, vocabulary 10,000, TF32 off)."""
from . import tiers
from .common import SuiteBase, facts, handle, modes, split_lines, timing_attrs

STUDY_STEPS = 10  # the warm-up study's timed single steps (the seeds' Avg/Step over 10)


def _modes(grid_cell: dict, device: str) -> dict:
    """A grid point's cells, by mode: forward, backward, forward+backward, train step (the
    middle two as parts of the train step where tiers.SPLIT_TRAIN_STEP says)."""
    attention, compile_ = tiers.MODEL_VARIANTS[grid_cell["variant"]]
    cell = dict(preset=grid_cell["preset"], context=grid_cell["context"],
                precision=grid_cell["precision"], attention=attention, compile=compile_, tf32=False)
    split = {"split": True} if tiers.SPLIT_TRAIN_STEP else {}
    return {name: handle("ModelCell", dict(cell, mode=mode,
                                           **(split if mode in tiers.SPLIT_MODES else {})), device)
            for name, mode in modes().items()}


class Model(SuiteBase):
    """preset x context x precision x variant; forward, backward, forward+backward, train step."""

    params = tiers.params("Model")
    param_names = tiers.param_names("Model")

    def setup(self, preset, context, precision, variant):
        grid_cell = dict(preset=preset, context=context, precision=precision, variant=variant)
        device = self.enter("Model", grid_cell)
        self.cells = _modes(grid_cell, device)
        timing_attrs(self, device, "Model", grid_cell, handles=list(self.cells.values()),
                     handles_of=lambda point: list(_modes(point, device).values()))

    def time_forward(self, *_):
        self.cells["forward"].sample()

    def time_backward(self, *_):
        self.cells["backward"].sample()

    def time_forward_backward(self, *_):
        self.cells["forward_backward"].sample()

    def time_train_step(self, *_):
        self.cells["train_step"].sample()

    def track_status_forward(self, *_):
        return self.cells["forward"].status()

    def track_status_backward(self, *_):
        return self.cells["backward"].status()

    def track_status_forward_backward(self, *_):
        return self.cells["forward_backward"].status()

    def track_status_train_step(self, *_):
        return self.cells["train_step"].status()

    def track_gpu_peak_bytes_forward(self, *_):
        return self.cells["forward"].bytes("peak_bytes", gpu_only=True)

    def track_gpu_peak_bytes_train_step(self, *_):
        return self.cells["train_step"].bytes("peak_bytes", gpu_only=True)

    def track_before_backward_bytes(self, *_):
        return self.cells["forward_backward"].bytes("before_backward_bytes", gpu_only=True)

    def track_issue_seconds_forward(self, *_):
        return self.cells["forward"].issue_seconds()

    def track_issue_seconds_backward(self, *_):
        return self.cells["backward"].issue_seconds()

    def track_issue_seconds_forward_backward(self, *_):
        return self.cells["forward_backward"].issue_seconds()

    def track_issue_seconds_train_step(self, *_):
        return self.cells["train_step"].issue_seconds()

    def track_backlog_seconds_forward(self, *_):
        return self.cells["forward"].backlog_seconds()

    def track_backlog_seconds_backward(self, *_):
        return self.cells["backward"].backlog_seconds()

    def track_backlog_seconds_forward_backward(self, *_):
        return self.cells["forward_backward"].backlog_seconds()

    def track_backlog_seconds_train_step(self, *_):
        return self.cells["train_step"].backlog_seconds()

    def track_free_seconds_forward(self, *_):
        return self.cells["forward"].free_seconds()

    def track_free_seconds_backward(self, *_):
        return self.cells["backward"].free_seconds()

    def track_free_seconds_forward_backward(self, *_):
        return self.cells["forward_backward"].free_seconds()

    def track_free_seconds_train_step(self, *_):
        return self.cells["train_step"].free_seconds()

    track_status_forward.unit = track_status_backward.unit = "status"
    track_status_forward_backward.unit = track_status_train_step.unit = "status"
    track_issue_seconds_forward.unit = track_issue_seconds_backward.unit = "seconds"
    track_issue_seconds_forward_backward.unit = track_issue_seconds_train_step.unit = "seconds"
    track_backlog_seconds_forward.unit = track_backlog_seconds_backward.unit = "seconds"
    track_backlog_seconds_forward_backward.unit = track_backlog_seconds_train_step.unit = "seconds"
    track_free_seconds_forward.unit = track_free_seconds_backward.unit = "seconds"
    track_free_seconds_forward_backward.unit = track_free_seconds_train_step.unit = "seconds"
    track_gpu_peak_bytes_forward.unit = track_gpu_peak_bytes_train_step.unit = "bytes"
    track_before_backward_bytes.unit = "bytes"
    facts(track_status_forward, track_status_backward, track_status_forward_backward,
          track_status_train_step, track_gpu_peak_bytes_forward, track_gpu_peak_bytes_train_step,
          track_before_backward_bytes, track_issue_seconds_forward, track_issue_seconds_backward,
          track_issue_seconds_forward_backward, track_issue_seconds_train_step,
          track_backlog_seconds_forward, track_backlog_seconds_backward,
          track_backlog_seconds_forward_backward, track_backlog_seconds_train_step,
          track_free_seconds_forward, track_free_seconds_backward,
          track_free_seconds_forward_backward, track_free_seconds_train_step)
    if tiers.SPLIT_TRAIN_STEP:  # the backward and forward+backward as parts of the train step
        split_lines(time_backward, time_forward_backward, track_status_backward,
                    track_status_forward_backward, track_before_backward_bytes,
                    track_issue_seconds_backward, track_issue_seconds_forward_backward,
                    track_backlog_seconds_backward, track_backlog_seconds_forward_backward,
                    track_free_seconds_backward, track_free_seconds_forward_backward)


class Warmup(SuiteBase):
    """The seeds' warm-up study: in a fresh process, ``warmup`` untimed steps, then 10 steps
    timed one by one (perfmodel.measure.Protocol.warmup_study). asv's recorded samples are those
    steps in order, so their mean and std are the seeds' Avg/Step and Std/Step, and the first w
    samples of warm-up 0 are what w warm-up steps cost (the seeds' Warmup(s)). In a history
    run the warm-ups of one (preset, context, mode) are windows of one fresh process's run of
    single steps (common.Group), which is what each fresh process would time."""

    params = tiers.params("Warmup")
    param_names = tiers.param_names("Warmup")
    rounds = 1  # the samples are one process's steps, in order
    repeat = (STUDY_STEPS, STUDY_STEPS, 600.0)

    def setup(self, preset, context, mode, warmup):
        device = self.enter("Warmup", dict(preset=preset, context=context, mode=mode,
                                           warmup=warmup))
        fields = dict(preset=preset, context=context, mode=mode, precision="fp32",
                      attention="sdpa", compile=False, tf32=False)
        self.cell = handle("ModelCell", fields, device, warmup=warmup)
        # in a history run the study's warm-ups are one fresh process's single steps: warm-up w
        # is steps w+1 .. w+10 of one run of max(w) + 10 (common.Group)
        warmups = sorted(tiers.GRID["Warmup"][1]["warmup"])
        study = [handle("ModelCell", fields, device, warmup=w) for w in warmups]
        timing_attrs(self, device, "Warmup", dict(preset=preset, context=context, mode=mode,
                                                   warmup=warmup), handles=study,
                     series=max(warmups) + STUDY_STEPS)
        self.repeat = (STUDY_STEPS, STUDY_STEPS, 600.0)  # the study's own: its single steps

    def time_step(self, *_):
        self.cell.sample()

    def track_status(self, *_):
        return self.cell.status()

    track_status.unit = "status"
    facts(track_status)
