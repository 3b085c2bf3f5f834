"""A generated image-classification set: the benchmark's offline default.

Each image shows one shape whose kind is the label (disc, ring, square, triangle, plus, bar,
L, half-disc, frame, two dots; beyond ten classes a fill pattern is combined with the shape)
at a random position, scale, rotation and colour, over a background made of a random colour,
a random linear gradient, ``clutter`` distractor blobs and Gaussian pixel noise.

Why this design: a class is a shape, so the task needs spatial features (edges, corners,
holes) that a deeper net can compose, while colour, position, rotation and clutter are
nuisance variables that stop a linear model or a colour histogram from solving it. Rotation
is free, so shapes that coincide under rotation (square and diamond, plus and X) are not
both used.

Rendering is vectorised NumPy over chunks of images with anti-aliased signed distances, so
10,000 images at 32x32 take a few seconds. All randomness comes from one
``numpy.random.Generator(PCG64(seed))`` drawn in a fixed order, and the output is rounded to
uint8, so the same seed and parameters give the same bytes on any machine.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

GENERATOR_VERSION = 1  # bump when the rendering changes, so caches and hashes move with it

SHAPES = ("disc", "ring", "square", "triangle", "plus", "bar", "ell", "half_disc", "frame", "two_dots")
PATTERNS = ("solid", "stripes", "checker")
MAX_CLASSES = len(SHAPES) * len(PATTERNS)


def _box(u, v, hu, hv):
    return np.maximum(np.abs(u) - hu, np.abs(v) - hv)


def _shape_distance(kind: int, u, v):
    """Signed distance (negative inside) in units of the shape's radius."""
    r = np.hypot(u, v)
    shape = SHAPES[kind]
    if shape == "disc":
        return r - 0.9
    if shape == "ring":
        return np.abs(r - 0.72) - 0.25
    if shape == "square":
        return _box(u, v, 0.75, 0.75)
    if shape == "triangle":
        return np.maximum(np.abs(u) * 0.866 + v * 0.5, -v) - 0.45
    if shape == "plus":
        return np.minimum(_box(u, v, 0.28, 0.95), _box(u, v, 0.95, 0.28))
    if shape == "bar":
        return _box(u, v, 1.0, 0.3)
    if shape == "ell":
        return np.minimum(_box(u + 0.6, v, 0.3, 0.95), _box(u, v - 0.65, 0.9, 0.3))
    if shape == "half_disc":
        return np.maximum(r - 0.95, -v)
    if shape == "frame":
        return np.abs(np.maximum(np.abs(u), np.abs(v)) - 0.7) - 0.2
    return np.minimum(np.hypot(u - 0.5, v), np.hypot(u + 0.5, v)) - 0.4  # two dots


def _pattern(kind: int, u, v):
    """Fill mask in [0, 1] for the pattern part of a class."""
    pattern = PATTERNS[kind]
    if pattern == "solid":
        return 1.0
    if pattern == "stripes":
        return (np.sin(u * 9.0) > 0).astype(np.float32)
    return ((np.sin(u * 7.0) > 0) ^ (np.sin(v * 7.0) > 0)).astype(np.float32)


def generate(
    n: int, image_size: int, classes: int, seed: int, noise: float = 0.1, clutter: int = 3
) -> tuple[np.ndarray, np.ndarray]:
    """Render ``n`` labelled images.

    Args:
        n: number of images.
        image_size: side in pixels (8 to 1024).
        classes: number of classes (2 to ``MAX_CLASSES``); labels are balanced.
        seed: fixes every random choice.
        noise: standard deviation of the Gaussian pixel noise, as a fraction of full scale.
        clutter: distractor blobs per image.

    Returns:
        ``(images, labels)``: uint8 ``(n, size, size, 3)`` and int64 ``(n,)``.
    """
    if not 2 <= classes <= MAX_CLASSES:
        raise ValueError(f"classes must be between 2 and {MAX_CLASSES}, got {classes}")
    rng = np.random.Generator(np.random.PCG64(seed))
    labels = rng.permutation(np.arange(n) % classes).astype(np.int64)
    # Per-image parameters, drawn up front so chunking cannot change the result.
    drawn = _Drawn(
        centre=rng.uniform(0.32, 0.68, size=(n, 2)),
        scale=rng.uniform(0.2, 0.34, size=n),
        angle=rng.uniform(0, 2 * np.pi, size=n),
        background=rng.uniform(0, 1, size=(n, 3)),
        gradient=rng.normal(0, 0.25, size=(n, 2)),
        foreground=rng.uniform(0, 1, size=(n, 3)),
        blobs_xy=rng.uniform(0, 1, size=(n, clutter, 2)),
        blobs_r=rng.uniform(0.04, 0.12, size=(n, clutter)),
        blobs_rgb=rng.uniform(0, 1, size=(n, clutter, 3)),
        labels=labels,
    )
    # Keep the shape visible: a foreground too close to the background is pushed away.
    close = np.abs(drawn.foreground - drawn.background).mean(axis=1) < 0.3
    drawn.foreground[close] = 1.0 - drawn.background[close]

    images = np.empty((n, image_size, image_size, 3), dtype=np.uint8)
    chunk = max(1, 2_000_000 // (image_size * image_size))
    for start in range(0, n, chunk):
        sl = slice(start, min(n, start + chunk))
        img = _render(drawn, sl, image_size)
        img = img + noise * rng.standard_normal(img.shape)
        images[sl] = np.clip(np.rint(img * 255), 0, 255).astype(np.uint8)
    return images, labels


@dataclass
class _Drawn:
    """Every random choice of a data set but its pixel noise, one row per image."""

    centre: np.ndarray
    scale: np.ndarray
    angle: np.ndarray
    background: np.ndarray
    gradient: np.ndarray
    foreground: np.ndarray
    blobs_xy: np.ndarray
    blobs_r: np.ndarray
    blobs_rgb: np.ndarray
    labels: np.ndarray


def _render(d: _Drawn, sl: slice, image_size: int) -> np.ndarray:
    """Images ``sl`` without noise, as floats in [0, 1]: a background gradient, clutter
    blobs, then the class's shape and pattern, anti-aliased."""
    grid = (np.arange(image_size, dtype=np.float64) + 0.5) / image_size
    ys, xs = np.meshgrid(grid, grid, indexing="ij")
    m = sl.stop - sl.start
    dx = xs[None] - d.centre[sl, 0, None, None]
    dy = ys[None] - d.centre[sl, 1, None, None]
    slope = d.gradient[sl, 0, None, None] * (xs[None] - 0.5) + d.gradient[sl, 1, None, None] * (ys[None] - 0.5)
    img = d.background[sl, None, None, :] + slope[..., None]
    for k in range(d.blobs_r.shape[1]):
        dist = np.hypot(xs[None] - d.blobs_xy[sl, k, 0, None, None], ys[None] - d.blobs_xy[sl, k, 1, None, None])
        alpha = np.clip((d.blobs_r[sl, k, None, None] - dist) * image_size + 0.5, 0, 1)[..., None]
        img = img * (1 - alpha) + d.blobs_rgb[sl, k, None, None, :] * alpha
    cos, sin = np.cos(d.angle[sl])[:, None, None], np.sin(d.angle[sl])[:, None, None]
    s = d.scale[sl, None, None]
    u = (cos * dx + sin * dy) / s
    v = (-sin * dx + cos * dy) / s
    dist = np.empty((m, image_size, image_size))
    fill = np.ones((m, image_size, image_size))
    lab = d.labels[sl]
    for c in np.unique(lab):
        idx = lab == c
        dist[idx] = _shape_distance(c % len(SHAPES), u[idx], v[idx])
        fill[idx] = _pattern(c // len(SHAPES), u[idx], v[idx])
    # Anti-aliased edge: distance in pixels, half a pixel of ramp each side.
    alpha = (np.clip(0.5 - dist * s * image_size, 0, 1) * fill)[..., None]
    return img * (1 - alpha) + d.foreground[sl, None, None, :] * alpha


def class_names(classes: int) -> list[str]:
    """Human names of the first ``classes`` classes (shape, or shape_pattern beyond ten)."""
    names = []
    for c in range(classes):
        shape, pattern = SHAPES[c % len(SHAPES)], PATTERNS[c // len(SHAPES)]
        names.append(shape if pattern == "solid" else f"{shape}_{pattern}")
    return names
