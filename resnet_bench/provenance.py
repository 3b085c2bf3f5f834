"""Where a number came from: code version, library versions, hardware."""

from __future__ import annotations

import os
import platform
import socket
import subprocess
from pathlib import Path

# What a run writes into the checkout itself: a report made there (make bench writes
# reports/<experiment>.md) must not mark the runs after it as made from changed code.
OUTPUTS = ("reports",)


def git_state(path: Path | None = None) -> tuple[str, bool]:
    """(commit, dirty) of the repository holding ``path`` (the package by default); dirty
    means a tracked file outside :data:`OUTPUTS` differs from the commit."""
    cwd = path or Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ":(top)"]
            + [f":(top,exclude){p}" for p in OUTPUTS],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        return commit, bool(dirty)
    except (OSError, subprocess.SubprocessError):
        return "unknown", False


def committed_text(path: Path) -> tuple[str | None, str]:
    """The committed version of file ``path`` (from ``git show HEAD:...``) and ``""``, or None
    and why there is none: not in a git checkout, not committed, or changed since the commit
    (then the file on disk is no longer what the commit says it found)."""
    path = Path(path).resolve()
    folder = path.parent if path.parent.is_dir() else Path.cwd()

    def git(*args, cwd=folder) -> subprocess.CompletedProcess:
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10)

    try:
        top = git("rev-parse", "--show-toplevel")
        if top.returncode != 0:
            return None, f"{path} is not in a git checkout"
        root = Path(top.stdout.strip()).resolve()
        rel = path.relative_to(root).as_posix()
        shown = git("show", f"HEAD:{rel}", cwd=root)
        if shown.returncode != 0:
            return None, f"{rel} is not committed"
        if git("diff", "--quiet", "HEAD", "--", rel, cwd=root).returncode != 0:
            return None, f"{rel} has changed since the last commit"
        return shown.stdout, ""
    except (OSError, subprocess.SubprocessError, ValueError) as e:
        return None, f"git could not say what {path} was at the last commit ({e})"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# Vector extensions from widest to narrowest, as /proc/cpuinfo names them. oneDNN, which runs
# TensorFlow's CPU convolutions, picks its kernels at run time from the widest one the CPU has,
# so two machines give bit-identical numbers only when this (and the lock) match.
_VECTOR_ISAS = (
    ("amx_tile", "AMX"),
    ("avx512f", "AVX-512"),
    ("avx2", "AVX2"),
    ("avx", "AVX"),
    ("sse4_2", "SSE4.2"),
    ("sve", "SVE"),
    ("asimd", "NEON"),
)


def vector_isa(flags: str | None = None) -> str:
    """The widest vector instruction set the CPU offers TensorFlow's kernels ("unknown" off Linux)."""
    if flags is None:
        try:
            text = Path("/proc/cpuinfo").read_text()
        except OSError:
            return "unknown"
        lines = [ln for ln in text.splitlines() if ln.startswith(("flags", "Features"))]
        flags = lines[0].split(":", 1)[1] if lines else ""
    present = set(flags.split())
    for flag, name in _VECTOR_ISAS:
        if flag in present:
            return name
    return "unknown"


def gpus() -> str:
    """The GPUs TensorFlow sees, by their device names, comma-separated ("none" without one)."""
    import tensorflow as tf

    names = []
    for g in tf.config.list_physical_devices("GPU"):
        names.append(tf.config.experimental.get_device_details(g).get("device_name", g.name))
    return ", ".join(names) or "none"


def environment() -> dict[str, str]:
    """Machine and versions, as the speed reports (perf, gpu-check) print them."""
    import keras
    import tensorflow as tf

    return {
        "cpu": cpu_model(),
        "isa": vector_isa(),
        "gpu": gpus(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "python": platform.python_version(),
    }


def tags() -> dict[str, str]:
    """Provenance tags for a training run (imports TensorFlow: driver side only)."""
    import mlflow

    env = environment()
    commit, dirty = git_state()
    return {
        "git_commit": commit,
        "git_dirty": str(dirty).lower(),
        "tensorflow_version": env["tensorflow"],
        "keras_version": env["keras"],
        "mlflow_version": mlflow.__version__,
        "python_version": env["python"],
        "cpu_model": env["cpu"],
        "cpu_isa": env["isa"],
        "cpu_count": str(os.cpu_count()),
        "gpu": env["gpu"],
        "host": socket.gethostname(),
        "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default"),
    }
