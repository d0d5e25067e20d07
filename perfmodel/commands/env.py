"""``perfmodel env``: what a number depends on besides the code, on this machine."""
from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser("env", help="print what results depend on: device, driver, CUDA, torch, "
                                   "triton",
                       description="Print what a number depends on besides the code: device, "
                       "driver, CUDA, torch, triton, the TF32 setting and the CPU threads.")
    p.set_defaults(func=main)


def main(args) -> int:
    from ..machine import environment, resolve_device  # noqa: PLC0415

    for k, v in environment(resolve_device("auto")).items():
        print(f"{k}: {v}")
    return 0
