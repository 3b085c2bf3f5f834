"""``resnet-bench data describe|preview``: what a data source holds, as training would see it."""

from __future__ import annotations

import json

from .. import inputs, quiet

NAME = "data"
LOADS_TENSORFLOW = False  # only once the source has been checked


def add_parser(sub) -> None:
    d = sub.add_parser(NAME, help="describe or preview a data source")
    dsub = d.add_subparsers(dest="data_command", required=True)
    for name in ("describe", "preview"):
        x = dsub.add_parser(name)
        x.add_argument("source", help="synthetic, a photo folder, a CIFAR-10 folder/archive or an .npz/.h5 file")
        x.add_argument("--image-size", type=inputs.positive_int, default=32)
        x.add_argument("--set", action="append", default=[], metavar="data.KEY=VALUE")
        if name == "describe":
            x.add_argument("--json", action="store_true")
        else:
            x.add_argument("--out", required=True, help="PNG file")
    d.set_defaults(command_main=main)


def main(args) -> int:
    from .. import config

    raw = {
        "name": "data",
        "data": {
            "source": config.guess_source(args.source) if args.source != "synthetic" else "synthetic",
            "image_size": args.image_size,
        },
    }
    if args.source != "synthetic":
        raw["data"]["path"] = args.source
    cfg = config.apply_overrides(raw, args.set, "data")
    cfg = config.from_dict(cfg, "command line")
    config.check_data_path(cfg)
    if args.data_command == "preview":
        inputs.output_path(args.out, "--out")
    quiet.load_tensorflow()
    from .. import data

    arrays = data.load(cfg.data)
    if args.data_command == "preview":
        data.preview(arrays, args.out)
        print(f"wrote {args.out}")
        return 0
    info = data.describe(arrays)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"source {info['source']}  image size {info['image_size']}  hash {info['hash']}")
    note = data.files_note(arrays)
    if note:
        print(note)
    print(f"classes ({len(info['classes'])}): {', '.join(info['classes'])}")
    for split, counts in info["counts"].items():
        print(f"{split:<6} {sum(counts.values()):>7} images: " + ", ".join(f"{c} {n}" for c, n in counts.items()))
    if info["ignored"]:
        print(f"ignored {info['ignored']} non-image file(s)")
    summary = data.skipped_summary(arrays)
    if summary:
        print(summary)
    return 0
