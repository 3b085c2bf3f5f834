"""Experiment files -> validated config; every field reaches the logged params."""

import dataclasses
from pathlib import Path

import pytest

from resnet_bench import config
from resnet_bench.errors import UserError

EXPERIMENTS = sorted((Path(__file__).parent.parent / "experiments").glob("*.toml"))


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_shipped_experiments_parse(path):
    cfg = config.load(path, data_path=None if "synthetic" in path.read_text() or "shortcut" in path.stem else "/x")
    assert cfg.name == path.stem
    assert cfg.variants()


def test_ship_the_three_experiments():
    assert {p.stem for p in EXPERIMENTS} >= {"shortcut_ablation", "article_replication", "cifar10_paper"}


def test_overrides_reach_the_config(tiny_file):
    cfg = config.load(tiny_file, ["train.epochs=7", "train.learning_rate=0.05", "grid.seeds=[3, 4]"])
    assert cfg.train.epochs == 7
    assert cfg.train.learning_rate == 0.05
    assert cfg.grid.seeds == (3, 4)


# Fields whose other values need other settings to be valid, and those settings.
NEEDS = {
    "data.source": ['data.path="elsewhere"'],
    "train.loss": ["data.classes=2"],
    "model.family": ["grid.depths=[18]", "data.image_size=64"],
    "model.flavour": ['model.family="imagenet"', "grid.depths=[18]", 'grid.shortcuts=["B", "none"]',
                      "data.image_size=64"],
    "train.jit_compile": ["train.deterministic=false"],
    "report.held_out": ['report.held_out="other"', "report.held_out_seeds=[4]"],
    "report.held_out_seeds": ['report.held_out="other"', "report.held_out_seeds=[4]"],
}  # fmt: skip


def _toml(key: str, value) -> str:
    text = f"{key}={value!r}".replace("'", '"').replace("(", "[").replace(")", "]")
    return text.replace("True", "true").replace("False", "false")


def _other(value, choices):
    if choices:
        return next(c for c in choices if c != value)
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value / 2 if value else 0.25
    if isinstance(value, tuple):
        return (10, 20) if not value or isinstance(value[0], int) else tuple(reversed(value)) + ("B",)
    return "x"


def test_every_field_can_be_set_from_the_file_and_reaches_the_params_and_the_run_key(tiny_file):
    """A field that silently keeps its default is a classic bug: set each one from the file, read
    it back, and see the change in the logged params and in the run's identity (so a resumed
    sweep never takes a run trained under another setting for this one). A grid field decides
    which runs there are, not how one trains, an analysis field what is measured after it, and
    a report field what the report says of the seeds: all are logged, and a run's key stays as
    it was."""
    for section, cls in config.SECTIONS.items():
        for f in dataclasses.fields(cls):
            key = f"{section}.{f.name}"
            needs = NEEDS.get(key, [])
            base = config.load(tiny_file, needs)
            value = getattr(getattr(base, section), f.name)
            new = _other(value, f.metadata.get("choices"))
            if key == "grid.zero_init":
                new = (False, True)
            if key == "grid.depths":
                new = (14, 20)  # CIFAR depths are 6n + 2
            if key == "grid.shortcuts":
                new = ("B", "none")  # one residual option: variants are named by depth alone
            if key == "analysis.contours":
                new = 21  # 0 or at least 3 points a side
            cfg = config.load(tiny_file, [*needs, _toml(key, new)])
            assert getattr(getattr(cfg, section), f.name) == new, key
            assert config.flatten(cfg)[key] != config.flatten(base)[key], f"{key} is not logged as set"
            spec = base.variants()[0]
            if section in ("grid", "analysis", "report"):
                assert cfg.run_key(spec, 0) == base.run_key(spec, 0), f"{key} changes a run's key"
            else:
                assert cfg.run_key(spec, 0) != base.run_key(spec, 0), f"{key} does not change the run key"


@pytest.mark.parametrize(
    "override,needle",
    [
        ("train.epochz=3", "train.epochz: unknown key"),
        ("train.epochs='three'", "train.epochs: expected an integer"),
        ("train.epochs=0", "train.epochs must be positive"),
        ("train.optimizer='rmsprop'", "train.optimizer"),
        ("grid.depths=[21]", "6n+2"),
        ("grid.shortcuts=['D']", "grid.shortcuts"),
        ("data.holdout_fraction=1.5", "data.holdout_fraction"),
        ("data.source='folder'", "needs data.path"),
        ("model.width=-1", "width"),
        ("train.jit_compile='on'", "train.jit_compile = 'on' needs train.deterministic = false"),
        # limits of the code behind a field, checked before anything starts
        ("data.classes=31", "data.classes must be between 2 and 30 for the generated set"),
        ("data.classes=1", "data.classes must be between 2 and 30"),
        ("data.train_size=2000000000", "GB in memory, more than half of this machine's"),
        ("data.test_size=2000000000", "GB in memory"),
        ("train.batch_size=100000", "larger than data.train_size"),
        ("train.learning_rate=inf", "train.learning_rate: expected a finite number, got inf"),
        ("train.learning_rate=nan", "expected a finite number, got nan"),
        ("data.noise=-inf", "data.noise: expected a finite number"),
        ("train.momentum=-0.5", "train.momentum must be in [0, 1)"),
        ("train.weight_decay=-1e-4", "train.weight_decay must not be negative"),
        ("data.clutter=-1", "data.clutter must not be negative"),
        ("train.lr_decay=0", "train.lr_decay must be positive"),
        ("train.lr_boundaries=[0, 100]", "train.lr_boundaries must be positive step counts"),
        ("report.held_out='fig6'", "report.held_out and report.held_out_seeds go together (one is empty)"),
        ("report.design_seeds=[-1]", "report.design_seeds must be non-negative integers"),
    ],
)
def test_bad_values_are_one_line_errors_naming_key_and_file(tiny_file, override, needle):
    with pytest.raises(UserError) as e:
        config.load(tiny_file, [override])
    msg = str(e.value)
    assert needle in msg
    assert str(tiny_file) in msg
    assert "\n" not in msg


def test_a_held_out_check_names_another_experiment_and_seeds_that_did_not_choose_the_design(tiny_file):
    held = ['report.held_out="fig6"', "report.held_out_seeds=[1, 2]"]
    assert config.load(tiny_file, [*held, "report.design_seeds=[0]"]).report.held_out_seeds == (1, 2)
    with pytest.raises(UserError, match=r"report.held_out_seeds \[2\] also chose the design"):
        config.load(tiny_file, [*held, "report.design_seeds=[0, 2]"])
    with pytest.raises(UserError, match="report.held_out names this experiment itself \\('tiny'\\)"):
        config.load(tiny_file, ['report.held_out="tiny"', "report.held_out_seeds=[1]"])


def test_unknown_top_level_key(tmp_path):
    p = tmp_path / "x.toml"
    p.write_text('name = "x"\n[trainn]\nepochs = 1\n')
    with pytest.raises(UserError, match="unknown key 'trainn'"):
        config.load(p)


def test_run_key_is_stable_and_sensitive(tiny_file):
    cfg = config.load(tiny_file)
    spec = cfg.variants()[0]
    assert cfg.run_key(spec, 0) == config.load(tiny_file).run_key(spec, 0)
    assert cfg.run_key(spec, 0) != cfg.run_key(spec, 1)
    assert cfg.run_key(spec, 0) != config.load(tiny_file, ["train.epochs=3"]).run_key(spec, 0)
    # Adding seeds to the grid does not change the identity of existing runs.
    assert cfg.run_key(spec, 0) == config.load(tiny_file, ["grid.seeds=[0,1,2,3]"]).run_key(spec, 0)


def test_to_toml_round_trips(tiny_file, tmp_path):
    cfg = config.load(tiny_file, ["train.lr_boundaries=[10, 20]"])
    p = tmp_path / "again.toml"
    p.write_text(config.to_toml(cfg))
    again = config.load(p)
    assert dataclasses.replace(again, source_file="") == dataclasses.replace(cfg, source_file="")


def test_zero_init_grid_adds_residual_twins_only(tiny_file):
    cfg = config.load(tiny_file, ["grid.zero_init=[false, true]"])
    names = [s.name for s in cfg.variants()]
    assert names == ["resnet8", "resnet8-zi", "plain8", "resnet14", "resnet14-zi", "plain14"]
    assert config.load(tiny_file).variants()[0].bn_momentum == 0.9
    assert config.load(tiny_file, ["model.bn_momentum=0.99"]).variants()[0].bn_momentum == 0.99


@pytest.mark.parametrize("override", ["model.bn_momentum=1.0", "grid.zero_init=[true, true]", "grid.zero_init=[1]"])
def test_bad_zero_init_or_momentum_is_a_user_error(tiny_file, override):
    with pytest.raises(UserError):
        config.load(tiny_file, [override])


def test_reading_an_experiment_file_loads_no_deep_learning_framework(tiny_file):
    """Parsing and validating a config is cheap: no Keras, no TensorFlow."""
    import subprocess
    import sys

    code = (
        "import sys; from resnet_bench import config; "
        f"cfg = config.load({str(tiny_file)!r}); assert cfg.variants(); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('keras', 'tensorflow')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_xla_resolves_off_wherever_op_determinism_would_make_keras_drop_it(tiny_file, monkeypatch):
    import tensorflow as tf

    from resnet_bench.device import resolve_device_settings

    cfg = config.load(tiny_file, ["train.jit_compile='on'", "train.deterministic=false"])
    assert resolve_device_settings(cfg.train).jit_compile is True
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: ["a GPU"])
    gpu = {
        d: resolve_device_settings(config.load(tiny_file, [f"train.deterministic={d}"]).train)
        for d in ("true", "false")
    }
    assert gpu["true"].jit_compile is False and gpu["false"].jit_compile is True
    assert gpu["true"].mixed_precision == gpu["false"].mixed_precision == "float16"


def test_data_paths_are_guessed_by_the_rule_that_reads_them(tmp_path):
    """A folder holding a train_X / test_X pair is arrays, whichever array format; anything
    else with no pair is a photo folder."""
    for suffix in (".h5", ".npz", ".hdf5"):
        folder = tmp_path / suffix[1:]
        folder.mkdir()
        (folder / f"train_x{suffix}").write_bytes(b"")
        assert config.guess_source(str(folder)) == "folder"  # no test file beside it
        (folder / f"test_x{suffix}").write_bytes(b"")
        assert config.guess_source(str(folder)) == "arrays", suffix
        assert config.guess_source(str(folder / f"train_x{suffix}")) == "arrays"
    photos = tmp_path / "photos"
    (photos / "training_set" / "cats").mkdir(parents=True)
    (photos / "train_x.npz").write_bytes(b"")
    (photos / "test_x.npz").write_bytes(b"")
    assert config.guess_source(str(photos)) == "folder"  # the tutorial's layout wins
    assert config.guess_source(str(tmp_path / "cifar-10-python.tar.gz")) == "cifar10"
