"""What a tracked run holds: the one definition the driver writes with and the report reads with.

Free of TensorFlow and MLflow. Params beyond the resolved config fields (which
``config.flatten`` names ``section.key``) are :data:`RUN_PARAMS`; per-epoch metrics are
:data:`EPOCH_METRICS` plus one ``grad_norm/<stage>`` per stage of the net, stored in MLflow
under :func:`stored_key`; the layer measurements of :data:`LAYER_METRICS` are logged once,
after the last epoch. A run that lacks one of them was written by other code, and reading it
is an error that names the run.
"""

from __future__ import annotations

import hashlib
import json

# A run's status: MLflow's own four, and SKIPPED, what a sweep reports for a run it found
# finished or held by another process (never stored).
RUNNING, FINISHED, FAILED, KILLED, SKIPPED = "RUNNING", "FINISHED", "FAILED", "KILLED", "SKIPPED"
ENDED_BADLY = (FAILED, KILLED)

# name -> (type, meaning)
RUN_PARAMS: dict[str, tuple[type, str]] = {
    "model": (str, "variant name, e.g. resnet56, plain56, resnet56-zi"),
    "seed": (int, "repeat seed: weight init, data order and augmentation"),
    "depth": (int, "number of weighted layers"),
    "shortcut": (str, "shortcut option: A, B, C or none (plain)"),
    "flavour": (str, "paper or article (the tutorial's deviations)"),
    "family": (str, "cifar or imagenet"),
    "zero_init": (bool, "each residual branch's last BN scale starts at zero (always False for a plain net)"),
    "data_source": (str, "synthetic, folder, cifar10 or arrays"),
    "data_hash": (str, "content hash of the decoded images and labels"),
    "data_classes": (int, "number of classes"),
    "data_train_count": (int, "training images"),
    "data_test_count": (int, "validation images"),
    "data_counts": (str, "images per split and class (JSON)"),
    "data_skipped": (int, "unreadable image files skipped"),
    "data_ignored": (int, "non-image files ignored"),
}
# Logged once the model is built (train.train_run's on_model): a run that failed before that lacks them.
_MODEL_INFO: dict[str, tuple[type, str]] = {
    "params_total": (int, "weights, BN moving statistics included"),
    "params_trainable": (int, "trainable weights"),
    "params_non_trainable": (int, "BN moving means and variances"),
    "macs": (int, "multiply-accumulates per image (conv and dense layers)"),
    "device": (str, "cpu or gpu"),
    "mixed_precision_resolved": (str, "off, float16 or bfloat16, after 'auto'"),
    "jit_compile_resolved": (str, "whether XLA compiled the train step, after 'auto'"),
    "steps_per_execution_resolved": (int, "training steps per compiled call (a divisor of the epoch's steps)"),
}
RUN_PARAMS.update(_MODEL_INFO)
MODEL_PARAMS = tuple(_MODEL_INFO)

# Params the report shows when a run has them; runs of earlier versions lack them, which is no error.
INFO_PARAMS: dict[str, tuple[type, str]] = {
    "data_files": (str, "the array files read, comma-separated (a train/test pair is two); empty otherwise"),
    "report.design_seeds": (str, "the seeds the design was chosen on (config [report])"),
    "report.held_out": (str, "the experiment whose runs give the held-out check (config [report])"),
    "report.held_out_seeds": (str, "its seeds the check uses (config [report])"),
}

# The config tables that shape a run's numbers; their logged params, the data's content hash
# aside, are what two experiments must share for one's runs to stand in for the other's.
TRAINING_SECTIONS = ("data", "train", "model")


def training_fingerprint(params: dict) -> str:
    """A hash of a run's ``data.*``, ``train.*`` and ``model.*`` params and its data's content
    hash: equal for runs of two experiments that train the same nets on the same data the
    same way (the experiment's name, grid and seeds left out)."""
    kept = {k: v for k, v in params.items() if k.partition(".")[0] in TRAINING_SECTIONS and "." in k}
    kept["data_hash"] = params.get("data_hash")
    return hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()[:16]


# Resolved config fields the report reads (all of them are logged; see config.flatten).
CONFIG_PARAMS: dict[str, type] = {
    "data.image_size": int,
    "train.epochs": int,
    "train.batch_size": int,
    "train.optimizer": str,
    "train.learning_rate": float,
    "train.grad_probe_size": int,
    "model.bn_momentum": float,
    "grid.depths": str,
    "grid.shortcuts": str,
    "grid.zero_init": str,
    "grid.seeds": str,
}

# name -> meaning; logged at step = epoch
EPOCH_METRICS: dict[str, str] = {
    "train_loss": "mean training loss over the epoch (the L2 penalty included in 'l2' weight-decay mode)",
    "train_accuracy": "training accuracy over the epoch",
    "val_loss": "loss on the validation split after the epoch",
    "val_accuracy": "accuracy on the validation split after the epoch",
    "epoch_seconds": "wall time of training plus validation",
    "step_ms_median": "median training step time (each compiled call's time over its steps)",
    "step_ms_p90": "90th percentile training step time (per compiled call, as the median)",
    "images_per_second": "training throughput",
    "learning_rate": "learning rate at the end of the epoch",
}
GRAD_NORM_PREFIX = "grad_norm/"  # + stem, stage1, ..., head: gradient L2 norm on a fixed probe batch

# The key each per-epoch metric is stored under in MLflow, where it differs from its name here
# (the name the report's columns, history.csv and the code use). MLflow's run page draws a chart
# per key in sections named by the part before the last "/", sorted by name, with unprefixed
# keys last under "Model metrics", and sorts charts by key within a section. So the loss curves
# are the only keys in the first section, "loss" (train, then val), the accuracies follow in
# "top1", and everything else, the gradient norms included, sits in "Model metrics".
# Runs stored before this naming used the names themselves; the report reads both.
_RENAMED = {
    "train_loss": "loss/train",
    "val_loss": "loss/val",
    "train_accuracy": "top1/train",
    "val_accuracy": "top1/val",
}
_STORED_NAMES = {key: name for name, key in _RENAMED.items()}
_STORED_GRAD_NORM_PREFIX = "grad_norm_"


def stored_key(name: str) -> str:
    """The MLflow key of per-epoch metric ``name``: ``train_loss`` -> ``loss/train``,
    ``grad_norm/stem`` -> ``grad_norm_stem``; other names are stored as they are."""
    if name.startswith(GRAD_NORM_PREFIX):
        return _STORED_GRAD_NORM_PREFIX + name[len(GRAD_NORM_PREFIX) :]
    return _RENAMED.get(name, name)


def metric_name(key: str) -> str:
    """The inverse of :func:`stored_key`; a key stored under an earlier naming (the name itself)
    comes back unchanged."""
    if key.startswith(_STORED_GRAD_NORM_PREFIX):
        return GRAD_NORM_PREFIX + key[len(_STORED_GRAD_NORM_PREFIX) :]
    return _STORED_NAMES.get(key, key)


# Measured once per run, after its last epoch (resnet_bench.responses), one value per 3x3 layer
# and per residual block. Logged as profiles: one metric per quantity whose step is the layer's
# (or block's) position in the net, 1 nearest the input, so a plain net and its residual twin
# line up layer by layer and the run page's charts stay the training curves plus two profiles.
# LAYERS_ARTIFACT names the layer at each position. The probe keys its values by
# response_metric / branch_metric; a store may also hold runs that logged those keys as
# metrics of their own, which the report reads too (parse_layer_metric).
LAYER_METRICS: dict[str, str] = {
    "response_std": "std of a 3x3 layer's BN output (per channel, averaged over channels): He et al. Fig. 7",
    "branch_ratio": "||F(x)|| / ||shortcut(x)|| of a residual block: how much the block changes its signal",
}
RESPONSE_STD_PREFIX, BRANCH_RATIO_PREFIX = (f"{kind}/" for kind in LAYER_METRICS)
LAYERS_ARTIFACT = "layers.csv"  # kind, index, layer, value: the profiles with their layers' names


def response_metric(index: int, layer: str) -> str:
    return f"{RESPONSE_STD_PREFIX}{index:03d}_{layer}"


def branch_metric(index: int, block: str) -> str:
    return f"{BRANCH_RATIO_PREFIX}{index:03d}_{block}"


def parse_layer_metric(name: str) -> tuple[str, int, str] | None:
    """``response_std/003_stage1_block1_bn2`` -> ("response_std", 3, "stage1_block1_bn2");
    None for any other metric."""
    for kind in LAYER_METRICS:
        if name.startswith(f"{kind}/"):
            index, _, layer = name[len(kind) + 1 :].partition("_")
            if index.isdigit() and layer:
                return kind, int(index), layer
    return None


# Written after training by `resnet-bench analyse` (resnet_bench.analysis), onto the run:
# every number in ANALYSIS_ARTIFACT, the per-run headline numbers also as metrics (step 0).
ANALYSIS_ARTIFACT = "analysis.json"
ANALYSIS_METRICS: dict[str, str] = {
    "lesion/mean_drop": "validation accuracy lost on deleting one shape-keeping block, mean over those blocks",
    "lesion/relative_drop": "lesion/mean_drop as a fraction of the accuracy above chance (NaN near chance)",
    "sharpness/init": "mean training-loss rise at |alpha| = 0.2 along filter-normalised lines, initial weights",
    "sharpness/final": "the same at the trained weights",
    "curvature/init": "dominant eigenvalue of the training-loss Hessian at the initial weights",
    "curvature/final": "the same at the trained weights",
}

RUN_TAGS = (
    "description",
    "config_hash",
    "run_key",
    "failure_reason",
    "git_commit",
    "git_dirty",
    "tensorflow_version",
    "keras_version",
    "mlflow_version",
    "python_version",
    "cpu_model",
    "cpu_isa",
    "cpu_count",
    "gpu",
    "host",
)


def is_epoch_metric(name: str) -> bool:
    return name in EPOCH_METRICS or name.startswith(GRAD_NORM_PREFIX)


# Params that runs of earlier versions stored under another name: name -> that name.
EARLIER_PARAM_NAMES = {"zero_init": "zero_init_residual"}


def param_text(params: dict, name: str) -> str | None:
    """A run's param ``name`` as stored (under its earlier name for a run of an earlier
    version); None when the run lacks it."""
    if name in params:
        return params[name]
    return params.get(EARLIER_PARAM_NAMES.get(name, name))


def parse_param(kind: type, text: str):
    """A stored param's text as ``kind`` (``"False"`` is False, not a true string)."""
    return text == "True" if kind is bool else kind(text)


def typed_params(params: dict) -> dict:
    """A run's params that this schema names, each parsed as its type (under its earlier name
    for a run of an earlier version); None where the run lacks one or stored it empty."""
    kinds = {**{k: t for k, (t, _) in {**RUN_PARAMS, **INFO_PARAMS}.items()}, **CONFIG_PARAMS}
    out = {}
    for key, kind in kinds.items():
        value = param_text(params, key)
        out[key] = parse_param(kind, value) if value not in (None, "") else None
    return out


def missing_params(params: dict) -> list[str]:
    """Names the report needs that a run's params lack (an empty list for a complete run)."""
    return [k for k in (*RUN_PARAMS, *CONFIG_PARAMS) if param_text(params, k) is None]
