"""perfmodel gate's reading of asv's comparison table and its choice of cells to confirm (no
timing here: the gate's behaviour on real runs is in notes/gate.md)."""
from perfmodel.gate import parse_table, to_confirm

TABLE = """
| Change   | Before [abe72fe3] <main~1>   | After [edbddb92] <main>   | Ratio   | Benchmark (Parameter)                                        |
|----------|------------------------------|---------------------------|---------|--------------------------------------------------------------|
| +        | 30.5±1ms                     | 40.3±2ms                  | 1.32    | bench_attention.Attention.time_forward('eager', 'float32', 64, 1024) |
| -        | 11.3±1ms                     | 8.82±0.6ms                | 0.78    | bench_model.Model.time_forward('nano', 128, 'fp32', 'eager') |
|          | 20.1±1ms                     | 22.6±1ms                  | ~1.12   | bench_model.Model.time_forward('nano', 256, 'fp32', 'sdpa')  |
|          | 7.00±0.1ms                   | 7.21±0.1ms                | 1.03    | bench_model.Model.time_forward('nano', 128, 'fp32', 'sdpa')  |
|          | 1.0                          | 1.0                       | 1.00    | bench_model.Model.track_status_forward('nano', 128, 'fp32', 'sdpa') |
| +        | 1.0                          | 2.0                       | 2.00    | bench_model.Model.track_status_train_step('tiny', 256, 'fp32', 'sdpa') |
|          | n/a                          | n/a                       | n/a     | bench_attention.Attention.time_forward('flash', 'float32', 64, 1024) |
| x        | 5.00±0.1ms                   | failed                    | n/a     | bench_attention.Attention.time_backward('eager', 'float32', 16, 256) |
"""


def test_every_row_of_asvs_table_is_read_with_its_mark_and_ratio():
    t = parse_table("asv noise before\n" + TABLE + "\nBENCHMARKS NOT SIGNIFICANTLY CHANGED.\n")
    assert len(t) == 8
    assert t["bench_attention.Attention.time_forward('eager', 'float32', 64, 1024)"] == ("+", 1.32)
    assert t["bench_model.Model.time_forward('nano', 256, 'fp32', 'sdpa')"] == ("", 1.12)
    assert t["bench_attention.Attention.time_forward('flash', 'float32', 64, 1024)"] == ("", None)
    assert t["bench_attention.Attention.time_backward('eager', 'float32', 16, 256)"][0] == "x"


def test_moved_time_cells_and_every_flag_are_confirmed_nothing_else():
    again = to_confirm(parse_table(TABLE), 1.1)
    assert again == sorted([
        "bench_attention.Attention.time_forward('eager', 'float32', 64, 1024)",  # slower
        "bench_model.Model.time_forward('nano', 128, 'fp32', 'eager')",  # faster
        "bench_model.Model.time_forward('nano', 256, 'fp32', 'sdpa')",  # moved, not significant
        "bench_model.Model.track_status_train_step('tiny', 256, 'fp32', 'sdpa')",  # OK -> OOM
        "bench_attention.Attention.time_backward('eager', 'float32', 16, 256)",  # failed
    ])
    assert to_confirm(parse_table(TABLE), 1.2) == sorted(set(again) - {
        "bench_model.Model.time_forward('nano', 256, 'fp32', 'sdpa')"})


def test_a_bad_gate_setting_is_one_line_naming_what_is_valid(capsys):
    from perfmodel.cli import main

    assert main(["gate", "main", "HEAD", "--screen", "1.5", "--factor", "1.2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "1 < --screen <= --factor" in err
    assert main(["gate", "main", "HEAD", "--rounds", "1"]) == 2
    assert "--rounds must be at least 3" in capsys.readouterr().err
