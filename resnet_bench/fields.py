"""Validation rules and help declared beside the config fields they govern.

A field made by one of these helpers carries its rule and a line of help in its dataclass
metadata; :func:`problem` reads the rule back, so ``config`` checks every field of every
section the same way, and :mod:`resnet_bench.reference` writes the page of every field
(docs/config.md) from the same metadata, so a new option states its limits and its meaning
where it is declared.
"""

from __future__ import annotations

from dataclasses import field


def plain(default, help: str):
    """Any value of the field's type."""
    return field(default=default, metadata={"help": help})


def choice(default, options, help: str = ""):
    """One of ``options``."""
    return field(default=default, metadata={"choices": tuple(options), "help": help})


def each_of(default, options, help: str = ""):
    """A list whose every item is one of ``options``."""
    return field(default=default, metadata={"each": tuple(options), "help": help})


def positive(default, help: str = ""):
    """A number above zero."""
    return field(default=default, metadata={"bound": "positive", "help": help})


def non_negative(default, help: str = ""):
    """A number of zero or more."""
    return field(default=default, metadata={"bound": "non_negative", "help": help})


def fraction(default, help: str = ""):
    """A number in [0, 1)."""
    return field(default=default, metadata={"bound": "fraction", "help": help})


BOUND_TEXT = {"positive": "> 0", "non_negative": ">= 0", "fraction": "0 to < 1"}  # as the reference writes them
_BOUNDS = {
    "positive": (lambda v: v > 0, "must be positive"),
    "non_negative": (lambda v: v >= 0, "must not be negative"),
    "fraction": (lambda v: 0 <= v < 1, "must be in [0, 1)"),
}


def problem(key: str, value, metadata) -> str | None:
    """What breaks field ``key``'s rule (the message, naming the key), or None."""
    choices = metadata.get("choices")
    if choices is not None and value not in choices:
        return f"{key} = {value!r} is not one of {', '.join(choices)}"
    each = metadata.get("each")
    if each is not None:
        for item in value:
            if item not in each:
                return f"{key} has {item!r}, not one of {', '.join(each)}"
    bound = metadata.get("bound")
    if bound is not None:
        holds, says = _BOUNDS[bound]
        if not holds(value):
            return f"{key} {says}, got {value!r}"
    return None
