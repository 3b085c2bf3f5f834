"""Photo folders decoded once into a store on disk: reused, keyed by the files, memory-mapped
when large, whole or absent after a kill, a full disk or an interrupt."""

import contextlib
import io
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from resnet_bench import cli, data
from resnet_bench.data import arrays as arrays_mod
from resnet_bench.data import decoded
from resnet_bench.errors import UserError

from .test_data import _full_disk, cfg, make_folder


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("RESNET_BENCH_CACHE", str(folder))
    data.load.cache_clear()
    yield folder
    data.load.cache_clear()


def _counting(monkeypatch, delay: float = 0.0) -> list:
    calls = []
    real = decoded.decode_image

    def decode(path, size, resize):
        calls.append(path)
        time.sleep(delay)
        return real(path, size, resize)

    monkeypatch.setattr(decoded, "decode_image", decode)
    return calls


def _stores(cache) -> list:
    return sorted(p.name for p in (cache / "decoded").iterdir() if p.is_dir() and not p.name.endswith(".partial"))


def _folder_cfg(root, **kw):
    return cfg(source="folder", path=str(root), **kw)


def test_a_folder_is_decoded_once_and_opened_by_every_later_load(tmp_path, cache, monkeypatch):
    root = make_folder(tmp_path / "photos")
    calls = _counting(monkeypatch)
    first = data.load(_folder_cfg(root))
    assert len(calls) == 2 * (6 + 3)  # every photo, once
    data.load.cache_clear()  # another process, another sweep
    again = data.load(_folder_cfg(root))
    assert len(calls) == 18 and len(_stores(cache)) == 1
    for a, b in zip((first.x_train, first.y_train, first.x_test, first.y_test),
                    (again.x_train, again.y_train, again.x_test, again.y_test)):  # fmt: skip
        np.testing.assert_array_equal(a, b)
    assert data.describe(again)["hash"] == arrays_mod.digest((again.x_train, again.y_train, again.x_test, again.y_test))
    data.load.cache_clear()
    data.load(_folder_cfg(root, image_size=24))  # another size: another store
    assert len(_stores(cache)) == 2


@pytest.mark.parametrize("change", ["edited", "added", "removed"])
def test_a_changed_added_or_removed_photo_gives_a_new_store(tmp_path, cache, change):
    root = make_folder(tmp_path / "photos")
    before = data.load(_folder_cfg(root))
    cat = root / "training_set" / "cats" / "cats_0.jpg"
    if change == "edited":  # same name, other pixels
        from PIL import Image

        Image.fromarray(np.full((30, 40, 3), 200, np.uint8)).save(cat)
    elif change == "added":
        (root / "training_set" / "cats" / "extra.jpg").write_bytes(cat.read_bytes())
    else:
        cat.unlink()
    data.load.cache_clear()
    after = data.load(_folder_cfg(root))
    assert len(_stores(cache)) == 2 and after.store != before.store
    expected = {"edited": 12, "added": 13, "removed": 11}[change]
    assert len(after.x_train) == expected
    assert data.describe(after)["hash"] != data.describe(before)["hash"]


def test_above_the_memory_bound_a_worker_trains_from_read_only_memory_maps(tmp_path, cache, monkeypatch):
    monkeypatch.setattr(arrays_mod, "IN_MEMORY_BYTES", 1000)  # every split is "large" here
    root = make_folder(tmp_path / "photos")
    arrays = data.load(_folder_cfg(root))
    for x in (arrays.x_train, arrays.x_test):
        assert isinstance(x, np.memmap) and not x.flags.writeable  # the store's pages, not a copy
        assert os.path.dirname(x.filename) == arrays.store
    monkeypatch.setattr(arrays_mod, "IN_MEMORY_BYTES", 2 * 1024**3)
    data.load.cache_clear()
    small = data.load(_folder_cfg(root))
    assert not isinstance(small.x_train, np.memmap)  # below the bound: read into memory


_KILLABLE = """
import sys, time
from resnet_bench import data
from resnet_bench.config import DataConfig
from resnet_bench.data import decoded
real = decoded.decode_image
def slow(path, size, resize):
    time.sleep(0.2)
    return real(path, size, resize)
decoded.decode_image = slow
data.load(DataConfig(source="folder", path=sys.argv[1], image_size=16))
"""


def test_a_decode_killed_halfway_leaves_no_store_and_the_next_decode_is_whole(tmp_path, cache):
    root = make_folder(tmp_path / "photos", n_train=20, n_test=5)
    env = {**os.environ, "RESNET_BENCH_CACHE": str(cache)}
    proc = subprocess.Popen([sys.executable, "-c", _KILLABLE, str(root)], env=env)
    deadline = time.time() + 60
    while not list((cache / "decoded").glob("*.partial")) and time.time() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)  # some images decoded, not all
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert list((cache / "decoded").glob("*.partial")) and _stores(cache) == []  # half a store, never a store
    arrays = data.load(_folder_cfg(root))
    assert len(arrays.x_train) == 40 and _stores(cache) == [os.path.basename(arrays.store)]
    assert not list((cache / "decoded").glob("*.partial"))  # what the kill left is gone


def test_two_loads_at_once_decode_the_folder_once(tmp_path, cache, monkeypatch):
    root = make_folder(tmp_path / "photos")
    calls = _counting(monkeypatch, delay=0.02)
    items = {"train": [], "test": []}
    for split, folder in (("train", "training_set"), ("test", "test_set")):
        for label, c in enumerate(("cats", "dogs")):
            items[split] += [(p, label) for p in sorted((root / folder / c).iterdir())]
    results, lines = [], []

    def load():
        results.append(decoded.load(items, 16, "crop", 0.01, root, echo=lines.append))

    threads = [threading.Thread(target=load) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 18  # one decode; the other waited for it and opened its store
    assert any("another process is decoding this folder" in line for line in lines)
    (a, _, store_a), (b, _, store_b) = results
    assert store_a == store_b
    np.testing.assert_array_equal(a["train"][0], b["train"][0])


def test_a_full_disk_while_decoding_is_one_line_naming_the_folder_and_the_space_and_leaves_nothing(
    tmp_path, cache, monkeypatch
):
    monkeypatch.setattr(decoded.os, "posix_fallocate", _full_disk)
    root = make_folder(tmp_path / "photos")
    with pytest.raises(UserError) as e:
        data.load(_folder_cfg(root))
    msg = str(e.value)
    assert msg.startswith(f"{cache / 'decoded'}: no space left on the device while writing the decoded images of")
    assert "GB)" in msg and "\n" not in msg
    assert [p.name for p in (cache / "decoded").iterdir() if not p.name.endswith(".lock")] == []


def test_an_interrupt_while_decoding_stops_at_once_and_leaves_nothing(tmp_path, cache, monkeypatch):
    root = make_folder(tmp_path / "photos", n_train=30)
    calls = []

    def interrupted(path, size, resize):
        calls.append(path)
        if len(calls) == 5:
            raise KeyboardInterrupt
        time.sleep(0.01)
        return np.zeros((size, size, 3), np.uint8)

    monkeypatch.setattr(decoded, "decode_image", interrupted)
    with pytest.raises(KeyboardInterrupt):
        data.load(_folder_cfg(root))
    assert len(calls) < 60 + 6  # the threads stopped: not every photo was decoded
    assert [p.name for p in (cache / "decoded").iterdir() if not p.name.endswith(".lock")] == []


def test_run_interrupted_while_reading_its_data_says_no_run_had_started(tmp_path, cache, monkeypatch, capsys):
    from resnet_bench import driver

    def interrupted(_cfg, _echo):
        raise KeyboardInterrupt

    monkeypatch.setattr(driver, "_load_data", interrupted)
    monkeypatch.setattr(driver, "STAGE", driver.STAGE)  # put back after the test
    exp = tmp_path / "tiny.toml"
    exp.write_text('name = "tiny"\n[data]\nimage_size = 16\ntrain_size = 64\ntest_size = 16\n[grid]\ndepths = [8]\n')
    code = cli.main(["run", str(exp), "--tracking-uri", f"sqlite:///{tmp_path}/db.sqlite"])
    err = capsys.readouterr().err
    assert code == 130
    assert err.strip().splitlines() == [
        "interrupted: stopped while reading the data set, before any run started (a decode in progress left "
        "nothing); run the same command again to resume"
    ]


def test_describe_shows_the_store_and_clear_cache_removes_it(tmp_path, cache, capsys):
    root = make_folder(tmp_path / "photos")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli.main(["data", "describe", str(root), "--image-size", "16"]) == 0
    (store,) = _stores(cache)
    assert f"decoded store {cache / 'decoded' / store} " in out.getvalue()
    assert cli.main(["data", "clear-cache"]) == 0
    assert f"from the data cache {cache}" in capsys.readouterr().out
    assert list(cache.iterdir()) == []
