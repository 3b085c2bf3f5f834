"""Data sources and the pipeline, on small files built in temporary folders."""

import json
import pickle
import tarfile

import h5py
import numpy as np
import pytest
from PIL import Image

from resnet_bench import cli, data
from resnet_bench.config import DataConfig
from resnet_bench.data import synthetic
from resnet_bench.errors import UserError


def _img(mode="RGB", size=(40, 30), value=0):
    rng = np.random.default_rng(value)
    arr = rng.integers(0, 255, size=(size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(arr).convert(mode)


def make_folder(root, classes=("cats", "dogs"), n_train=6, n_test=3, layout="split"):
    """A photo folder with every supported format and colour mode."""
    writers = [
        lambda p, i: _img("RGB", value=i).save(p.with_suffix(".jpg")),
        lambda p, i: _img("L", value=i).save(p.with_suffix(".png")),
        lambda p, i: _img("P", value=i).save(p.with_suffix(".png")),
        lambda p, i: _img("RGBA", value=i).save(p.with_suffix(".webp")),
        lambda p, i: _img("CMYK", value=i).save(p.with_suffix(".jpeg")),
        lambda p, i: _img("RGB", value=i).save(p.with_suffix(".bmp")),
        lambda p, i: _img("P", value=i).save(
            p.with_suffix(".gif"), save_all=True, append_images=[_img("P", value=i + 1)]
        ),
    ]
    splits = {"training_set": n_train, "test_set": n_test} if layout == "split" else {".": n_train + n_test}
    for split, n in splits.items():
        for c in classes:
            d = root / split / c
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                writers[i % len(writers)](d / f"{c}_{i}", i)
    return root


def cfg(**kw):
    return DataConfig(**{"image_size": 16, **kw})


def test_synthetic_same_seed_same_bytes_other_seed_other_hash():
    a = data.describe(data.load(cfg(train_size=64, test_size=16, generator_seed=3)))
    data.load.cache_clear()
    b = data.describe(data.load(cfg(train_size=64, test_size=16, generator_seed=3)))
    c = data.describe(data.load(cfg(train_size=64, test_size=16, generator_seed=4)))
    assert a["hash"] == b["hash"] != c["hash"]
    x1, y1 = synthetic.generate(50, 24, 5, seed=9)
    x2, y2 = synthetic.generate(50, 24, 5, seed=9)
    assert x1.dtype == np.uint8 and x1.shape == (50, 24, 24, 3)
    assert np.array_equal(x1, x2) and np.array_equal(y1, y2)
    assert np.bincount(y1).tolist() == [10] * 5


def test_synthetic_cache_is_reused(tmp_path, monkeypatch):
    monkeypatch.setenv("RESNET_BENCH_CACHE", str(tmp_path))
    data.load.cache_clear()
    first = data.load(cfg(train_size=32, test_size=8, generator_seed=11))
    files = list(tmp_path.glob("synthetic-*.npz"))
    assert len(files) == 1
    data.load.cache_clear()
    again = data.load(cfg(train_size=32, test_size=8, generator_seed=11))
    assert np.array_equal(first.x_train, again.x_train)


def test_folder_all_formats_and_modes(tmp_path):
    root = make_folder(tmp_path / "photos")
    (root / "training_set" / "cats" / "Thumbs.db").write_bytes(b"\0\1")
    (root / "training_set" / "dogs" / ".DS_Store").write_bytes(b"\0")
    (root / "test_set" / "dogs" / "notes.txt").write_text("hello")
    arrays = data.load(cfg(source="folder", path=str(root)))
    info = data.describe(arrays)
    assert info["classes"] == ["cats", "dogs"]
    assert info["counts"] == {"train": {"cats": 6, "dogs": 6}, "test": {"cats": 3, "dogs": 3}}
    assert info["ignored"] == 3
    assert arrays.x_train.shape == (12, 16, 16, 3) and arrays.x_train.dtype == np.uint8


def test_corrupt_jpeg_is_skipped_named_and_counted(tmp_path, caplog):
    root = make_folder(tmp_path / "photos", n_train=100)
    good = (root / "training_set" / "cats" / "cats_0.jpg").read_bytes()
    bad = root / "training_set" / "cats" / "broken.jpg"
    bad.write_bytes(good[:200])
    with caplog.at_level("INFO", logger="resnet_bench.data.decoded"):
        arrays = data.load(cfg(source="folder", path=str(root), max_bad_fraction=0.05))
    assert str(bad) in arrays.skipped
    assert data.describe(arrays)["skipped"] == 1
    assert "broken.jpg" in caplog.text  # each file at INFO, which -v shows
    assert all(r.levelname == "INFO" for r in caplog.records)  # not a warning per file


def test_many_skipped_files_are_summarised_in_one_line(tmp_path):
    root = make_folder(tmp_path / "photos", n_train=30)
    for i in range(12):
        (root / "training_set" / "dogs" / f"bad{i:02d}.jpg").write_bytes(b"not a jpeg")
    arrays = data.load(cfg(source="folder", path=str(root), max_bad_fraction=0.5))
    summary = data.skipped_summary(arrays)
    assert "\n" not in summary and summary.startswith("skipped 12 unreadable")
    shown = [f"bad{i:02d}.jpg" for i in range(12) if f"bad{i:02d}.jpg" in summary]
    assert shown == ["bad00.jpg", "bad01.jpg", "bad02.jpg"] and "skipped_files.txt" in summary
    assert data.skipped_summary(data.load(cfg(source="folder", path=str(make_folder(tmp_path / "ok"))))) is None


def test_too_many_bad_files_stop_with_an_error(tmp_path):
    root = make_folder(tmp_path / "photos", n_train=4, n_test=2)
    for i in range(3):
        (root / "training_set" / "dogs" / f"bad{i}.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(UserError, match="unreadable"):
        data.load(cfg(source="folder", path=str(root)))


@pytest.mark.parametrize(
    "breakage,needle",
    [
        ("missing_root", "data folder not found"),
        ("no_test_set", "test_set"),
        ("one_class", "at least two class folders"),
        ("empty_class", "has no images"),
    ],
)
def test_bad_folders_are_user_errors_naming_the_path(tmp_path, breakage, needle):
    root = tmp_path / "photos"
    if breakage != "missing_root":
        make_folder(root, n_train=2, n_test=1)
    if breakage == "no_test_set":
        import shutil

        shutil.rmtree(root / "test_set")
    if breakage == "one_class":
        import shutil

        shutil.rmtree(root / "training_set" / "dogs")
    if breakage == "empty_class":
        for f in (root / "training_set" / "dogs").iterdir():
            f.unlink()
    with pytest.raises(UserError) as e:
        data.load(cfg(source="folder", path=str(root)))
    assert needle in str(e.value) and str(root) in str(e.value)


def test_max_per_class_is_a_seeded_subset_not_the_first_files(tmp_path):
    root = make_folder(tmp_path / "photos", n_train=20)
    a = data.load(cfg(source="folder", path=str(root), max_per_class=5, generator_seed=1))
    b = data.load(cfg(source="folder", path=str(root), max_per_class=5, generator_seed=2))
    first5 = data.load(cfg(source="folder", path=str(root), max_per_class=20))
    assert np.bincount(a.y_train).tolist() == [5, 5]
    assert not np.array_equal(a.x_train, b.x_train)
    assert not np.array_equal(a.x_train[:5], first5.x_train[:5])


def test_single_tree_with_seeded_holdout(tmp_path):
    root = make_folder(tmp_path / "flat", n_train=8, n_test=2, layout="flat")
    arrays = data.load(cfg(source="folder", path=str(root), holdout_fraction=0.2))
    assert len(arrays.x_test) == 4 and len(arrays.x_train) == 16


def _cifar_batch(n, seed):
    rng = np.random.default_rng(seed)
    return {b"data": rng.integers(0, 255, (n, 3072), dtype=np.uint8), b"labels": list(rng.integers(0, 10, n))}


def make_cifar(folder):
    folder.mkdir(parents=True)
    for i, name in enumerate([f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]):
        (folder / name).write_bytes(pickle.dumps(_cifar_batch(10, i)))
    return folder


def test_cifar10_folder_and_archive_agree(tmp_path):
    folder = make_cifar(tmp_path / "cifar-10-batches-py")
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname="cifar-10-batches-py")
    a = data.load(cfg(source="cifar10", path=str(folder), image_size=32))
    b = data.load(cfg(source="cifar10", path=str(archive), image_size=32))
    assert a.x_train.shape == (50, 32, 32, 3) and a.x_test.shape == (10, 32, 32, 3)
    assert data.describe(a)["hash"] == data.describe(b)["hash"]
    assert len(a.classes) == 10


def test_cifar10_missing_says_where_to_put_it(tmp_path):
    with pytest.raises(UserError, match="cifar-10-python.tar.gz"):
        data.load(cfg(source="cifar10", path=str(tmp_path / "nope")))


def test_h5_in_the_classic_cat_layout(tmp_path):
    p = tmp_path / "cats.h5"
    rng = np.random.default_rng(0)
    with h5py.File(p, "w") as f:
        f["train_set_x"] = rng.integers(0, 255, (20, 12, 12, 3), dtype=np.uint8)
        f["train_set_y"] = rng.integers(0, 2, (1, 20))
        f["test_set_x"] = rng.integers(0, 255, (6, 12, 12, 3), dtype=np.uint8)
        f["test_set_y"] = np.array([[0, 1, 0, 1, 0, 1]])
    arrays = data.load(cfg(source="arrays", path=str(p)))
    assert arrays.x_train.shape == (20, 16, 16, 3) and arrays.classes == ["0", "1"]


def test_npz_with_custom_keys_and_holdout(tmp_path):
    p = tmp_path / "set.npz"
    rng = np.random.default_rng(0)
    np.savez(p, images=rng.random((30, 16, 16, 3)).astype("float32"), labels=np.arange(30) % 3)
    arrays = data.load(cfg(source="arrays", path=str(p), x_key="images", y_key="labels"))
    assert len(arrays.x_train) + len(arrays.x_test) == 30 and arrays.x_train.dtype == np.uint8


@pytest.mark.parametrize(
    "labels,needle",
    [
        (np.arange(29) % 3, "29 labels for 30 images"),
        (np.arange(30) % 3 - 1, "0..K-1"),
        (np.linspace(0, 1, 30), "integers"),
    ],
)
def test_bad_arrays_are_clear_errors(tmp_path, labels, needle):
    p = tmp_path / "bad.npz"
    np.savez(p, x=np.zeros((30, 8, 8, 3), np.uint8), y=labels)
    with pytest.raises(UserError, match=needle):
        data.load(cfg(source="arrays", path=str(p), x_key="x", y_key="y"))


def test_bad_image_shapes_are_clear_errors(tmp_path):
    p = tmp_path / "bad.npz"
    np.savez(p, x=np.zeros((30, 8), np.uint8), y=np.arange(30) % 2)
    with pytest.raises(UserError, match="expected images shaped"):
        data.load(cfg(source="arrays", path=str(p), x_key="x", y_key="y"))


def _batches(pipes, k):
    it = iter(pipes.train)
    return [next(it) for _ in range(k)]


def test_pipeline_order_fixed_by_seed():
    arrays = data.load(cfg(train_size=64, test_size=16))
    a = _batches(data.make_pipelines(arrays, 16, seed=5), 6)
    b = _batches(data.make_pipelines(arrays, 16, seed=5), 6)
    c = _batches(data.make_pipelines(arrays, 16, seed=6), 6)
    assert all(np.array_equal(x[1], y[1]) and np.array_equal(x[0], y[0]) for x, y in zip(a, b))
    assert not all(np.array_equal(x[1], y[1]) for x, y in zip(a, c))
    # Epochs are reshuffled: the second pass over the data differs from the first.
    assert not np.array_equal(np.concatenate([x[1] for x in a[:4]]), np.concatenate([x[1] for x in a[4:6] * 2]))


def test_augmentation_is_seeded_and_changes_images():
    arrays = data.load(cfg(train_size=32, test_size=8))
    plain = _batches(data.make_pipelines(arrays, 8, seed=1), 2)
    aug1 = _batches(data.make_pipelines(arrays, 8, seed=1, augment=True), 2)
    aug2 = _batches(data.make_pipelines(arrays, 8, seed=1, augment=True), 2)
    assert np.array_equal(aug1[0][0], aug2[0][0])
    assert not np.array_equal(aug1[0][0], plain[0][0])
    assert np.array_equal(aug1[0][1], plain[0][1])


def test_normalisation_standardises_train_split():
    arrays = data.load(cfg(train_size=256, test_size=8))
    pipes = data.make_pipelines(arrays, 256, seed=0)
    x, _ = next(iter(pipes.train))
    assert abs(float(np.mean(x))) < 0.05 and abs(float(np.std(x)) - 1) < 0.05
    unit = data.make_pipelines(arrays, 256, seed=0, normalization="unit")
    x, _ = next(iter(unit.train))
    assert 0 <= float(np.min(x)) and float(np.max(x)) <= 1


def test_cli_describe_json_and_preview(tmp_path, capsys):
    root = make_folder(tmp_path / "photos", n_train=3, n_test=2)
    assert cli.main(["data", "describe", str(root), "--image-size", "16", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["classes"] == ["cats", "dogs"] and out["image_size"] == 16
    assert set(out) >= {"classes", "counts", "image_size", "hash"}
    assert cli.main(["data", "describe", "synthetic", "--set", "data.train_size=40", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["counts"]["train"]
    png = tmp_path / "grid.png"
    assert cli.main(["data", "preview", "synthetic", "--out", str(png)]) == 0
    assert Image.open(png).size[0] > 100


def test_cli_missing_folder_exits_2_with_one_line(tmp_path, capsys):
    assert cli.main(["data", "describe", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err and "nothing" in err


def test_cli_describe_cifar_folder_and_array_files(tmp_path, capsys):
    folder = make_cifar(tmp_path / "cifar-10-batches-py")
    npz = tmp_path / "set.npz"
    np.savez(npz, train_set_x=np.zeros((12, 8, 8, 3), np.uint8), train_set_y=np.arange(12) % 2)
    for source, classes in ((folder, 10), (npz, 2)):
        assert cli.main(["data", "describe", str(source), "--json"]) == 0
        out = json.loads(capsys.readouterr().out)
        assert len(out["classes"]) == classes and out["image_size"] == 32 and len(out["hash"]) == 16


def _full_disk(*args, **kwargs):
    import errno

    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_while_caching_generated_data_is_one_line_and_leaves_no_file(tmp_path, monkeypatch):
    from resnet_bench.data import generated

    def partial_then_full(path, **arrays):
        open(path, "wb").write(b"PK half a file")
        _full_disk()

    monkeypatch.setenv("RESNET_BENCH_CACHE", str(tmp_path))
    monkeypatch.setattr(generated.np, "savez", partial_then_full)
    data.load.cache_clear()
    with pytest.raises(UserError) as e:
        data.load(cfg(train_size=32, test_size=8, generator_seed=12))
    msg = str(e.value)
    assert msg.startswith(f"{tmp_path}: no space left on the device while writing the generated data set")
    assert "$RESNET_BENCH_CACHE" in msg and "\n" not in msg
    assert list(tmp_path.iterdir()) == []  # nothing a later run could read as a cache


def test_every_hold_out_is_drawn_by_the_one_seeded_helper(tmp_path):
    """An array file's hold-out, ``validation_size`` and a photo tree's hold-out are each the
    subset :func:`split.seeded_subset` draws for their salt, with the kept images in order."""
    from resnet_bench.data import decoded, split

    p = tmp_path / "set.npz"
    x = np.arange(30, dtype=np.uint8)[:, None, None, None] * np.ones((1, 16, 16, 3), np.uint8)  # image i is all i
    np.savez(p, x=x, y=np.arange(30) % 3)
    arrays = data.load(cfg(source="arrays", path=str(p), x_key="x", y_key="y", holdout_fraction=0.2, generator_seed=5))
    keep, held = split.holdout(30, 6, 5, "holdout")
    assert arrays.x_test[:, 0, 0, 0].tolist() == held.tolist() and arrays.x_train[:, 0, 0, 0].tolist() == keep.tolist()
    val = data.load(cfg(source="arrays", path=str(p), x_key="x", y_key="y", holdout_fraction=0.2, generator_seed=5,
                        validation_size=4))  # fmt: skip
    keep2, held2 = split.holdout(24, 4, 5, "validation")
    assert val.x_test[:, 0, 0, 0].tolist() == keep[held2].tolist()
    assert val.x_train[:, 0, 0, 0].tolist() == keep[keep2].tolist()
    root = make_folder(tmp_path / "flat", n_train=8, n_test=2, layout="flat")
    photos = data.load(cfg(source="folder", path=str(root), holdout_fraction=0.2, generator_seed=5))
    files = sorted((root / "cats").iterdir())
    chosen = split.seeded_subset(len(files), 2, 5, "holdout:cats")
    first_cat = decoded.decode_image(files[chosen[0]], 16, "crop")
    assert np.array_equal(photos.x_test[0], first_cat)  # the first held-out cat is the helper's first pick


def test_the_report_counts_the_grid_as_the_config_expands_it():
    """The runs a report expects are the config's own variants x seeds (``GridConfig.cells``):
    zero-init twins of the residual nets only."""
    import pandas as pd

    from resnet_bench import config
    from resnet_bench.report import _expected_runs

    grid = ["grid.zero_init=[false, true]", "grid.shortcuts=['A', 'none']", "grid.seeds=[0, 1, 2]"]
    cfg = config.load("experiments/shortcut_ablation.toml", grid)
    flat = config.flatten(cfg)
    first = pd.DataFrame([{**{k: flat[k] for k in flat if k.startswith("grid.")}, "start_time": 0}])
    assert _expected_runs(first) == len(cfg.variants()) * 3 == 2 * 3 * 3
