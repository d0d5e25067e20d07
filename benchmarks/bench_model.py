"""The Transformer LM: perfmodel.workloads.ModelCell (batch 4, vocabulary 10,000, TF32 off)."""
from .common import (MODEL_VARIANTS, NAN, STATUS_CODE, SkipNotImplemented, SuiteBase, as_value,
                     check_model, check_warmup, device_type, handle, run_cell_cached,
                     timing_attrs)

MODES = {"forward": "fwd", "backward": "bwd", "forward_backward": "fwd_bwd", "train_step": "train"}


class Model(SuiteBase):
    """preset x context x precision x variant; forward, backward, forward+backward, train step."""

    params = (["nano", "tiny", "small", "medium", "large", "xl", "2.7B"],
              [128, 256, 512, 1024],
              ["fp32", "bf16"],
              ["eager", "sdpa", "compiled"])
    param_names = ["preset", "context", "precision", "variant"]

    def setup(self, preset, context, precision, variant):
        device = device_type()
        check_model(preset, context, precision, variant, device)
        attention, compile_ = MODEL_VARIANTS[variant]
        cell = dict(preset=preset, context=context, precision=precision, attention=attention,
                    compile=compile_, tf32=False)
        self.cells = {name: handle("ModelCell", dict(cell, mode=mode), device)
                      for name, mode in MODES.items()}
        timing_attrs(self, device, heavy=preset in ("large", "xl", "2.7B"))

    def time_forward(self, *_):
        self.cells["forward"].run.timed_step()

    def time_backward(self, *_):
        self.cells["backward"].run.timed_step()

    def time_forward_backward(self, *_):
        self.cells["forward_backward"].run.timed_step()

    def time_train_step(self, *_):
        self.cells["train_step"].run.timed_step()

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
        return self.cells["forward_backward"].bytes("before_backward_bytes")

    def peakmem_train_step(self, *_):
        self.cells["train_step"].host_step()

    track_status_forward.unit = track_status_backward.unit = "status"
    track_status_forward_backward.unit = track_status_train_step.unit = "status"
    track_gpu_peak_bytes_forward.unit = track_gpu_peak_bytes_train_step.unit = "bytes"
    track_before_backward_bytes.unit = "bytes"


class Warmup(SuiteBase):
    """The seeds' warm-up study: per-step mean and std of 10 steps after 0, 1 or 5 warm-up
    steps, each cell in a fresh process (perfmodel.measure.run_cell)."""

    params = (["nano", "small", "large"], [128, 1024], ["fwd", "fwd_bwd"], [0, 1, 5])
    param_names = ["preset", "context", "mode", "warmup"]
    steps = 10

    def setup(self, preset, context, mode, warmup):
        self.device = device_type()
        check_warmup(preset, context, self.device)
        self.fields = dict(preset=preset, context=context, mode=mode, precision="fp32",
                           attention="sdpa", compile=False, tf32=False)
        self.warmup = warmup

    def _result(self):
        return run_cell_cached(self.fields, self.device, self.warmup, self.steps)

    def _stat(self, key):
        result = self._result()
        if result["status"] != "OK":
            raise SkipNotImplemented(result["status"])
        return as_value(result[key])

    def track_status(self, *_):
        return STATUS_CODE.get(self._result()["status"], NAN)

    def track_step_mean(self, *_):
        return self._stat("mean")

    def track_step_std(self, *_):
        return self._stat("std")

    track_status.unit = "status"
    track_step_mean.unit = track_step_std.unit = "seconds"
