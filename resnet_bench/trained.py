"""A run's trained net, kept as an MLflow model of that run, and its initial net, rebuilt.

Each training run logs its final network through MLflow's Keras flavour under the name
:data:`MODEL_NAME`, so ``mlflow.keras.load_model("runs:/<run id>/model")`` loads it anywhere
``resnet_bench.models`` is importable (its two custom layers are registered there). The net
is stored uncompiled: no optimizer state, no loss function, so it loads without the training
code and is a third of the size of a compiled save for Adam.

The stored net takes *normalised* images, as it was trained: the per-channel mean and std of
the training split are in the model's metadata (:func:`normalise` applies them), and the
signature names the input shape. The initial net is not stored: :func:`resnet_bench.train.
initial_model` draws exactly the weights training started from, given the run's variant and
seed (a test compares it with the net a run trained from).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from .errors import UserError
from .inputs import first_line

MODEL_NAME = "model"  # runs:/<run id>/model


def model_uri(run_id: str) -> str:
    return f"runs:/{run_id}/{MODEL_NAME}"


@contextlib.contextmanager
def using_store(uri: str, experiment_id: str | None = None):
    """MLflow's model logging and loading read the process-wide tracking URI, and a logged
    model goes to the process's active experiment (``$MLFLOW_EXPERIMENT_ID``), not its run's;
    a sweep's store and experiment may be others, so both are set for the call and put back."""
    import mlflow

    previous, previous_exp = mlflow.get_tracking_uri(), os.environ.get("MLFLOW_EXPERIMENT_ID")
    mlflow.set_tracking_uri(uri)
    if experiment_id is not None:
        os.environ["MLFLOW_EXPERIMENT_ID"] = experiment_id
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous)
        if experiment_id is not None:
            if previous_exp is None:
                os.environ.pop("MLFLOW_EXPERIMENT_ID", None)
            else:
                os.environ["MLFLOW_EXPERIMENT_ID"] = previous_exp


def _signature(shape: tuple, outputs: int):
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    return ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, *shape), "image")]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, outputs))]),
    )


def _requirements() -> list[str]:
    """Pinned from this process: MLflow otherwise infers them by loading the model again in a
    subprocess, seconds per run for a list that is known here."""
    import keras
    import tensorflow as tf

    return [f"tensorflow=={tf.__version__}", f"keras=={keras.__version__}"]


def net_metadata(mean, std, classes: list[str], step: int) -> dict:
    """What a stored net carries besides its weights: the normalisation its inputs need (the
    training split's per-channel mean and std), the class names, the epoch of its weights."""
    return {
        "normalisation_mean": [float(v) for v in np.ravel(mean)],
        "normalisation_std": [float(v) for v in np.ravel(std)],
        "classes": list(classes),
        "epoch": int(step),
        "custom_layers": "import resnet_bench.models before loading",
    }


def log_net(uri: str, experiment_id: str, run_id: str, model, *, mean, std, classes: list[str], step: int) -> None:
    """Log ``model``'s architecture and weights as the MLflow model of run ``run_id``.

    ``model`` may be compiled (the one training used); an uncompiled copy with the same weights
    is what is stored. ``step`` is the epoch the weights are from.
    """
    import keras
    import mlflow
    from mlflow.models import Model

    net = keras.Model.from_config(model.get_config())
    net.set_weights(model.get_weights())
    metadata = net_metadata(mean, std, classes, step)
    with using_store(uri, experiment_id):
        Model.log(
            None,  # artifact_path: MLflow 3 names the model by ``name``
            run_id=run_id,
            name=MODEL_NAME,
            flavor=mlflow.keras,
            model=net,
            signature=_signature(tuple(net.input_shape[1:]), int(net.output_shape[-1])),
            pip_requirements=_requirements(),
            metadata=metadata,
            step=0,  # no metric is logged at step 0, so none is copied onto the model
        )


def load_net(uri: str, run_id: str, what: str = ""):
    """The stored net of run ``run_id`` and its metadata; a missing or unreadable model is a
    :class:`UserError` naming the run (``what`` says which run it is to a reader)."""
    import mlflow

    import resnet_bench.models  # noqa: F401  (registers the custom layers)

    name = what or f"run {run_id}"
    with using_store(uri), tempfile.TemporaryDirectory() as tmp:
        try:
            local = mlflow.artifacts.download_artifacts(model_uri(run_id), dst_path=tmp)
        except Exception as e:
            raise UserError(f"{name} has no stored model ({model_uri(run_id)}: {first_line(e)[:300]})") from None
        if not (Path(local) / "MLmodel").is_file():  # a model whose files are gone downloads as nothing
            raise UserError(f"{name} has no stored model (no files at {model_uri(run_id)})")
        try:
            info = mlflow.models.Model.load(Path(local) / "MLmodel")
            net = mlflow.keras.load_model(local)
        except Exception as e:
            raise UserError(f"{name}: its stored model cannot be read ({first_line(e)[:300]})") from None
        finally:
            shutil.rmtree(local, ignore_errors=True)
    return net, dict(info.metadata or {})


def has_model(run) -> bool:
    """Whether an MLflow run (as ``search_runs`` returns it) logged a model."""
    outputs = getattr(run, "outputs", None)
    return bool(outputs and outputs.model_outputs)


def normalise(images: np.ndarray, metadata: dict) -> np.ndarray:
    """uint8 images -> what the stored net takes (the training pipeline's normalisation)."""
    mean = np.asarray(metadata["normalisation_mean"], np.float32)
    std = np.asarray(metadata["normalisation_std"], np.float32)
    return (images.astype(np.float32) - mean) / std
