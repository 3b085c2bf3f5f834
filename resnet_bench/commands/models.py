"""``resnet-bench models``: architectures with parameter counts and MACs."""

from __future__ import annotations

import json

from .. import inputs
from ..errors import UserError
from ..spec import FAMILIES, FLAVOURS, SHORTCUTS

NAME = "models"
LOADS_TENSORFLOW = True


def add_parser(sub) -> None:
    m = sub.add_parser(NAME, help="list architectures with parameter counts and MACs")
    m.add_argument("--model", action="append", help="e.g. resnet50, plain56 (repeatable)")
    m.add_argument("--image-size", type=inputs.positive_int, default=224)
    m.add_argument("--classes", type=inputs.positive_int, default=1000)
    m.add_argument("--shortcut", choices=SHORTCUTS)
    m.add_argument("--flavour", choices=FLAVOURS)
    m.add_argument("--family", choices=FAMILIES)
    m.add_argument("--binary", action="store_true", help="one sigmoid unit for 2 classes")
    m.add_argument("--json", action="store_true")
    m.set_defaults(command_main=main)


def main(args) -> int:
    from ..models import describe, registry
    from ..spec import ModelSpec, parse_model_name

    options = {"family": args.family, "shortcut": args.shortcut, "flavour": args.flavour}
    try:
        if args.model:
            specs = []
            for name in args.model:
                spec = parse_model_name(name, **{k: v for k, v in options.items() if v})
                specs += [spec, spec.twin()] if spec.residual else [spec]
        else:
            specs = registry(args.flavour or "paper")
            if args.shortcut and args.shortcut != "none":
                specs = [ModelSpec(**{**s.__dict__, "shortcut": args.shortcut}) if s.residual else s for s in specs]
        binary = args.classes == 2 and (args.flavour == "article" or args.binary)
        shape = (args.image_size, args.image_size, 3)
        rows = [describe(s, shape, args.classes, binary) for s in dict.fromkeys(specs)]
    except ValueError as e:
        raise UserError(str(e)) from None
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(f"{'name':<18}{'depth':>6}{'shortcut':>9}{'flavour':>9}{'params':>13}{'trainable':>13}{'GMACs':>9}")
        for r in rows:
            print(
                f"{r['name']:<18}{r['depth']:>6}{r['shortcut']:>9}{r['flavour']:>9}"
                f"{r['params_total']:>13,}{r['params_trainable']:>13,}{r['macs'] / 1e9:>9.3f}"
            )
    return 0
