"""Tracking store -> one tidy, long-format frame: a row per (run, epoch).

Identity columns (run_id, model, seed, status), parameter columns (depth, shortcut, counts,
config hash) and provenance columns (versions, hardware, commit) sit beside the per-epoch
metrics, so every aggregation is a pandas operation on one frame. This module reads MLflow
only; it never imports TensorFlow or the model code.
"""

from __future__ import annotations

import pandas as pd
from mlflow.tracking import MlflowClient

from .. import schema
from ..errors import UserError
from ..tracking import search_runs


def load_frame(uri: str, experiment: str) -> pd.DataFrame:
    """All runs of ``experiment`` (any status) with their per-epoch metrics.

    Raises:
        UserError: the experiment does not exist in the store or has no runs.
    """
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    runs = search_runs(client, exp.experiment_id) if exp is not None else []
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
        params = run.data.params
        # What this version of the schema expects and the run lacks (checked for the runs a
        # report uses: see stats.check_schema).
        base["schema_missing"] = ",".join(schema.missing_params(params))
        kinds = {**{k: t for k, (t, _) in {**schema.RUN_PARAMS, **schema.INFO_PARAMS}.items()}, **schema.CONFIG_PARAMS}
        for key, kind in kinds.items():
            value = params.get(key)
            base[key] = kind(value) if value not in (None, "") else None
        for key in schema.RUN_TAGS:
            base[key] = run.data.tags.get(key)
        keys = [k for k in run.data.metrics if schema.is_epoch_metric(k)]
        per_epoch: dict[int, dict] = {}
        for key in keys:
            for m in client.get_metric_history(run.info.run_id, key):
                per_epoch.setdefault(m.step, {})[key] = m.value
        if not per_epoch:
            rows.append({**base, "epoch": None})
        for epoch in sorted(per_epoch):
            rows.append({**base, "epoch": epoch, **per_epoch[epoch]})
    frame = pd.DataFrame(rows)
    for col in schema.EPOCH_METRICS:
        if col not in frame:
            frame[col] = float("nan")
    return frame.sort_values(["model", "seed", "start_time", "epoch"], kind="stable").reset_index(drop=True)
