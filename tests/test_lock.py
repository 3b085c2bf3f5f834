"""The install is locked: the environment is the lock, and the committed reports name its versions."""

import importlib.metadata
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def locked() -> dict[str, str]:
    text = (ROOT / "requirements.lock").read_text()
    return {m[0].lower().replace("_", "-"): m[1] for m in re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", text, re.M)}


def test_every_locked_package_carries_hashes():
    text = (ROOT / "requirements.lock").read_text()
    blocks = re.split(r"\n(?=[A-Za-z0-9_.-]+==)", text)
    pins = [b for b in blocks if re.match(r"[A-Za-z0-9_.-]+==", b)]
    assert len(pins) == len(locked()) > 50
    assert all("--hash=sha256:" in b for b in pins)


def test_the_environment_is_the_lock():
    """Holds where `make install` (which CI runs) built the environment from the lock."""
    stamp = Path(sys.prefix) / ".installed-stamp"
    if not stamp.is_file() or stamp.read_text().strip() != "locked":
        pytest.skip("this environment was not installed from the lock (make install-unlocked, or by hand)")
    wrong = {}
    for name, version in locked().items():
        try:
            have = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            have = None
        if have != version:
            wrong[name] = (version, have)
    assert not wrong


@pytest.mark.parametrize("report", ["shortcut_ablation", "fig6"])
def test_the_committed_reports_were_made_with_the_locked_versions(report):
    text = (ROOT / "reports" / f"{report}.md").read_text()
    line = next(ln for ln in text.splitlines() if ln.startswith("- **Software**"))
    lock = locked()
    for name, key in (("TensorFlow", "tensorflow"), ("Keras", "keras"), ("MLflow", "mlflow")):
        assert f"{name} {lock[key]}," in line, (report, name, line)
