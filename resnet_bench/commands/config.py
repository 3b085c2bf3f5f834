"""``resnet-bench config``: an experiment as it resolves, or the reference of every field."""

from __future__ import annotations

from pathlib import Path

from .. import inputs
from ..errors import UserError

NAME = "config"
LOADS_TENSORFLOW = False
STOPPED = "nothing was written"  # what an interrupt leaves (the CLI's one line)


def add_parser(sub) -> None:
    c = sub.add_parser(NAME, help="print an experiment with every default filled in, or the field reference")
    what = c.add_mutually_exclusive_group(required=True)
    what.add_argument("experiment", nargs="?", help="experiment file: print it resolved, as TOML")
    what.add_argument("--markdown", action="store_true", help="print the reference of every field (docs/config.md)")
    c.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override a config field")
    c.add_argument("--data", help="data path, as given to run")
    c.add_argument("--into", metavar="PAGE", help="with --markdown: replace the reference block of this page")
    c.set_defaults(command_main=main)


def main(args) -> int:
    from .. import config, reference

    if not args.markdown:
        if args.into:
            raise UserError("--into goes with --markdown")
        print(config.to_toml(config.load(args.experiment, args.set, args.data)), end="")
        return 0
    text = reference.markdown()
    if not args.into:
        print(text, end="")
        return 0
    page = Path(args.into)
    old = inputs.read_text(page, "page")
    block = reference.generated_part(old)
    if block is None:
        raise UserError(f"{page}: no reference block (the lines {reference.BEGIN!r} ... {reference.END!r})")
    page.write_text(old.replace(block, text))
    print(f"{page}: reference block rewritten")
    return 0
