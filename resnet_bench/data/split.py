"""Seeded subsets of a data set: every hold-out split and every cap, drawn one way.

A subset depends on the seed and a *salt* naming its purpose (``holdout``, ``holdout:cat``,
``cap:cat``, ``validation``), never on the order a filesystem lists files in: the same data,
seed and salt give the same subset on any machine, and two purposes draw independently.
"""

from __future__ import annotations

import hashlib

import numpy as np


def seeded_subset(n: int, k: int, seed: int, salt: str) -> np.ndarray:
    """Sorted indices of a seeded ``k``-subset of ``range(n)``."""
    digest = hashlib.sha256(f"{seed}:{salt}".encode()).digest()
    rng = np.random.Generator(np.random.PCG64(int.from_bytes(digest[:8], "little")))
    return np.sort(rng.permutation(n)[:k])


def holdout(n: int, k: int, seed: int, salt: str) -> tuple[np.ndarray, np.ndarray]:
    """(kept, held out): the indices of ``range(n)`` in order, ``k`` of them held out."""
    out = seeded_subset(n, k, seed, salt)
    keep = np.ones(n, bool)
    keep[out] = False
    return np.flatnonzero(keep), out


def fraction_of(n: int, fraction: float) -> int:
    """How many of ``n`` items a hold-out ``fraction`` takes: at least one."""
    return max(1, round(n * fraction))
