"""Where a number came from: code version, library versions, hardware."""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys
from pathlib import Path


def git_state(path: Path | None = None) -> tuple[str, bool]:
    """(commit, dirty) of the repository holding ``path`` (the package by default)."""
    cwd = path or Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        return commit, bool(dirty)
    except (OSError, subprocess.SubprocessError):
        return "unknown", False


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def tags() -> dict[str, str]:
    """Provenance tags for a training run (imports TensorFlow: driver side only)."""
    import keras
    import mlflow
    import tensorflow as tf

    commit, dirty = git_state()
    gpus = tf.config.list_physical_devices("GPU")
    gpu_names = []
    for g in gpus:
        details = tf.config.experimental.get_device_details(g)
        gpu_names.append(details.get("device_name", g.name))
    return {
        "git_commit": commit,
        "git_dirty": str(dirty).lower(),
        "tensorflow_version": tf.__version__,
        "keras_version": keras.__version__,
        "mlflow_version": mlflow.__version__,
        "python_version": sys.version.split()[0],
        "cpu_model": cpu_model(),
        "cpu_count": str(os.cpu_count()),
        "gpu": ", ".join(gpu_names) or "none",
        "host": socket.gethostname(),
        "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default"),
    }
