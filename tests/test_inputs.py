"""Bad input at every boundary is a one-line UserError naming the input (inputs.py).

The first part calls the library; the last part (slow: each case starts a process that loads
TensorFlow) runs the command line on the issue's cases and checks exit 2, exactly one stderr
line, no traceback and no run in the store.
"""

import os
import pickle
import socket
import tarfile

import h5py
import numpy as np
import pytest

from resnet_bench import cli, data, inputs
from resnet_bench.commands import report as report_command
from resnet_bench.config import DataConfig
from resnet_bench.errors import UserError
from resnet_bench.tracking import uris

from .conftest import TINY
from .helpers import all_runs


def arrays_cfg(path, **kw):
    return DataConfig(**{"source": "arrays", "path": str(path), "image_size": 8, **kw})


def pickled_npz(path):
    np.savez(path, x=np.array([object()] * 4, dtype=object), y=np.arange(4) % 2)
    return path


def truncated_h5(path):
    with h5py.File(path, "w") as f:
        f["x"] = np.random.default_rng(0).integers(0, 255, (64, 8, 8, 3), dtype=np.uint8)
        f["y"] = np.arange(64) % 2
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])
    return path


def corrupt_folder(root, n=200):
    for i in range(n):
        d = root / ("cats" if i % 2 else "dogs")
        d.mkdir(parents=True, exist_ok=True)
        (d / f"{i}.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    return root


# -- data files ----------------------------------------------------------------------------


def test_pickled_npz_is_refused_by_name(tmp_path):
    path = pickled_npz(tmp_path / "objects.npz")
    with pytest.raises(UserError, match=r"objects\.npz: holds pickled Python objects, refused"):
        data.load(arrays_cfg(path))


def test_npz_that_is_not_a_zip_is_named_as_such(tmp_path):
    path = tmp_path / "fake.npz"
    path.write_bytes(b"hello")
    with pytest.raises(UserError, match=r"fake\.npz: not an \.npz archive"):
        data.load(arrays_cfg(path))


def test_truncated_h5_is_unreadable_not_a_traceback(tmp_path):
    path = truncated_h5(tmp_path / "cut.h5")
    with pytest.raises(UserError, match=r"cut\.h5: unreadable, truncated"):
        data.load(arrays_cfg(path))


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.makedirs, (str(self.marker),))


def _cifar_files(folder, batch):
    folder.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (folder / name).write_bytes(pickle.dumps(batch))
    return folder


def test_cifar_batch_that_would_run_code_is_refused_before_it_runs(tmp_path):
    marker = tmp_path / "code_ran"
    batch = {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1], b"extra": _RunsCode(marker)}
    folder = _cifar_files(tmp_path / "cifar-10-batches-py", batch)
    with pytest.raises(UserError, match=r"data_batch_1: .*refused pickle: it references (posix|os)\.makedirs"):
        data.load(DataConfig(source="cifar10", path=str(folder), image_size=32))
    assert not marker.exists()


def test_cifar_archive_that_is_not_gzip_and_batch_that_is_not_cifar(tmp_path):
    fake = tmp_path / "cifar-10-python.tar.gz"
    fake.write_bytes(b"not gzip")
    with pytest.raises(UserError, match=r"CIFAR-10 archive .*not a gzip file"):
        data.load(DataConfig(source="cifar10", path=str(fake), image_size=32))
    folder = _cifar_files(tmp_path / "other" / "cifar-10-batches-py", {b"data": np.zeros((2, 5), np.uint8)})
    with tarfile.open(tmp_path / "c.tar.gz", "w:gz") as tar:
        tar.add(folder, arcname="cifar-10-batches-py")
    for path in (folder, tmp_path / "c.tar.gz"):
        with pytest.raises(UserError, match="not a CIFAR-10 batch"):
            data.load(DataConfig(source="cifar10", path=str(path), image_size=32))


def test_read_errors_are_translated_and_bugs_are_not(tmp_path):
    with pytest.raises(UserError, match=r"photo folder /p: permission denied"):
        with inputs.reading("photo folder", "/p"):
            raise PermissionError(13, "Permission denied")
    with pytest.raises(UserError, match=r"x\.npz: .*truncated"):
        with inputs.reading("array file", "x.npz"):
            raise EOFError("no more data")
    with pytest.raises(KeyError):  # our own mistake inside the block stays what it is
        with inputs.reading("array file", "x.npz"):
            raise KeyError("bug")
    with pytest.raises(ValueError):  # a ValueError is an input error only where the reader refuses content
        with inputs.reading("array file", "x.npz"):
            raise ValueError("bug")


def test_paths_through_a_regular_file(tmp_path):
    blocker = tmp_path / "notes.txt"
    blocker.write_text("x")
    for check in (
        lambda: inputs.output_path(blocker / "r.md", "--out"),
        lambda: inputs.existing_path(blocker / "photos", "data path", "folder"),
        lambda: inputs.writable_folder(blocker / "cache", "$RESNET_BENCH_CACHE"),
        lambda: inputs.read_text(blocker / "e.toml", "experiment file"),
    ):
        with pytest.raises(UserError, match=f"{blocker} is a regular file, not a folder"):
            check()
    with pytest.raises(UserError, match="is a file, not a folder"):
        inputs.existing_path(blocker, "data path", "folder")
    with pytest.raises(UserError, match="is a folder, not a file"):
        inputs.output_path(tmp_path, "--out")


def test_experiment_file_that_is_not_utf8(tmp_path):
    path = tmp_path / "latin1.toml"
    path.write_bytes('name = "caf\xe9"\n'.encode("latin-1"))
    with pytest.raises(UserError, match=r"latin1\.toml: not UTF-8 text"):
        inputs.read_text(path, "experiment file")


# -- tracking URIs ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "uri,needle",
    [
        ("bogus://x", "unsupported scheme 'bogus'"),
        ("sqlite:///{tmp}/notes.txt/mlflow.db", "notes.txt is a regular file, not a folder"),
        ("sqlite:///{tmp}", "is a folder, not a database file"),
        ("{tmp}/notes.txt/mlruns", "notes.txt is a regular file, not a folder"),
        ("file://{tmp}/mlruns", "MLFLOW_ALLOW_FILE_STORE=true"),
    ],
)
def test_bad_tracking_uris(tmp_path, monkeypatch, uri, needle):
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    (tmp_path / "notes.txt").write_text("x")
    uri = uri.format(tmp=tmp_path)
    with pytest.raises(UserError, match=f"--tracking-uri {uri}: .*{needle}"):
        uris.tracking_uri(uri)


def test_unwritable_store_folder_and_output(tmp_path, monkeypatch):
    monkeypatch.setattr(inputs.os, "access", lambda path, mode: False)  # as a non-root user sees chmod 555
    with pytest.raises(UserError, match=r"permission denied \(.* is not writable\)"):
        uris.tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    with pytest.raises(UserError, match=r"--out .*r\.md: permission denied"):
        inputs.output_path(tmp_path / "r.md", "--out")
    with pytest.raises(UserError, match="data path .*: permission denied"):
        inputs.existing_path(tmp_path, "data path", "folder")


def test_report_does_not_create_a_store_from_a_typo(tmp_path):
    uri = f"sqlite:///{tmp_path}/typo.db"
    assert uris.tracking_uri(uri) == uri  # a run may create it
    with pytest.raises(UserError, match="no store there"):
        uris.tracking_uri(uri, must_exist=True)
    assert not (tmp_path / "typo.db").exists()


def test_environment_uri_is_named_as_such(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "ftp://host/store")
    with pytest.raises(UserError, match=r"^\$MLFLOW_TRACKING_URI ftp://host/store: unsupported scheme"):
        uris.tracking_uri(None)


def test_server_refusing_and_server_not_answering(monkeypatch):
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(UserError, match="tracking server unreachable .*refused"):
        uris.tracking_uri(f"http://127.0.0.1:{port}")
    monkeypatch.setattr(uris, "SERVER_TIMEOUT_S", 0.5)
    with socket.socket() as s:  # listens but never answers
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        with pytest.raises(UserError, match=r"tracking server unreachable \(no answer within 0.5 s\)"):
            uris.tracking_uri(f"http://127.0.0.1:{s.getsockname()[1]}")


def test_mlflow_refusing_a_store_is_one_line(tmp_path):
    from resnet_bench.tracking import Store

    (tmp_path / "junk.db").write_text("this is not a SQLite database, it only looks like one by name\n" * 20)
    with pytest.raises(UserError) as err:
        Store(f"sqlite:///{tmp_path}/junk.db")
    assert str(err.value).startswith(f"tracking store sqlite:///{tmp_path}/junk.db: ") and "\n" not in str(err.value)


# -- command line values ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["run", "e.toml", "--seeds", "a,b"], "argument --seeds: expected comma-separated non-negative integers"),
        (["run", "e.toml", "--seeds", "1,-2"], "argument --seeds"),
        (["run", "e.toml", "--jobs", "0"], "argument --jobs: expected a positive integer or auto"),
        (["perf", "--batch-size", "0"], "argument --batch-size: expected a positive integer"),
        (["run", "e.toml", "--cpus-per-run", "-1"], "argument --cpus-per-run"),
        (["models", "--shortcut", "Z"], "argument --shortcut: invalid choice"),
        (["frobnicate"], "argument command: invalid choice"),
    ],
)
def test_argument_errors_are_one_line_with_a_hint(capsys, argv, needle):
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and needle in err and "usage:" not in err
    assert err.startswith("resnet-bench") and err.rstrip().endswith("--help')")


def test_environment_values(monkeypatch, capsys, tiny_file):
    monkeypatch.setenv("RESNET_BENCH_STALE_SECONDS", "ten")
    assert cli.main(["run", str(tiny_file), "--dry-run"]) == 2
    assert capsys.readouterr().err == "error: $RESNET_BENCH_STALE_SECONDS: expected a number, got 'ten'\n"


def test_a_bug_keeps_its_traceback_and_says_what_to_do(monkeypatch, capsys):
    def broken(args):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(report_command, "main", broken)
    assert cli.main(["report", "x"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "ZeroDivisionError: a bug" in err
    assert err.rstrip().splitlines()[-1] == cli.BUG_HINT and "-v" in cli.BUG_HINT


# -- the command line on the cases ----------------------------------------------------
# In this process: a fresh one would spend its time loading TensorFlow, and that its start-up
# lines stay off stderr is test_cli_quiet's subject (in fresh processes).


@pytest.mark.slow
@pytest.mark.parametrize(
    "case,needle",
    [
        ("pickled_npz", "holds pickled Python objects"),
        ("truncated_h5", "unreadable, truncated"),
        ("corrupt_folder", "160 of 160 images are unreadable"),  # training split first; 40 are held out
        ("bogus_run", "unsupported scheme 'bogus'"),
        ("bogus_report", "unsupported scheme 'bogus'"),
        ("store_through_file", "notes.txt is a regular file, not a folder"),
    ],
)
def test_the_command_line_answers_bad_input_in_one_line(tmp_path, case, needle, monkeypatch, capsys):
    exp = tmp_path / "tiny.toml"
    exp.write_text(TINY)
    (tmp_path / "notes.txt").write_text("x")
    uri = f"sqlite:///{tmp_path}/db.sqlite"
    run = ["run", str(exp), "--jobs", "1", "--tracking-uri", uri]
    args = {
        "pickled_npz": run + ["--data", str(pickled_npz(tmp_path / "p.npz"))],
        "truncated_h5": run + ["--data", str(truncated_h5(tmp_path / "t.h5"))],
        "corrupt_folder": run + ["--data", str(corrupt_folder(tmp_path / "photos"))],
        "bogus_run": ["run", str(exp), "--jobs", "1", "--tracking-uri", "bogus://x"],
        "bogus_report": ["report", "tiny", "--tracking-uri", "bogus://x"],
        "store_through_file": ["run", str(exp), "--tracking-uri", f"sqlite:///{tmp_path}/notes.txt/db.sqlite"],
    }[case]
    monkeypatch.chdir(tmp_path)
    code = cli.main(args)
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and needle in lines[0] and "Traceback" not in err
    assert not (tmp_path / "mlflow.db").exists()  # no default store made in passing
    if (tmp_path / "db.sqlite").exists():
        assert all_runs(uri, "tiny") == []


def test_damaged_cache_file_is_generated_again(tmp_path, monkeypatch):
    monkeypatch.setenv("RESNET_BENCH_CACHE", str(tmp_path))
    cfg = DataConfig(image_size=8, classes=3, train_size=30, test_size=6)
    first = data.load(cfg)
    [cached] = tmp_path.glob("synthetic-*.npz")
    cached.write_bytes(cached.read_bytes()[:100])
    data.load.cache_clear()
    again = data.load(cfg)
    assert np.array_equal(first.x_train, again.x_train) and np.array_equal(first.y_test, again.y_test)
