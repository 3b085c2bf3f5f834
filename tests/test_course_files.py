"""The course's own data files: train_X.h5 / test_X.h5 pairs with their class names."""

from pathlib import Path

import h5py
import numpy as np
import pytest

from resnet_bench import cli

from .helpers import store_uri

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


def write_pair(folder, name="catvnoncat", n_train=24, n_test=10, size=12, classes=(b"non-cat", b"cat"),
               names_in=("train", "test"), label_shape="flat", test_classes=None, test_size=None,
               listed=None):  # fmt: skip
    """A course-style pair: uint8 N x size x size x 3 images, int64 labels cycling over
    ``classes``, and ``list_classes`` (``listed`` when given, else ``classes``)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for split, n, px in (("train", n_train, size), ("test", n_test, test_size or size)):
        y = np.arange(n, dtype=np.int64) % len(classes)
        y = {"flat": y, "column": y[:, None], "row": y[None, :]}[label_shape]
        with h5py.File(folder / f"{split}_{name}.h5", "w") as f:
            f[f"{split}_set_x"] = rng.integers(0, 255, (n, px, px, 3), dtype=np.uint8)
            f[f"{split}_set_y"] = y
            if split in names_in:
                names = test_classes if split == "test" and test_classes is not None else (listed or classes)
                f["list_classes"] = np.array(names)
    return folder / f"train_{name}.h5", folder / f"test_{name}.h5"


def describe(capsys, path):
    code = cli.main(["data", "describe", str(path), "--image-size", "12"])
    out, err = capsys.readouterr()
    return code, out, err.strip()


@pytest.mark.parametrize(
    "layout, expected",
    [
        ({}, "non-cat, cat"),
        ({"classes": list(range(6)), "n_train": 30, "n_test": 12}, "0, 1, 2, 3, 4, 5"),
        ({"names_in": ("test",)}, "non-cat, cat"),
        ({"label_shape": "column"}, "non-cat, cat"),
        ({"label_shape": "row"}, "non-cat, cat"),
    ],
)
def test_either_file_or_the_folder_reads_the_pair(tmp_path, capsys, layout, expected):
    train, test = write_pair(tmp_path / "course", **layout)
    n_train, n_test = layout.get("n_train", 24), layout.get("n_test", 10)
    for given in (train, test, tmp_path / "course"):
        code, out, err = describe(capsys, given)
        assert code == 0, err
        assert f"data files: {train.name} + {test.name}" in out
        assert f"classes ({len(expected.split(', '))}): {expected}" in out
        assert f"train  {n_train:>7} images" in out and f"test   {n_test:>7} images" in out  # the real test file


@pytest.mark.parametrize(
    "layout, needle",
    [
        ({"test_classes": [b"dog", b"cat"]}, "test_catvnoncat.h5: list_classes (dog, cat) differs from"),
        ({"classes": [b"a", b"b", b"c"], "listed": [b"a", b"b"]}, "label 2 is outside the 2 named classes"),
        ({"test_size": 8}, "test_catvnoncat.h5: images are (8, 8), those of train_catvnoncat.h5 (12, 12)"),
    ],
)
def test_inconsistent_pairs_are_one_line_errors_naming_the_file(tmp_path, capsys, layout, needle):
    train, _ = write_pair(tmp_path / "course", **layout)
    code, out, err = describe(capsys, train)
    assert code == 2 and needle in err and "\n" not in err, err


def test_a_folder_with_two_pairs_lists_them(tmp_path, capsys):
    write_pair(tmp_path / "course", "signs")
    write_pair(tmp_path / "course", "happy")
    code, out, err = describe(capsys, tmp_path / "course")
    assert code == 2 and "\n" not in err
    assert "holds 2 pairs (train_happy.h5 + test_happy.h5, train_signs.h5 + test_signs.h5)" in err


def test_a_file_without_its_sibling_keeps_the_seeded_holdout(tmp_path, capsys):
    train, test = write_pair(tmp_path / "course", n_train=20)
    test.unlink()
    code, out, err = describe(capsys, train)
    assert code == 0 and "data files" not in out
    assert "train       16 images" in out and "test         4 images" in out  # holdout_fraction 0.2


@pytest.mark.slow
def test_the_default_experiment_trains_on_a_pair_and_reports_its_classes(tmp_path, capsys):
    write_pair(tmp_path / "course", n_train=64, n_test=16, size=16)
    uri = store_uri(tmp_path)
    small = ["--set", "train.epochs=1", "--set", "grid.depths=[8]", "--set", "grid.zero_init=[false]"]
    args = ["run", str(EXPERIMENTS / "shortcut_ablation.toml"), "--data", str(tmp_path / "course")]
    assert cli.main(args + ["--tracking-uri", uri, "--seeds", "0", "--jobs", "1"] + small) == 0
    assert "data files: train_catvnoncat.h5 + test_catvnoncat.h5" in capsys.readouterr().out
    out = tmp_path / "r.md"
    assert cli.main(["report", "shortcut_ablation", "--tracking-uri", uri, "--out", str(out)]) == 0
    text = out.read_text()
    assert "source `arrays` (train_catvnoncat.h5 + test_catvnoncat.h5)" in text
    assert "64 train / 16 test images, 2 classes (cat, non-cat)" in text
    from mlflow.tracking import MlflowClient

    from .helpers import all_runs

    (run,) = all_runs(uri, "shortcut_ablation")[:1]
    (inp,) = MlflowClient(tracking_uri=uri).get_run(run.info.run_id).inputs.dataset_inputs
    assert inp.dataset.name == "train_catvnoncat.h5 + test_catvnoncat.h5"
    assert "test_catvnoncat.h5" in inp.dataset.source
