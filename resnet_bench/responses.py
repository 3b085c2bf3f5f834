"""Why residual nets train: layer responses (He et al. Fig. 7) and residual-branch size.

He et al. explain residual learning with the standard deviations of layer responses: "the
outputs of each 3x3 layer, after BN and before other nonlinearity (ReLU/addition)". Residual
nets show smaller responses than their plain twins, and deeper ones smaller still, so "an
individual layer of ResNets tends to modify the signal less". This module measures that on a
trained net, plus the quantity the sentence is really about: each residual block's branch
output ``F(x)`` against the signal its shortcut carries past it.

Choices the paper leaves open, and why they are made so:

- *Which images*: the run's fixed probe batch (the first images of the training split,
  un-augmented, the same for every variant and seed), so twins are measured on equal inputs.
- *BN mode*: inference (moving statistics), the net as it is evaluated. It changes no state,
  so the measurement cannot touch training; training mode would make each channel's std
  exactly its BN scale ``|gamma|`` by construction.
- *Per channel, then averaged*: a layer's response std is the mean over channels of each
  channel's std over images and positions. BN normalises per channel; a pooled std would mix
  in the spread of the learned per-channel shifts ``beta``, which is not a response size.
- *Branch ratio*: ``||F(x)|| / ||s(x)||`` over the whole batch, where ``s(x)`` is the
  shortcut's output (the block input itself, or its option-A/B version where the shape
  changes): the block's output is ``s(x) + F(x)``, so this is how much the block changes the
  signal it passes on. Ratios of batch totals stay finite where a single image's input is 0.

Right after BN a response's std is close to ``|gamma|`` (times ``sigma_batch /
sigma_moving``), so these numbers largely read the learned BN scales; with zero-initialised
residual branches they start at exactly 0, which is an initialisation, not a finding.

Knows Keras, not MLflow: the values go back to the caller as a flat dict of metric names
(:mod:`resnet_bench.schema` defines the prefixes).
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from . import schema


def response_layers(model: keras.Model) -> list[str]:
    """Names of the BN layers that directly follow a 3x3 conv, in network order.

    That is every conv of a basic block, the middle conv of a bottleneck and the CIFAR stem;
    1x1 convs (bottleneck ends, projection shortcuts) and 7x7 stems are not 3x3 layers.
    The structured names pair ``<block>_convK`` with ``<block>_bnK`` and ``stem_conv`` with
    ``stem_bn``; the graph is checked too, so a renamed layer is skipped rather than mismatched.
    """
    names = {layer.name for layer in model.layers}
    out = []
    for layer in model.layers:
        if not isinstance(layer, keras.layers.Conv2D) or tuple(layer.kernel_size) != (3, 3):
            continue
        head, _, tail = layer.name.rpartition("conv")
        bn = f"{head}bn{tail}"
        if bn in names and model.get_layer(bn).input is layer.output:
            out.append(bn)
    return out


def residual_blocks(model: keras.Model) -> list[str]:
    """Names of the blocks with a shortcut (an ``<block>_add`` layer), in network order."""
    return [layer.name[: -len("_add")] for layer in model.layers if isinstance(layer, keras.layers.Add)]


def metric_names(model: keras.Model) -> list[str]:
    """The metric names :class:`ResponseProbe` returns for ``model``, in its order."""
    return _names(response_layers(model), residual_blocks(model))


def _names(bns: list[str], blocks: list[str]) -> list[str]:
    return [schema.response_metric(i, n) for i, n in enumerate(bns, 1)] + [
        schema.branch_metric(i, b) for i, b in enumerate(blocks, 1)
    ]


class ResponseProbe:
    """Response std of every 3x3 layer and branch ratio of every residual block, one forward pass.

    Run once per run, after the last epoch, eagerly: tracing the pass into a graph took 4.1-4.4
    s for a 56-layer net on 2 cores, running it eagerly 0.5-1.0 s, and a graph would only pay
    off over many calls (docs/performance.md). Reductions are in float64 numpy.
    """

    def __init__(self, model: keras.Model):
        self.bns, blocks = response_layers(model), residual_blocks(model)
        adds = [model.get_layer(f"{b}_add") for b in blocks]
        self.names = _names(self.bns, blocks)
        outputs = [model.get_layer(n).output for n in self.bns] + [t for a in adds for t in a.input]
        self.taps = keras.Model(model.inputs, outputs, name=f"{model.name}_responses") if outputs else None

    def __call__(self, x) -> dict[str, float]:
        if self.taps is None:
            return {}
        ys = [np.asarray(y, dtype=np.float64) for y in self.taps(tf.constant(x), training=False)]
        n = len(self.bns)
        stds = [y.std(axis=(0, 1, 2)).mean() for y in ys[:n]]
        ratios = [np.linalg.norm(f) / np.linalg.norm(s) for s, f in zip(ys[n::2], ys[n + 1 :: 2])]  # [shortcut, branch]
        return {name: float(v) for name, v in zip(self.names, stds + ratios)}
