"""experiments/photos.toml end to end on a tiny photo folder in the tutorial's layout."""

from pathlib import Path

import pytest

from resnet_bench import cli

from .helpers import store_uri
from .test_data import make_folder

pytestmark = pytest.mark.slow

PHOTOS = Path(__file__).resolve().parents[1] / "experiments" / "photos.toml"


def test_photos_experiment_runs_and_reports_the_residual_depth_verdict(tmp_path, capsys):
    root = make_folder(tmp_path / "cats_and_dogs", n_train=20, n_test=8)
    uri = store_uri(tmp_path)
    # The two residual depths the verdict compares (the plain twins add nothing it reads).
    small = ["--set", "train.epochs=2", "--set", "grid.depths=[8, 14]", "--set", "data.image_size=16"]
    small += ["--models", "resnet8,resnet14"]
    args = ["run", str(PHOTOS), "--data", str(root), "--tracking-uri", uri, "--seeds", "0", "--jobs", "1"]
    assert cli.main(args + small) == 0
    out = tmp_path / "photos.md"
    assert cli.main(["report", "photos", "--tracking-uri", uri, "--out", str(out)]) == 0
    text = out.read_text()
    assert "source `folder`" in text and "40 train / 16 test images, 2 classes (cats, dogs)" in text
    line = next(ln for ln in text.splitlines() if ln.startswith("- Residual depth: "))
    assert "resnet14 vs resnet8" in line and "n = 1" in line
    assert "| resnet14 | resnet8 | 1 | 2 |" in text  # the crossing table covers both epochs
    from .helpers import all_runs

    # The paper's pad-crop-flip augmentation is part of the preset: without it these nets
    # memorise 2,000 photos (docs/designs.md).
    assert {r.data.params["data.augment"] for r in all_runs(uri, "photos")} == {"True"}
