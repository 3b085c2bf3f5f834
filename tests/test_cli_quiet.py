"""A command that fails on user input prints exactly one line on stderr and exits 2: no
TensorFlow start-up lines, no MLflow INFO lines, no traceback (``-v`` keeps the noise)."""

import subprocess
import sys

import pytest

from .conftest import TINY
from .helpers import store_uri

pytestmark = pytest.mark.slow  # each case starts a Python process that loads TensorFlow


def _cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "resnet_bench.cli", *args], cwd=cwd, capture_output=True, text=True)


@pytest.mark.parametrize(
    "args,needle",
    [
        (["data", "describe", "/no/such/folder"], "/no/such/folder"),
        (["run", "{exp}", "--set", "train.epochz=3", "--tracking-uri", "sqlite:///{tmp}/db.sqlite"], "train.epochz"),
        (["report", "no_such_experiment", "--tracking-uri", "sqlite:///{tmp}/db.sqlite"], "no_such_experiment"),
    ],
)
def test_user_errors_are_exactly_one_line(tmp_path, args, needle):
    exp = tmp_path / "tiny.toml"
    exp.write_text(TINY)
    store_uri(tmp_path)  # an existing store, so `report` reaches its own check
    args = [a.format(exp=exp, tmp=tmp_path) for a in args]
    proc = _cli(*args, cwd=tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error:") and needle in lines[0]


def test_a_command_that_loads_tensorflow_first_is_silent_on_stderr(tmp_path):
    """`models` loads TensorFlow as it starts (cli.TENSORFLOW_COMMANDS), not where runs train;
    that a sweep is as quiet, and that ``-v`` brings the lines back, is test_driver's two sweeps."""
    quiet = _cli("models", "--model", "resnet8", "--image-size", "16", "--classes", "3", cwd=tmp_path)
    assert quiet.returncode == 0
    assert "resnet8" in quiet.stdout and quiet.stderr == ""
