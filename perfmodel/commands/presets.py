"""``perfmodel presets``: the model presets, their sizes and exact parameter counts."""
from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser("presets", help="list the model presets and their parameter counts",
                       description="List the model presets: sizes and exact parameter counts.")
    p.set_defaults(func=main)


def main(args) -> int:
    from ..model import PRESETS, count_params  # noqa: PLC0415
    from ..tables import markdown  # noqa: PLC0415

    print(markdown(["preset", "d_model", "d_ff", "n_layers", "n_heads", "params"],
                   [[n, c.d_model, c.d_ff, c.n_layers, c.n_heads, count_params(c)]
                    for n, c in PRESETS.items()]))
    return 0
