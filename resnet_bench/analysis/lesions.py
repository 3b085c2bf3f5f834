"""Block lesions (Veit, Wilber and Belongie 2016): delete one block at test time, measure.

Veit et al. deleted single blocks of a trained ResNet at test time and found its accuracy
barely moved, while deleting one layer of a VGG-style plain net destroyed it: a residual net
behaves like an ensemble of many paths, most of them short. Here each block of a run's stored
net is deleted in turn through the lesionable build of the same architecture
(:func:`resnet_bench.models.build_model` with ``lesionable=True``): a deleted residual block
passes on its shortcut path alone, a deleted plain block the identity (option A's
subsample-and-pad where the block changes the shape, so twins lose the same thing). BN keeps
its trained statistics. The blocks that change the shape are reported apart.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from ..models import Gate, build_model


def lesionable_copy(net: keras.Model, spec, binary: bool) -> keras.Model:
    """``net``'s architecture built lesionable, with ``net``'s weights loaded by layer name."""
    shape, classes = tuple(net.input_shape[1:]), int(net.output_shape[-1])
    gated = build_model(spec, shape, 2 if binary else classes, binary_head=binary, lesionable=True)
    load_weights(gated, net)
    return gated


def load_weights(gated: keras.Model, net: keras.Model) -> None:
    """Every weight of ``net`` into the same-named layer of its lesionable build ``gated``,
    every gate back to 1. Every measurement of :mod:`resnet_bench.analysis` runs on one such
    build per variant, so its compiled functions serve every seed (at 1 the gates change no
    number)."""
    for layer in gated.layers:
        if isinstance(layer, Gate):
            layer.g.assign(1.0)
        elif layer.weights:
            layer.set_weights(net.get_layer(layer.name).get_weights())


def blocks(gated: keras.Model) -> list[tuple[str, bool]]:
    """(block name, whether it changes the shape) in network order: a shape-changing block has
    a shortcut layer of its own (option A/B/C) or, in a plain net, a removed-path one."""
    names = {layer.name for layer in gated.layers}
    out = []
    for layer in gated.layers:
        if isinstance(layer, Gate):
            block = layer.name[: -len("_gate")]
            changes = any(n.startswith((f"{block}_shortcut", f"{block}_removed_")) and n != f"{block}_removed_out"
                          for n in names)  # fmt: skip
            out.append((block, changes))
    return out


def accuracy_fn(model: keras.Model, x: np.ndarray, y: np.ndarray, batch_size: int):
    """A function of no arguments: the accuracy of ``model`` (inference mode) on (x, y), read
    with the model's current variables, so a gate set to 0 is seen without tracing again."""
    batches = [tf.constant(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]
    labels = np.asarray(y).reshape(-1)
    binary = model.output_shape[-1] == 1

    @tf.function
    def predict(xb):
        p = model(xb, training=False)
        return tf.cast(p[:, 0] > 0.5, tf.int64) if binary else tf.argmax(p, axis=-1)

    def accuracy() -> float:
        predicted = np.concatenate([predict(b).numpy() for b in batches])
        return float(np.mean(predicted == labels))

    return accuracy


def lesion(gated: keras.Model, accuracy) -> dict:
    """The accuracy (``accuracy``, a function of no arguments reading ``gated``'s current
    weights: :func:`accuracy_fn`) of the lesionable net ``gated`` whole and with each block
    deleted in turn.

    Returns ``{"base": acc, "blocks": [names], "downsampling": [bools], "accuracy": [acc per
    deleted block]}``.
    """
    base = accuracy()
    found = blocks(gated)
    after = []
    for name, _ in found:
        gate = gated.get_layer(f"{name}_gate").g
        gate.assign(0.0)
        after.append(accuracy())
        gate.assign(1.0)
    return {"base": base, "blocks": [n for n, _ in found], "downsampling": [c for _, c in found], "accuracy": after}


def summary(result: dict, chance: float, floor: float) -> dict:
    """Per-run numbers of a lesion profile.

    ``mean_drop``: mean accuracy lost over the blocks that keep the shape; ``worst_drop``: the
    largest such loss; ``downsampling_drop``: mean loss over the shape-changing blocks.
    ``relative_drop``: ``mean_drop`` as a fraction of the accuracy above chance, None where the
    net is less than ``floor`` above chance (a net at chance has nothing to lose).
    """
    base = result["base"]
    drops = np.array([base - a for a in result["accuracy"]])
    keep = ~np.array(result["downsampling"], bool)
    mean_drop = float(drops[keep].mean()) if keep.any() else float("nan")
    above = base - chance
    return {
        "mean_drop": mean_drop,
        "worst_drop": float(drops[keep].max()) if keep.any() else float("nan"),
        "downsampling_drop": float(drops[~keep].mean()) if (~keep).any() else float("nan"),
        "relative_drop": mean_drop / above if above >= floor else None,
    }
