"""``resnet-bench gpu-check``: the GPU path proven by one prepared command (:mod:`resnet_bench.gpu_check`)."""

from __future__ import annotations

from pathlib import Path

NAME = "gpu-check"
LOADS_TENSORFLOW = True


def add_parser(sub) -> None:
    g = sub.add_parser(NAME, help="prove the GPU path: correctness, throughput, the paper's recipe")
    g.add_argument("--out", default="reports/gpu.md", help="Markdown report (a JSON is written beside it)")
    g.add_argument("--cpu-sizes", action="store_true", help="toy sizes even on a GPU (a quick smoke run)")
    g.set_defaults(command_main=main)


def main(args) -> int:
    """Exit 1 when the GPU correctness check fails; toy-size runs (no GPU) always exit 0."""
    from ..gpu_check import run, to_markdown

    result = run(Path(args.out), force_cpu_sizes=args.cpu_sizes)
    print(to_markdown(result))
    print(f"wrote {args.out} and {Path(args.out).with_suffix('.json')}")
    return 0 if result["correctness"]["passed"] or not result["gpu"] else 1
