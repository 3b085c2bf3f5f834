"""Tracking store -> one tidy, long-format frame: a row per (run, epoch).

Identity columns (run_id, model, seed, status), parameter columns (depth, shortcut, counts,
config hash) and provenance columns (versions, hardware, commit) sit beside the per-epoch
metrics, so every aggregation is a pandas operation on one frame. This module reads MLflow
only; it never imports TensorFlow or the model code.
"""

from __future__ import annotations

import pandas as pd
from mlflow.tracking import MlflowClient

from ..errors import UserError

RUN_PARAMS = {
    "model": str,
    "depth": int,
    "shortcut": str,
    "flavour": str,
    "family": str,
    "seed": int,
    "params_total": int,
    "params_trainable": int,
    "macs": int,
    "data_source": str,
    "data_hash": str,
    "data_train_count": int,
    "data_test_count": int,
    "data_classes": int,
    "data_skipped": int,
    "data.image_size": int,
    "train.epochs": int,
    "train.batch_size": int,
    "train.optimizer": str,
    "train.learning_rate": float,
    "zero_init_residual": str,
    "model.bn_momentum": float,
    "grid.depths": str,
    "grid.shortcuts": str,
    "grid.seeds": str,
    "device": str,
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
    "cpu_count",
    "gpu",
    "host",
)
METRICS = (
    "train_loss",
    "train_accuracy",
    "val_loss",
    "val_accuracy",
    "epoch_seconds",
    "step_ms_median",
    "step_ms_p90",
    "images_per_second",
    "learning_rate",
)


def load_frame(uri: str, experiment: str) -> pd.DataFrame:
    """All runs of ``experiment`` (any status) with their per-epoch metrics.

    Raises:
        UserError: the experiment does not exist in the store or has no runs.
    """
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    runs = []
    if exp is not None:
        token = None
        while True:
            page = client.search_runs([exp.experiment_id], max_results=1000, page_token=token)
            runs.extend(page)
            token = page.token
            if not token:
                break
    runs = [r for r in runs if "run_key" in r.data.tags]
    if not runs:
        raise UserError(f"no runs of experiment {experiment!r} in the tracking store {uri}")
    rows = []
    for run in runs:
        base = {
            "run_id": run.info.run_id,
            "experiment": experiment,
            "status": run.info.status,
            "start_time": pd.Timestamp(run.info.start_time, unit="ms", tz="UTC"),
        }
        for key, kind in RUN_PARAMS.items():
            value = run.data.params.get(key)
            base[key] = kind(value) if value not in (None, "") else None
        for key in RUN_TAGS:
            base[key] = run.data.tags.get(key)
        keys = [k for k in run.data.metrics if k in METRICS or k.startswith("grad_norm/")]
        per_epoch: dict[int, dict] = {}
        for key in keys:
            for m in client.get_metric_history(run.info.run_id, key):
                per_epoch.setdefault(m.step, {})[key] = m.value
        if not per_epoch:
            rows.append({**base, "epoch": None})
        for epoch in sorted(per_epoch):
            rows.append({**base, "epoch": epoch, **per_epoch[epoch]})
    frame = pd.DataFrame(rows)
    for col in METRICS:
        if col not in frame:
            frame[col] = float("nan")
    return frame.sort_values(["model", "seed", "start_time", "epoch"], kind="stable").reset_index(drop=True)
