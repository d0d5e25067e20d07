"""Names the suite, the measurement core and the report share, said once here.

Statuses of a cell, and the numbers the suite's ``track_status*`` benchmarks record for them
(asv keeps numbers only; larger is worse; a cell that does not apply records NaN, which asv and
the report show as n/a). MODES: the suite's method suffixes (``time_<suffix>``,
``track_status_<suffix>``) -> the short mode names of perfmodel.workloads and the tables.
"""
OK, OOM, FAILED = "OK", "OOM", "failed"
NA = "n/a"  # not run on this machine: outside its tier, not selected, or not in that commit
SKIPPED = NA  # the name older callers use
# Not an outcome of the cell but of the machine: other processes took too much of the CPU for
# its samples to mean anything (perfmodel.measure.MachineBusy). Never an asv code.
BUSY = "busy"

CODES = {OK: 1.0, OOM: 2.0, FAILED: 3.0}
STATUS_OF_CODE = {code: name for name, code in CODES.items()}

# A step is host-bound when the device waits on the host: the number then measures the host
# (Python, kernel launches), not the model. What is recorded on a GPU beside each step:
# - issue: the host's seconds to issue it. Under HOST_BOUND_SHARE of the step, the host had slack
#   and the step is not host-bound.
# - backlog: the device's seconds of work left once the host had issued it (the final
#   synchronize's wait). BACKLOG_SHARE of a step or more, the device still had a queue: not
#   host-bound. The issue time alone over-marked: a step with more launches than the launch queue
#   holds (about 1024 on the H200) blocks its host until the device makes room, so its issue lasts
#   nearly as long as the step while the device never waits (412 of 608 H200 model steps marked at
#   337beebc, 2.7B fp32 fwd_bwd among them: issue 1523 of 1923 ms, backlog 446 ms at c5c07cba).
# - free: only for a step those two leave in doubt (``in_doubt``), its device time when the host
#   had queued all of it first (perfmodel.measure.Runnable.free_step). Host-bound when the step as
#   sampled took at least WAIT_SHARE times that. The backlog alone cannot settle it: a train
#   step's tail is a burst of short optimizer kernels, so a queue of them is little work (2.7B fp32
#   train at ctx 1024: backlog 45 of 2150 ms, with the device busy throughout).
#   The head start takes only when the host queues the whole step while the stream is held; a
#   step of more launches than the queue holds blocks its host there, and the device starts on
#   a queue of about 1024 launches with the host still issuing. Such a free step can show a
#   host-bound step (faster with even that head start) but not clear one (``kept_free``): on two
#   H100 boxes (857a580, ce03f94) flash_torch float32 d16 s4096's forward read 546 and 283 ms,
#   its "free" steps 540 and 279, both the host's pace.
# A figure not recorded (results of a suite before it) leaves a doubtful step unknown (None).
# Here, not in perfmodel.measure, so the report can mark cells without importing torch.
HOST_BOUND_SHARE = 0.8
BACKLOG_SHARE = 0.1
WAIT_SHARE = 1.1
# A free step whose head start did not take is kept only when the step as sampled took this many
# times as long: it can only convict, and the margin over WAIT_SHARE keeps the report's verdict
# (from asv's median, not the first burst's) on the same side.
PARTIAL_WAIT_SHARE = 1.2

# The figures themselves: the suite records each as ``track_<figure>_seconds_<suffix>`` beside
# ``time_<suffix>`` (its side-file key ``<figure>_s``); the report reads them back by that name,
# and the gate's rule never judges them (diagnostics of the host, perfmodel.verdict).
HOST_FIGURES = ("issue", "backlog", "free")
HOST_FIGURE_METHOD = r"track_(%s)_seconds_(\w+)" % "|".join(HOST_FIGURES)


def host_figure_method(figure: str, suffix: str) -> str:
    """The suite's method recording ``figure`` (one of HOST_FIGURES) beside ``time_<suffix>``."""
    if figure not in HOST_FIGURES:
        raise ValueError(f"unknown host figure {figure!r}; valid: {', '.join(HOST_FIGURES)}")
    return f"track_{figure}_seconds_{suffix}"


def _known(x) -> bool:
    return x is not None and x == x


def in_doubt(step_s, issue_s, backlog_s) -> bool:
    """Whether the issue time and backlog leave a step possibly host-bound (worth a free step)."""
    return (bool(step_s) and _known(step_s) and _known(issue_s) and _known(backlog_s)
            and issue_s >= HOST_BOUND_SHARE * step_s and backlog_s < BACKLOG_SHARE * step_s)


def kept_free(step_s, free_s, took: bool):
    """The free step's time to record: as measured when its head start took (the host had queued
    the whole step before the device reached it), else only when it shows the step host-bound
    (the step as sampled at least PARTIAL_WAIT_SHARE times as long), else None (not told)."""
    if took or not _known(free_s) or not _known(step_s):
        return free_s
    return free_s if step_s >= PARTIAL_WAIT_SHARE * free_s else None


def with_body(own, body):
    """A train step's verdict joined with its forward+backward's (the split step's body): host-
    bound when either is, not when both are not, else unknown. Its own figures cannot clear a
    host-paced body: the optimizer's kernels come last and run long, so the step leaves the
    device a queue of work (its backlog) and its host idle for part of it (its issue time) while
    the device waited during the body (on two H100 boxes, 857a580 and ce03f94, 20 bf16 train
    steps read "not" from their backlog, 37-65 ms, and moved 0.61-1.17 between the boxes with
    their forward+backward's verdict unknown)."""
    told = [bool(v) for v in (own, body) if v is not None]  # numpy's booleans are not True
    return True if any(told) else (False if len(told) == 2 else None)


def host_bound(step_s: float | None, issue_s: float | None, backlog_s: float | None = None,
               free_s: float | None = None) -> bool | None:
    """Whether a step is host-bound (None when it cannot be told from what was recorded)."""
    if not step_s or not _known(step_s) or not _known(issue_s):
        return None
    if issue_s < HOST_BOUND_SHARE * step_s:
        return False
    if _known(backlog_s) and backlog_s >= BACKLOG_SHARE * step_s:
        return False
    if not _known(free_s) or free_s <= 0:
        return None
    return step_s >= WAIT_SHARE * free_s


MiB = 2**20  # the unit memory is shown in, in every table

MODES = {"forward": "fwd", "backward": "bwd", "forward_backward": "fwd_bwd", "train_step": "train"}
# A model mode timed as its part of one marked train step (perfmodel.workloads ModelCell ``split``)
# is filed by the suite under its benchmark's version + this (benchmarks/common.py says it too,
# for the older commits it runs against): the report reads from it how a mode was timed.
SPLIT_SUFFIX = "-split-train-step"

# The report's default commit (report/commits.widest): the newest whose results hold at least this
# share of the cells measured at the widest commit ("nearly as wide"), so that a GPU box's
# quick-tier commits do not leave the seed forms n/a; the CLI's help says it too.
WIDE_SHARE = 0.9

# Exit statuses of the perfmodel commands (README "Exit status"): perfmodel gate's 1 is a confirmed
# slowdown (asv continuous's own status), perfmodel report's 1 is results left out.
EXIT_CLEAN = 0
EXIT_LEFT_OUT = 1
EXIT_USAGE = 2      # a UserError: one line naming what to do
EXIT_INTERNAL = 3   # an exception the code did not foresee: a bug
