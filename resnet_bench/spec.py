"""Architectures as data: the depth table, the option names and :class:`ModelSpec`.

Free of Keras and TensorFlow, so that reading an experiment file (``config.py``), planning a
sweep or writing a report never loads a deep-learning framework; ``models.py`` turns a spec
into a network.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

from . import fields

# ImageNet-style depth table: depth -> (block kind, blocks per stage). Stage widths are the
# bottleneck's inner width (64, 128, 256, 512); a bottleneck block outputs 4x that.
IMAGENET_DEPTHS: dict[int, tuple[str, tuple[int, ...]]] = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}
IMAGENET_WIDTHS = (64, 128, 256, 512)
BOTTLENECK_EXPANSION = 4

# CIFAR-style family (He et al. section 4.2): depth 6n+2, three stages of n basic blocks with
# 16/32/64 filters (times width/16 when a narrower or wider net is asked for).
CIFAR_WIDTHS = (16, 32, 64)
CIFAR_EXAMPLE_DEPTHS = (20, 32, 44, 56, 110)

SHORTCUTS = ("A", "B", "C", "none")
FLAVOURS = ("paper", "article")
FAMILIES = ("imagenet", "cifar")
STEMS = ("auto", "imagenet", "small")
BOTTLENECK_STRIDES = ("v1", "v1.5")


@dataclass(frozen=True)
class ModelSpec:
    """One architecture: enough to build it, name it and log it.

    ``shortcut`` defaults to ``A`` because the paper's plain-versus-residual comparison
    (section 4.1-4.2) uses option A: identity shortcuts with zero-padded channels add no
    parameters, so a residual net and its plain twin have exactly the same weights and
    differ only in the additions. Any difference in how they train is then due to the
    shortcuts themselves, not to extra capacity.
    """

    depth: int
    shortcut: str = fields.choice(
        "A",
        SHORTCUTS,
        "A: identity, zero-padded where the shape changes; B: projection "
        "there; C: projection everywhere; none: the plain twin",
    )
    family: str = fields.choice(
        "auto",
        (*FAMILIES, "auto"),
        "cifar: He et al.'s 6n+2 nets (section 4.2); "
        "imagenet: ResNet-18 to 152; auto: imagenet for its depths, else cifar",
    )
    flavour: str = fields.choice(
        "paper",
        FLAVOURS,
        "paper: He et al.'s nets; article: the tutorial's four "
        "models, slips kept, to replay it (imagenet family, shortcut B or none)",
    )
    stem: str = fields.choice(
        "auto", STEMS, "imagenet: 7x7 conv and max-pool; small: one 3x3 conv (auto: the family's own)"
    )
    width: int = fields.non_negative(
        0, "first stage's filters, the others scaled alike (0: the family's own, 16 for cifar, 64 for imagenet)"
    )
    bottleneck_stride: str = fields.choice(
        "v1", BOTTLENECK_STRIDES, "bottleneck blocks: v1 strides the 1x1 conv (the paper), v1.5 the 3x3"
    )
    # A plain net has no residual branch, so for it the field is always False (__post_init__).
    zero_init: bool = fields.plain(False, "each residual branch's last BN scale starts at zero (Goyal et al. 2017)")
    # Torch's momentum 0.1 and Caffe's 0.9 are the paper's frameworks' value; Keras' 0.99 lags
    # the weights by ~100 steps and so evaluates short trainings with stale statistics.
    bn_momentum: float = fields.fraction(0.9, "weight of the old value in BN's moving averages (Keras' own is 0.99)")

    def __post_init__(self):
        if self.zero_init and self.shortcut == "none":
            object.__setattr__(self, "zero_init", False)  # frozen; a plain net has no branch to zero
        for f in dataclasses.fields(self):  # each field's own rule (resnet_bench.fields)
            wrong = fields.problem(f.name, getattr(self, f.name), f.metadata)
            if wrong:
                raise ValueError(wrong)
        family = self.family
        if family == "auto":
            family = "imagenet" if self.depth in IMAGENET_DEPTHS else "cifar"
            object.__setattr__(self, "family", family)
        if family == "imagenet" and self.depth not in IMAGENET_DEPTHS:
            known = ", ".join(map(str, IMAGENET_DEPTHS))
            raise ValueError(f"unknown depth {self.depth} for the imagenet family; known: {known}")
        if family == "cifar" and (self.depth < 8 or (self.depth - 2) % 6):
            raise ValueError(
                f"unknown depth {self.depth} for the cifar family; it must be 6n+2 with n >= 1 "
                f"(for example {', '.join(map(str, CIFAR_EXAMPLE_DEPTHS))})"
            )
        if self.flavour == "article" and (family != "imagenet" or self.shortcut not in ("B", "none")):
            raise ValueError(
                "the article flavour exists for the imagenet family with shortcut B or none only "
                f"(got family {family}, shortcut {self.shortcut})"
            )

    @property
    def residual(self) -> bool:
        return self.shortcut != "none"

    @property
    def name(self) -> str:
        """Variant name, e.g. ``resnet56`` / ``plain56`` / ``resnet56-zi`` (zero-init residual
        branches), with an ``article_`` prefix for the tutorial's flavour."""
        prefix = "article_" if self.flavour == "article" else ""
        return f"{prefix}{'resnet' if self.residual else 'plain'}{self.depth}{'-zi' if self.zero_init else ''}"

    def twin(self) -> ModelSpec:
        """The plain twin of a residual spec (itself when already plain)."""
        return dataclasses.replace(self, shortcut="none", zero_init=False)

    def stages(self) -> list[tuple[str, int, int]]:
        """(block kind, blocks, inner width) per stage: the depth table made concrete."""
        if self.family == "cifar":
            n = (self.depth - 2) // 6
            scale = (self.width or CIFAR_WIDTHS[0]) / CIFAR_WIDTHS[0]
            return [("basic", n, int(w * scale)) for w in CIFAR_WIDTHS]
        kind, repeats = IMAGENET_DEPTHS[self.depth]
        scale = (self.width or IMAGENET_WIDTHS[0]) / IMAGENET_WIDTHS[0]
        return [(kind, r, int(w * scale)) for r, w in zip(repeats, IMAGENET_WIDTHS)]

    def resolved_stem(self) -> str:
        if self.stem != "auto":
            return self.stem
        return "small" if self.family == "cifar" else "imagenet"


def parse_model_name(name: str, **options) -> ModelSpec:
    """``resnet50`` / ``plain56`` / ``article_resnet18`` -> :class:`ModelSpec`.

    A ``plain`` name forces ``shortcut="none"``; a ``resnet`` name takes the ``shortcut``
    option (default A for the CIFAR family, B for ImageNet depths, as the paper uses B there).
    """
    m = re.fullmatch(r"(article_)?(resnet|plain)(\d+)", name)
    if not m:
        raise ValueError(f"unknown model name {name!r}; expected resnetN or plainN (e.g. resnet56)")
    depth = int(m.group(3))
    if m.group(1):
        options.setdefault("flavour", "article")
    if m.group(2) == "plain":
        options["shortcut"] = "none"
    elif options.get("shortcut") in (None, "none"):
        family = options.get("family", "auto")
        imagenet = family == "imagenet" or (family == "auto" and depth in IMAGENET_DEPTHS)
        options["shortcut"] = "B" if imagenet else "A"
    return ModelSpec(depth=depth, **{k: v for k, v in options.items() if v is not None})
