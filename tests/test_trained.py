"""The trained net kept with each run, and the initial net rebuilt from its seed."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from resnet_bench import config, data, trained
from resnet_bench.train import initial_model, train_run

from .helpers import ROOT, all_runs

pytestmark = pytest.mark.slow

# Run in a fresh interpreter: load every run's model as a user would, evaluate it on the run's
# own validation split, and print the accuracy next to the one the run logged at its last epoch.
_RELOAD = """
import json, sys, tomllib
import mlflow, numpy as np
import resnet_bench.models  # registers the two custom layers
from resnet_bench import config, data, trained
from mlflow.tracking import MlflowClient

uri, run_ids = sys.argv[1], sys.argv[2:]
mlflow.set_tracking_uri(uri)
client = MlflowClient(uri)
out = {}
for run_id in run_ids:
    net = mlflow.keras.load_model(f"runs:/{run_id}/model")
    info = mlflow.models.get_model_info(f"runs:/{run_id}/model")
    cfg = config.from_dict(tomllib.loads(mlflow.artifacts.load_text(f"runs:/{run_id}/config.toml")))
    arrays = data.load(cfg.data)
    x = trained.normalise(arrays.x_test, info.metadata)
    predicted = net.predict(x, batch_size=cfg.train.batch_size, verbose=0).argmax(-1)
    logged = client.get_metric_history(run_id, "top1/val")
    out[run_id] = [float(np.mean(predicted == arrays.y_test)), max(logged, key=lambda m: m.step).value,
                   info.signature.inputs.inputs[0].shape]
print(json.dumps(out))
"""


def test_each_run_keeps_its_net_which_reloads_elsewhere_with_the_logged_accuracy(tiny_sweep, tmp_path):
    folder, _, uri = tiny_sweep
    runs = all_runs(uri, "tiny")
    assert len(runs) == 8 and all(trained.has_model(r) for r in runs)
    ids = [r.info.run_id for r in runs if r.data.params["model"] in ("resnet14", "plain14")]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-c", _RELOAD, uri, *ids], cwd=tmp_path, capture_output=True, text=True, env=env
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(result) == 4
    for accuracy, logged, shape in result.values():
        assert accuracy == pytest.approx(logged, abs=1e-6)
        assert shape == [-1, 16, 16, 3]


def test_the_rebuilt_initial_net_is_the_one_training_started_from(tiny_file):
    """Captured as each run hands its model over before the first step: a fresh build, then a
    reused compiled model reset to another seed, then the first seed again."""
    cfg = config.load(tiny_file)
    spec = next(s for s in cfg.variants() if s.name == "resnet8")
    arrays = data.load(cfg.data)
    shape, classes = arrays.x_train.shape[1:], len(arrays.classes)
    started: list = []
    for seed in (0, 1, 0):
        train_run(cfg, spec, seed, arrays, on_model=lambda m, _: started.append([w.copy() for w in m.get_weights()]))
        rebuilt = initial_model(spec, shape, classes, False, seed).get_weights()
        assert len(rebuilt) == len(started[-1])
        for a, b in zip(started[-1], rebuilt):
            np.testing.assert_array_equal(a, b)
    other = initial_model(spec, shape, classes, False, 1).get_weights()
    assert any(not np.array_equal(a, b) for a, b in zip(rebuilt, other))  # the seed matters
