"""A cell's outcome, said once: its names (CLI tables, report) and its asv codes (track_status_*).

Codes grow with badness, so a cell that starts to run out of memory reads as a regression in asv
(1 -> 2) like a slower time does. A cell that does not apply is NaN in asv, never a code.
"""
OK, OOM, FAILED, NA = "OK", "OOM", "failed", "n/a"

CODES = {OK: 1.0, OOM: 2.0, FAILED: 3.0}
NAMES = {code: name for name, code in CODES.items()}

# Not an outcome of the cell but of the machine: other processes took too much of the CPU for
# its samples to mean anything (perfmodel.measure.MachineBusy). Never an asv code.
BUSY = "busy"
