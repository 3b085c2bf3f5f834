"""One (variant, seed) from claim to final status: the unit every executor runs.

The in-process executor, the local worker processes and Ray tasks all call
:func:`execute_run`, so a run is claimed, tracked, and ended FINISHED / FAILED / KILLED the
same way wherever it trains.
"""

from __future__ import annotations

import csv
import io
import json
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

from . import config as config_mod
from .errors import DivergedError
from .models import ModelSpec
from .tracking import Store


class Terminated(BaseException):
    """Raised in the main thread on SIGTERM so the current run ends as KILLED (exit 143)."""


def _on_sigterm(signum, frame):
    raise Terminated()


def run_params(cfg, spec: ModelSpec, seed: int, data_info: dict) -> dict:
    """Every param logged with a run: the resolved config, the variant, the data set."""
    params = config_mod.flatten(cfg)
    params.update(
        {
            "model": spec.name,
            "seed": seed,
            "depth": spec.depth,
            "shortcut": spec.shortcut,
            "flavour": spec.flavour,
            "zero_init_residual": spec.zero_init,
            "family": spec.family,
            "data_source": data_info["source"],
            "data_hash": data_info["hash"],
            "data_classes": len(data_info["classes"]),
            "data_train_count": sum(data_info["counts"]["train"].values()),
            "data_test_count": sum(data_info["counts"]["test"].values()),
            "data_counts": json.dumps(data_info["counts"], sort_keys=True),
            "data_skipped": data_info["skipped"],
            "data_ignored": data_info["ignored"],
        }
    )
    return params


def _history_csv(history: list[dict]) -> str:
    keys = sorted({k for row in history for k in row}, key=lambda k: (k != "epoch", k))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys)
    writer.writeheader()
    writer.writerows(history)
    return buf.getvalue()


def execute_run(
    cfg,
    spec: ModelSpec,
    seed: int,
    uri: str,
    force: bool = False,
    invocation: str = "",
    label: str = "",
    echo=print,
) -> str:
    """Claim, train and track one (variant, seed); returns its final status.

    ``SKIPPED`` when it is finished or another process holds it. A diverging run or any
    exception ends as FAILED (the sweep goes on); an interrupt ends it as KILLED and
    propagates. Epoch metrics are logged as they come, so nothing done is lost.
    """
    from . import data as data_mod
    from . import provenance
    from .train import train_run

    store = Store(uri)
    exp_id = store.experiment_id(cfg.name)
    arrays = data_mod.load(cfg.data)
    data_info = data_mod.describe(arrays)
    tags = {
        "bench_experiment": cfg.name,
        "config_hash": cfg.config_hash(),
        "model": spec.name,
        "seed": seed,
        "invocation": invocation,
        "run_name": f"{spec.name}-seed{seed}",
        "description": cfg.description,
        "data_skipped": data_info["skipped"],
        **provenance.tags(),
    }
    run_id = store.claim(exp_id, cfg.run_key(spec, seed), tags, force=force)
    if run_id is None:
        echo(f"{label} {spec.name} seed {seed}: finished or taken by another process, skipped")
        return "SKIPPED"
    store.log_params(run_id, run_params(cfg, spec, seed, data_info))
    if data_info["skipped_files"]:
        store.call("log_text", run_id, "\n".join(data_info["skipped_files"]) + "\n", "skipped_files.txt")
    history: list[dict] = []
    status, reason = "FAILED", None
    t0 = time.time()
    beating = threading.Event()
    threading.Thread(target=store.heartbeat, args=(run_id, beating), daemon=True).start()

    def on_model(model, info):
        store.log_params(run_id, info)

    def on_epoch(row):
        history.append(row)
        store.log_epoch(run_id, row)
        echo(
            f"{label} {spec.name} seed {seed} epoch {row['epoch']}/{cfg.train.epochs}: "
            f"loss {row['train_loss']:.4f} acc {row['train_accuracy']:.3f} "
            f"val_acc {row['val_accuracy']:.3f} ({row['epoch_seconds']:.1f}s, "
            f"{row['images_per_second']:.0f} img/s)"
        )

    try:
        result = train_run(cfg, spec, seed, arrays, on_epoch=on_epoch, on_model=on_model)
        store.call("log_text", run_id, result.summary, "model_summary.txt")
        if cfg.train.save_weights:
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "model.weights.h5"
                result.model.save_weights(path)
                store.call("log_artifact", run_id, str(path))
        status = "FINISHED"
    except DivergedError as e:
        reason = f"diverged: {e}"
    except (KeyboardInterrupt, Terminated):
        status, reason = "KILLED", "interrupted (SIGINT/SIGTERM)"
        raise
    except Exception as e:  # one broken run must not end the sweep
        reason = f"{type(e).__name__}: {e}"
        traceback.print_exc(file=sys.stderr)
    finally:
        beating.set()
        if history:
            store.call("log_text", run_id, _history_csv(history), "history.csv")
        store.call("log_text", run_id, config_mod.to_toml(cfg), "config.toml")
        store.end(run_id, status, reason)
        took = time.time() - t0
        echo(f"{label} {spec.name} seed {seed}: {status} in {took:.0f}s" + (f" ({reason})" if reason else ""))
    return status
