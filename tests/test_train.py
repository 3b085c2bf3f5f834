"""One training run: what it measures, and the invariants the comparison relies on."""

import keras
import numpy as np
import pytest

from resnet_bench import config, data, responses, schema
from resnet_bench.train import train_run

from .helpers import EPOCH_METRICS


def _run(tiny_file, overrides=(), model="resnet8", seed=0, **kw):
    cfg = config.load(tiny_file, list(overrides))
    spec = next(s for s in cfg.variants() if s.name == model)
    return train_run(cfg, spec, seed, data.load(cfg.data), **kw)


def losses(result):
    return [row["train_loss"] for row in result.history]


@pytest.mark.slow
def test_history_has_every_metric_per_epoch(tiny_file):
    result = _run(tiny_file)
    assert [r["epoch"] for r in result.history] == [1, 2]
    for row in result.history:
        for key in (*EPOCH_METRICS, "grad_norm/stage1", "grad_norm/head"):
            assert np.isfinite(row[key]), key
    from resnet_bench.models import build_model, count_macs, count_params

    built = build_model(config.load(tiny_file).variants()[0], (16, 16, 3), 3)
    assert result.model_info["params_total"] == count_params(built)["params_total"]
    assert result.model_info["macs"] == count_macs(built)


@pytest.mark.slow
def test_probes_and_layer_responses_change_no_number(tiny_file):
    """The gradient probe runs in training mode and must restore BN statistics; He et al.
    Fig. 7's layer responses are measured in inference mode after the last epoch. A run
    without either gives the same losses, and the measurement returns one value per 3x3
    layer and per block. (One run without both: if either changed a number, they differ.)"""
    measured = _run(tiny_file)
    bare = _run(tiny_file, probes=False, responses=False)
    assert losses(measured) == losses(bare)
    assert [r["val_loss"] for r in measured.history] == [r["val_loss"] for r in bare.history]
    assert not any(k.startswith(schema.GRAD_NORM_PREFIX) for r in bare.history for k in r)
    assert bare.responses == {}
    assert list(measured.responses) == responses.metric_names(measured.model)
    kinds = [schema.parse_layer_metric(k)[0] for k in measured.responses]
    assert kinds.count("response_std") == 7 and kinds.count("branch_ratio") == 3
    assert all(np.isfinite(v) and v > 0 for v in measured.responses.values())


@pytest.mark.slow
def test_mirrored_strategy_matches_no_strategy_on_one_cpu(tiny_file):
    none = _run(tiny_file)
    mirrored = _run(tiny_file, ["train.distribute='mirrored'"])
    assert np.allclose(losses(none), losses(mirrored), rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_seed_changes_the_numbers(tiny_file):
    assert losses(_run(tiny_file, seed=0)) != losses(_run(tiny_file, seed=1))


@pytest.mark.slow
def test_a_step_schedule_steps_the_rate_at_its_boundary_in_training_with_sgd_decay_and_smoothing(tiny_file):
    result = _run(
        tiny_file,
        [
            "train.optimizer='sgd'",
            "train.lr_schedule='step'",
            "train.lr_boundaries=[3]",
            "train.learning_rate=0.1",
            "train.weight_decay=0.0001",
            "train.label_smoothing=0.1",
        ],
    )
    assert [round(r["learning_rate"], 6) for r in result.history] == [0.1, 0.01]


def test_the_optimizer_and_the_smoothed_loss_are_the_ones_configured(tiny_file):
    """SGD with the configured momentum and decoupled decay; label smoothing against the value
    by hand: q = (1 - e) onehot + e / K, loss = -sum q log p."""
    from resnet_bench.optim import make_loss, make_optimizer

    cfg = config.load(tiny_file, ["train.optimizer='sgd'", "train.weight_decay=0.0001", "train.label_smoothing=0.1"])
    opt = make_optimizer(cfg.train, 10)
    assert isinstance(opt, keras.optimizers.SGD) and opt.momentum == cfg.train.momentum and opt.weight_decay == 0.0001
    loss, _ = make_loss(cfg.train, 3)
    p = np.array([[0.7, 0.2, 0.1]], np.float32)
    q = 0.9 * np.array([1.0, 0, 0]) + 0.1 / 3
    assert float(loss(np.array([0]), p)[0]) == pytest.approx(-(q * np.log(p[0])).sum(), rel=1e-5)


def test_binary_head_for_two_classes(tiny_file):
    from resnet_bench.models import build_model
    from resnet_bench.optim import make_loss

    cfg = config.load(tiny_file, ["data.classes=2", "train.loss='binary'"])
    model = build_model(cfg.variants()[0], (16, 16, 3), 2, binary_head=True)
    assert model.output_shape == (None, 1) and model.layers[-1].activation.__name__ == "sigmoid"
    loss, _ = make_loss(cfg.train, 2)
    assert float(loss(np.array([[1.0]]), np.array([[0.8]]))) == pytest.approx(-np.log(0.8), rel=1e-5)


def test_l2_weight_decay_adds_wd_times_w_to_every_kernel_gradient_and_nothing_else():
    import keras
    import tensorflow as tf

    from resnet_bench.models import ModelSpec, build_model
    from resnet_bench.optim import add_l2_penalty

    keras.utils.set_random_seed(0)
    model = build_model(ModelSpec(8, "A", width=4), (16, 16, 3), 3)
    x = tf.random.stateless_normal((4, 16, 16, 3), seed=[1, 2])
    y = tf.constant([0, 1, 2, 0])

    def grads(with_penalty: bool):
        with tf.GradientTape() as tape:
            loss = keras.losses.sparse_categorical_crossentropy(y, model(x, training=False))
            loss = tf.reduce_mean(loss) + (tf.add_n(model.losses) if with_penalty else 0.0)
        return tape.gradient(loss, model.trainable_variables)

    plain = grads(False)
    wd = 0.01
    assert add_l2_penalty(model, wd) == 1 + 3 * 2 + 1  # stem conv, 2 convs in each of 3 blocks, head
    penalised = grads(True)
    for v, g0, g1 in zip(model.trainable_variables, plain, penalised):
        expected = wd * v.numpy() if v.path.endswith("kernel") else np.zeros(v.shape)
        np.testing.assert_allclose(g1.numpy() - g0.numpy(), expected, rtol=1e-4, atol=1e-7, err_msg=v.path)


def test_decoupled_mode_keeps_the_optimizer_decay_and_l2_mode_leaves_it_to_the_penalty(tiny_file):
    from resnet_bench.optim import make_optimizer

    cfg = config.load(tiny_file, ["train.weight_decay=0.001"])
    assert make_optimizer(cfg.train, 10).weight_decay == 0.001
    cfg = config.load(tiny_file, ["train.weight_decay=0.001", "train.weight_decay_mode='l2'"])
    assert make_optimizer(cfg.train, 10).weight_decay is None


@pytest.mark.slow
def test_steps_per_execution_changes_no_number_and_divides_the_epoch(tiny_file):
    """Several steps per compiled call run the same updates in the same order; a k that does
    not divide the epoch's steps would train extra steps, so it resolves to a divisor (4 of
    6 steps to 3, and 3 is what Keras compiled)."""
    big = ["data.train_size=192", "train.epochs=2"]  # 6 steps per epoch
    one = _run(tiny_file, big)
    four = _run(tiny_file, [*big, "train.steps_per_execution=4"])
    assert four.model_info["steps_per_execution_resolved"] == four.model.steps_per_execution == 3
    assert losses(one) == losses(four)
    assert [r["val_loss"] for r in one.history] == [r["val_loss"] for r in four.history]
    for r in four.history:  # at least half of the epoch's 6 steps take the median or longer
        assert 0 < 6 / 2 * r["step_ms_median"] <= 1000 * r["epoch_seconds"]


@pytest.mark.parametrize("schedule", ["constant", "step"])
def test_warm_up_lowers_the_rate_for_its_steps_then_hands_over_to_the_schedule(tiny_file, schedule):
    """He et al.'s warm-up: lr x factor for warmup_epochs x steps_per_epoch steps, then the schedule."""
    from resnet_bench.optim import make_optimizer

    cfg = config.load(
        tiny_file,
        [
            "train.learning_rate=0.1",
            "train.warmup_epochs=1.5",
            "train.warmup_factor=0.1",
            f"train.lr_schedule='{schedule}'",
            "train.lr_boundaries=[20]",
        ],  # fmt: skip
    )
    schedule_of = make_optimizer(cfg.train, steps_per_epoch=10)._learning_rate  # lr(step)
    got = [float(schedule_of(step)) for step in (0, 14, 15, 20, 21, 30)]
    after = 0.01 if schedule == "step" else 0.1  # Keras' step decay applies after its boundary
    assert got == pytest.approx([0.01, 0.01, 0.1, 0.1, after, after])
