"""``resnet-bench data describe|preview|clear-cache``: what a data source holds, as training
would see it, and the data cache (decoded photo folders, generated sets) removed."""

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
    dsub.add_parser(
        "clear-cache", help="remove the data cache: decoded photo folders and generated sets (made again when needed)"
    )
    d.set_defaults(command_main=main)


def clear_cache() -> int:
    """Remove everything in the data cache folder; what a later run needs is made again."""
    import shutil

    from ..data.cache import cache_dir

    folder = cache_dir()
    entries = sorted(folder.iterdir())
    size = sum(f.stat().st_size for e in entries for f in ([e] if e.is_file() else e.rglob("*")) if f.is_file())
    for e in entries:
        shutil.rmtree(e) if e.is_dir() and not e.is_symlink() else e.unlink()
    print(f"removed {len(entries)} item(s), {size / 1e6:,.1f} MB, from the data cache {folder}")
    return 0


def main(args) -> int:
    from .. import config

    if args.data_command == "clear-cache":
        return clear_cache()
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
        print(json.dumps({**info, "store": arrays.store}, indent=2))
        return 0
    print(f"source {info['source']}  image size {info['image_size']}  hash {info['hash']}")
    if arrays.store:
        print(f"decoded store {arrays.store} (resnet-bench data clear-cache removes the data cache)")
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
