"""Tracking store -> tidy, long-format frames: a row per (run, epoch), and a row per (run, layer).

Identity columns (run_id, model, seed, status), parameter columns (depth, shortcut, counts,
config hash) and provenance columns (versions, hardware, commit) sit beside the per-epoch
metrics, so every aggregation is a pandas operation on one frame. The layer measurements a run
logs once after its last epoch (:data:`resnet_bench.schema.LAYER_METRICS`) form a second
frame keyed by run_id. This module reads MLflow only; it never imports TensorFlow or the
model code.
"""

from __future__ import annotations

import pandas as pd

from .. import schema
from ..errors import UserError
from ..tracking.store import Store


def load_frames(uri: str, experiment: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """All runs of ``experiment`` (any status) with their per-epoch metrics, and their layer
    measurements (columns run_id, kind, index, layer, value; empty for runs without them).

    Raises:
        UserError: the experiment does not exist in the store or has no runs.
    """
    store = Store(uri)
    exp_id = store.experiment_id(experiment, create=False)
    runs = store.runs(exp_id) if exp_id is not None else []
    runs = [r for r in runs if "run_key" in r.data.tags]
    if not runs:
        raise UserError(f"no runs of experiment {experiment!r} in the tracking store {uri}")
    rows, layers = [], []
    for run in runs:
        base = {
            "run_id": run.info.run_id,
            "experiment": experiment,
            "status": run.info.status,
            "start_time": pd.Timestamp(run.info.start_time, unit="ms", tz="UTC"),
        }
        params = run.data.params
        # What this version of the schema expects and the run lacks (checked for the runs a
        # report uses: see selection.check_schema).
        base["schema_missing"] = ",".join(schema.missing_params(params))
        base["analysed"] = set(schema.ANALYSIS_METRICS) <= set(run.data.metrics)
        base.update(schema.typed_params(params))
        base["training"] = schema.training_fingerprint(params)
        for key in schema.RUN_TAGS:
            base[key] = run.data.tags.get(key)
        rid = run.info.run_id
        for key, value in run.data.metrics.items():
            if key in schema.LAYER_METRICS:  # a profile: step = the layer's position
                layers += [(rid, key, m.step, "", m.value) for m in store.metric_history(rid, key)]
            elif parsed := schema.parse_layer_metric(key):  # one metric per layer, logged once
                layers.append((rid, *parsed, value))
        names = {k: schema.metric_name(k) for k in run.data.metrics}
        per_epoch: dict[int, dict] = {}
        for key, name in names.items():
            if schema.is_epoch_metric(name):
                for m in store.metric_history(run.info.run_id, key):
                    per_epoch.setdefault(m.step, {})[name] = m.value
        if not per_epoch:
            rows.append({**base, "epoch": None})
        for epoch in sorted(per_epoch):
            rows.append({**base, "epoch": epoch, **per_epoch[epoch]})
    frame = pd.DataFrame(rows)
    for col in schema.EPOCH_METRICS:
        if col not in frame:
            frame[col] = float("nan")
    frame = frame.sort_values(["model", "seed", "start_time", "epoch"], kind="stable").reset_index(drop=True)
    layers = pd.DataFrame(layers, columns=["run_id", "kind", "index", "layer", "value"])
    return frame, layers.sort_values(["run_id", "kind", "index"]).reset_index(drop=True)


def load_analyses(uri: str, frame: pd.DataFrame) -> dict[str, dict]:
    """The analysis record of each FINISHED run of ``frame`` (:func:`load_frames`) that was
    analysed, by run id."""
    store = Store(uri)
    done = frame[frame["analysed"] & (frame["status"] == schema.FINISHED)]["run_id"].unique()
    return {rid: store.analysis_record(store.get_run(rid)) for rid in done}
