"""Lesions, landscapes and curvature: each checked against an independent fact, then the
command on the session's tiny sweep (deterministic, resumable, and one line for bad input)."""

import contextlib
import io
import json
import re
import sqlite3
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from resnet_bench import cli, schema
from resnet_bench.analysis import curvature, landscape, lesions
from resnet_bench.models import build_model
from resnet_bench.spec import ModelSpec
from resnet_bench.tracking import Store

from .helpers import all_runs, private_store

SHAPE, CLASSES = (16, 16, 3), 3


def _net(shortcut: str) -> keras.Model:
    """A tiny CIFAR-style net whose BN layers hold non-trivial scales, shifts and statistics."""
    keras.utils.set_random_seed(3)
    model = build_model(ModelSpec(8, shortcut, "cifar", width=4), SHAPE, CLASSES)
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            g, b, m, v = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, g.shape), rng.normal(0, 0.3, b.shape),
                               rng.normal(0, 0.3, m.shape), rng.uniform(0.5, 2, v.shape)])  # fmt: skip
    return model


def _images(n=8, seed=1):
    return np.random.default_rng(seed).normal(size=(n, *SHAPE)).astype(np.float32)


@pytest.mark.parametrize("block", ["stage1_block1", "stage2_block1", "stage3_block1"])
def test_a_deleted_residual_block_is_the_net_without_that_blocks_branch(block):
    """The reference is the trained net itself with the branch's last BN scale and shift set
    to 0, so that the branch adds exactly nothing: no lesion code is involved."""
    net, spec, x = _net("A"), ModelSpec(8, "A", "cifar", width=4), _images()
    gated = lesions.lesionable_copy(net, spec, binary=False)
    np.testing.assert_array_equal(gated.predict(x, verbose=0), net.predict(x, verbose=0))  # gates at 1: the same net
    gated.get_layer(f"{block}_gate").g.assign(0.0)
    bn = net.get_layer(f"{block}_bn2")
    g, b, m, v = bn.get_weights()
    bn.set_weights([np.zeros_like(g), np.zeros_like(b), m, v])
    np.testing.assert_allclose(gated.predict(x, verbose=0), net.predict(x, verbose=0), rtol=0, atol=1e-6)


def test_a_deleted_plain_block_passes_its_input_on():
    net, spec, x = _net("none"), ModelSpec(8, "none", "cifar", width=4), _images()
    gated = lesions.lesionable_copy(net, spec, binary=False)
    gated.get_layer("stage1_block1_gate").g.assign(0.0)
    taps = keras.Model(
        gated.inputs, [gated.get_layer("stem_relu").output, gated.get_layer("stage1_block1_gate").output]
    )
    before, after = taps(x, training=False)
    np.testing.assert_array_equal(before.numpy(), after.numpy())
    assert lesions.blocks(gated) == [("stage1_block1", False), ("stage2_block1", True), ("stage3_block1", True)]


def test_lesion_summary_on_hand_computed_numbers():
    result = {"base": 0.8, "downsampling": [False, True, False], "accuracy": [0.7, 0.2, 0.5]}
    s = lesions.summary(result, chance=0.1, floor=0.05)
    assert s["mean_drop"] == pytest.approx(0.2) and s["worst_drop"] == pytest.approx(0.3)
    assert s["downsampling_drop"] == pytest.approx(0.6) and s["relative_drop"] == pytest.approx(0.2 / 0.7)
    assert lesions.summary({**result, "base": 0.12}, chance=0.1, floor=0.05)["relative_drop"] is None


def test_filter_normalised_directions_match_each_filters_norm_and_move_kernels_only():
    net = _net("A")
    weights = [v.numpy() for v in landscape.kernels(net)]
    assert len(weights) == 8  # stem, 3 blocks x 2 convs, head
    for w, d in zip(weights, landscape.filter_normalised(weights, seed=0, direction=1)):
        axes = tuple(range(w.ndim - 1))
        np.testing.assert_allclose(np.sqrt((d**2).sum(axis=axes)), np.sqrt((w**2).sum(axis=axes)), rtol=1e-5)
    others = {v.path: v.numpy() for v in net.weights if v.path not in {k.path for k in landscape.kernels(net)}}
    assert (
        any("gamma" in p for p in others)
        and any("moving_mean" in p for p in others)
        and any("bias" in p for p in others)
    )
    seen = []

    def loss():
        seen.append({p: v.numpy() for p, v in ((v.path, v) for v in net.weights)})
        return 0.0

    surface = landscape.Surface(net, loss)
    d = landscape.filter_normalised(surface.w0, 0, 0)
    surface.at([(0.5, d)])
    for path, value in others.items():
        np.testing.assert_array_equal(seen[0][path], value)  # BN and biases did not move
    moved = [seen[0][k.path] for k in landscape.kernels(net)]
    for m, w, dk in zip(moved, weights, d):
        np.testing.assert_allclose(m, w + 0.5 * dk, rtol=1e-6, atol=1e-7)
    for k, w in zip(landscape.kernels(net), weights):
        np.testing.assert_array_equal(k.numpy(), w)  # and the kernels are put back


def test_sharpness_of_a_parabola():
    a = landscape.alphas(21)
    assert landscape.sharpness([list(3 * a**2 + 1), list(a**2)], alpha=0.2) == pytest.approx((0.12 + 0.04) / 2)


def test_power_iteration_finds_a_quadratics_top_eigenvalue():
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(30, 30)))
    a = q @ np.diag(np.linspace(-2, 5, 30)) @ q.T
    found = curvature.power_iteration(lambda v: a @ v, 30, seed=0, tolerance=1e-9, max_iterations=2000)
    assert found["converged"] and found["eigenvalue"] == pytest.approx(5.0, rel=1e-6)


def test_power_iteration_matches_the_exact_hessian_of_a_tiny_net():
    """The full Hessian by automatic differentiation of the gradient (a Jacobian), its top
    eigenvalue by numpy, against power iteration on Hessian-vector products."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(3, activation="tanh"), keras.layers.Dense(3, activation="softmax")]
    )
    x = np.random.default_rng(1).normal(size=(16, 4)).astype(np.float32)
    y = np.random.default_rng(2).integers(0, 3, 16)
    params = model.trainable_variables
    with tf.GradientTape(persistent=True) as outer:
        with tf.GradientTape() as inner:
            loss = keras.losses.SparseCategoricalCrossentropy()(y, model(x))
        flat = tf.concat([tf.reshape(g, [-1]) for g in inner.gradient(loss, params)], 0)
    hessian = np.concatenate([tf.reshape(j, [flat.shape[0], -1]).numpy() for j in outer.jacobian(flat, params)], 1)
    eig = np.linalg.eigvalsh((hessian + hessian.T) / 2)
    top = eig[np.argmax(np.abs(eig))]
    hvp, size = curvature.hessian_vector_product(model, x, y)
    assert size == hessian.shape[0] == 27
    found = curvature.power_iteration(hvp, size, seed=0, tolerance=1e-6, max_iterations=5000)
    assert found["eigenvalue"] == pytest.approx(top, rel=1e-3)


def _analyse(args):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(["analyse", *args])
    return code, out.getvalue(), err.getvalue()


ONE_DEPTH = ["--set", "grid.depths=[8]", "--set", "grid.seeds=[0]"]  # the grid picks runs; keys stay the same


def _result(store, run_id: str, folder) -> dict:
    folder.mkdir()
    return json.loads(Path(store.client.download_artifacts(run_id, schema.ANALYSIS_ARTIFACT, str(folder))).read_text())


def test_lanes_keep_each_variants_runs_in_one_process_and_balance_the_depths():
    from resnet_bench.analysis import lanes

    specs = {d: [ModelSpec(depth=d, shortcut=s) for s in ("A", "none")] for d in (20, 56)}
    tasks = [(None, "", None, spec, seed, f"{spec.name}-{seed}", False) for d in (20, 56) for spec in specs[d]
             for seed in range(4)]  # fmt: skip
    split = lanes(tasks, 2)
    assert sorted(t[5] for lane in split for t in lane) == sorted(t[5] for t in tasks)
    for spec in specs[20] + specs[56]:  # every run of a variant in one lane
        assert sum(any(t[3] == spec for t in lane) for lane in split) == 1
    assert [sorted(t[3].depth for t in lane) for lane in split] == [[20] * 4 + [56] * 4] * 2  # equal work
    assert [len(lane) for lane in lanes(tasks, 8)] == [4, 4, 4, 4]  # one process per variant at most


@pytest.mark.slow
def test_run_analyse_measures_each_run_where_it_trained_as_analyse_would_in_workers_or_not(tiny_sweep, tmp_path):
    """``run --analyse`` (what make bench runs) measures each run in the worker that trained
    it, from the net in memory, for the configuration its ``--set`` made; the pass after the
    sweep finds nothing left, and ``analyse`` from the stored nets, in worker processes or in
    this one, gives the same numbers, and resumes."""
    _, exp, _ = tiny_sweep
    uri = f"sqlite:///{tmp_path}/db.sqlite"
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(["run", str(exp), "--tracking-uri", uri, *ONE_DEPTH, "--jobs", "2", "--analyse"])
    assert code == 0, err.getvalue()
    printed = out.getvalue()
    assert sorted(re.findall(r"\] (\w+) seed 0: analysed in", printed)) == ["plain8", "resnet8"], printed
    assert "analysed 0 runs" in printed and "2 already analysed" in printed
    runs = {r.data.params["model"]: r for r in all_runs(uri, "tiny")}
    assert set(runs) == {"resnet8", "plain8"}
    store = Store(uri)
    during = {m: _result(store, r.info.run_id, tmp_path / m) for m, r in runs.items()}
    for m, result in during.items():
        assert len(result["lesions"]["accuracy"]) == 3 and len(result["landscape_final"]["loss"]) == 2
        assert len(result["landscape_init"]["loss"][0]) == 21
        assert set(schema.ANALYSIS_METRICS) <= set(store.get_run(runs[m].info.run_id).data.metrics)
    code, printed, _ = _analyse([str(exp), "--tracking-uri", uri, *ONE_DEPTH])
    assert code == 0 and "analysed 0 runs" in printed and "2 already analysed" in printed
    for jobs in ("2", "1"):  # from the stored nets: in worker processes, then in this one
        code, printed, err = _analyse([str(exp), "--tracking-uri", uri, *ONE_DEPTH, "--force", "--jobs", jobs])
        assert code == 0 and "analysed 2 runs" in printed, err
        for m, r in runs.items():
            again = _result(store, r.info.run_id, tmp_path / f"{m}-jobs{jobs}")
            for key in ("lesions", "landscape_init", "landscape_final", "curvature_init", "curvature_final"):
                assert again[key] == during[m][key], (m, jobs, key)


def _repoint_models(uri: str, folder) -> None:
    """Point every logged model of the store at ``folder`` (SQL on MLflow's own table)."""
    db = uri.removeprefix("sqlite:///")
    with contextlib.closing(sqlite3.connect(db)) as con, con:
        con.execute("UPDATE logged_models SET artifact_location = ?", (f"file://{folder}",))


@pytest.mark.slow
def test_runs_without_a_model_are_skipped_and_a_missing_or_corrupt_one_or_none_is_one_line(tiny_sweep, tmp_path):
    _, exp, uri = tiny_sweep
    uri = private_store(uri, tmp_path)
    db = tmp_path / "db.sqlite"
    plain = next(r.info.run_id for r in all_runs(uri, "tiny") if r.info.run_name == "plain8-seed0")
    with contextlib.closing(sqlite3.connect(db)) as con, con:  # one run as if trained before runs kept nets
        con.execute("DELETE FROM inputs WHERE destination_type = 'MODEL_OUTPUT' AND source_id = ?", (plain,))
    code, out, err = _analyse([str(exp), "--tracking-uri", uri, *ONE_DEPTH, "--force"])
    assert code == 0, err
    assert "1 of 2 runs have no stored model (trained before runs kept nets): skipped" in out
    assert "analysed 1 runs" in out and "1 without a stored model" in out
    _repoint_models(uri, tmp_path / "gone")
    code, _, err = _analyse([str(exp), "--tracking-uri", uri, *ONE_DEPTH, "--force"])
    assert code == 2 and err.count("\n") == 1 and "has no stored model" in err and "resnet8 seed 0" in err, err
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "MLmodel").write_text("flavors: {keras: {keras_version: 3}}\n")
    _repoint_models(uri, broken)
    code, _, err = _analyse([str(exp), "--tracking-uri", uri, *ONE_DEPTH, "--force"])
    assert code == 2 and err.count("\n") == 1 and "cannot be read" in err, err
    with contextlib.closing(sqlite3.connect(db)) as con, con:  # as a store of runs trained before nets were kept
        con.execute("DELETE FROM inputs WHERE destination_type = 'MODEL_OUTPUT'")
        con.execute("DELETE FROM logged_models")
    code, _, err = _analyse([str(exp), "--tracking-uri", uri, *ONE_DEPTH])
    assert code == 2 and err.count("\n") == 1 and "no run of 'tiny' has a stored model" in err, err


def test_a_stopped_analysis_says_what_it_leaves(capsys, monkeypatch):
    import signal

    from resnet_bench import driver, signals

    monkeypatch.setattr(driver, "STAGE", "runs")  # a sweep's runs under way
    with signals.raising():  # _stopped ignores further stops; this test process gets its handlers back
        assert cli._stopped(signal.SIGINT, "analyse") == 130
        assert cli._stopped(signal.SIGTERM, "run") == 143
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "interrupted: the runs measured so far keep their results; run the same command again to resume",
        "terminated: the current run is marked KILLED; run again to resume",
    ]
