"""Why residual nets train, measured on the nets each run stored: lesions, landscapes, curvature.

For every FINISHED run of an experiment's configuration, :func:`analyse` loads the run's net
from MLflow (:mod:`resnet_bench.trained`), rebuilds the net it started from
(:func:`resnet_bench.train.initial_model`), and measures

- block lesions (:mod:`.lesions`): validation accuracy with each block deleted in turn;
- loss landscapes (:mod:`.landscape`): training loss along filter-normalised random lines
  through the initial and the final weights, and a sharpness number from them; optionally a
  2-D contour for one seed of the deepest plain net and its residual twin;
- curvature (:mod:`.curvature`): the training-loss Hessian's dominant eigenvalue at the
  initial and the final weights.

The results go back to the run: every number in :data:`ARTIFACT` (JSON, with the settings
used), the per-run headline numbers as the metrics of :data:`resnet_bench.schema.
ANALYSIS_METRICS`. A run analysed with the same settings is skipped, so the analysis resumes;
the same stored net, data and settings give the same numbers (the directions and the power
iteration's start are drawn from the run's seed). The report reads the artifact; nothing here
is imported by it.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass

from .. import schema
from ..errors import UserError

ARTIFACT = schema.ANALYSIS_ARTIFACT


@dataclass(frozen=True)
class Settings:
    """How much each measurement looks at (docs/methods.md gives the reasons)."""

    validation_batch: int = 250  # lesions: images per forward pass over the validation split
    landscape_images: int = 512  # the first images of the training split, un-augmented
    directions: int = 2  # random lines per run, at the initial and at the final weights
    points: int = 21  # values of alpha in [-1, 1] per line (0 among them when odd)
    sharpness_alpha: float = 0.2  # sharpness: mean loss rise at |alpha| = this
    contour_points: int = 0  # a 2-D contour of points x points (0: none)
    hessian_images: int = 128  # the fixed batch of the curvature (the first training images)
    tolerance: float = 1e-3  # power iteration: relative change of the estimate at which it stops
    max_iterations: int = 100
    chance_margin: float = 0.05  # lesions: a net less than this above chance has no relative drop

    def key(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)


def finished_runs(store, cfg) -> list:
    """The newest FINISHED run of each (variant, seed) of ``cfg``'s grid, in grid order."""
    exp_id = store.experiment_id(cfg.name, create=False)
    if exp_id is None:
        raise UserError(f"experiment {cfg.name!r} has no runs in {store.uri}; run it first")
    out = []
    for spec in cfg.variants():
        for seed in cfg.grid.seeds:
            runs = [r for r in store.runs_with_key(exp_id, cfg.run_key(spec, seed)) if r.info.status == schema.FINISHED]
            if runs:
                out.append((spec, seed, max(runs, key=lambda r: r.info.start_time)))
    if not out:
        raise UserError(f"experiment {cfg.name!r} has no FINISHED runs of this configuration; run it first")
    return out


def _stored(store, run) -> dict | None:
    import mlflow

    from ..trained import using_store

    with using_store(store.uri):
        try:
            return json.loads(mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/{ARTIFACT}"))
        except Exception:
            return None


def measure(net, spec, seed: int, arrays, metadata: dict, binary: bool, settings: Settings, contour: bool) -> dict:
    """Every measurement of one stored net (and the initial net of its seed)."""
    from .. import trained
    from ..train import initial_model
    from . import curvature, landscape, lesions

    x_val = trained.normalise(arrays.x_test, metadata)
    x_fit = trained.normalise(arrays.x_train[: settings.landscape_images], metadata)
    y_fit = arrays.y_train[: settings.landscape_images]
    x_h, y_h = x_fit[: settings.hessian_images], y_fit[: settings.hessian_images]
    out: dict = {"lesions": lesions.lesion(net, spec, binary, x_val, arrays.y_test, settings.validation_batch)}
    chance = 1.0 / len(arrays.classes)
    out["lesions"].update(lesions.summary(out["lesions"], chance, settings.chance_margin))
    start = initial_model(spec, tuple(net.input_shape[1:]), len(arrays.classes), binary, seed)
    landscape.set_bn_statistics(start, x_fit)
    for when, model in (("init", start), ("final", net)):
        loss = landscape.loss_fn(model, x_fit, y_fit)
        lines = landscape.lines(model, loss, seed, settings.directions, settings.points)
        out[f"landscape_{when}"] = {"alpha": landscape.alphas(settings.points).tolist(), "loss": lines,
                                    "sharpness": landscape.sharpness(lines, settings.sharpness_alpha)}  # fmt: skip
        if contour:
            out[f"landscape_{when}"]["contour"] = landscape.contour(model, loss, seed, settings.contour_points)
        out[f"curvature_{when}"] = curvature.top_eigenvalue(
            model, x_h, y_h, seed, settings.tolerance, settings.max_iterations
        )
    return out


def headline(result: dict) -> dict[str, float]:
    """The per-run numbers logged as metrics (schema.ANALYSIS_METRICS), NaN where undefined."""
    rel = result["lesions"]["relative_drop"]
    return {
        "lesion/mean_drop": result["lesions"]["mean_drop"],
        "lesion/relative_drop": float("nan") if rel is None else rel,
        "sharpness/init": result["landscape_init"]["sharpness"],
        "sharpness/final": result["landscape_final"]["sharpness"],
        "curvature/init": result["curvature_init"]["eigenvalue"],
        "curvature/final": result["curvature_final"]["eigenvalue"],
    }


def contour_runs(cfg) -> set[tuple[str, int]]:
    """(variant, seed) pairs that get a 2-D contour: the first seed of the deepest plain net
    and of its residual twin."""
    deepest = max(cfg.grid.depths)
    specs = [s for s in cfg.variants() if s.depth == deepest and not s.zero_init]
    return {(s.name, cfg.grid.seeds[0]) for s in specs}


def analyse(cfg, uri: str, *, settings: Settings = Settings(), force: bool = False, echo=print) -> dict:
    """Measure every FINISHED run of ``cfg`` that has a stored net and lacks these measurements
    (all of them with ``force``). Returns counts: analysed, already, without a model."""
    from .. import data as data_mod
    from ..tracking import Store
    from ..trained import has_model, load_net

    store = Store(uri)
    runs = finished_runs(store, cfg)
    with_model = [(spec, seed, r) for spec, seed, r in runs if has_model(r)]
    if not with_model:
        raise UserError(
            f"no run of {cfg.name!r} has a stored model ({len(runs)} FINISHED runs were trained before runs kept their "
            "nets); train them again with --force to analyse them"
        )
    counts = {"analysed": 0, "already": 0, "no_model": len(runs) - len(with_model)}
    if counts["no_model"]:
        echo(f"{counts['no_model']} of {len(runs)} runs have no stored model (trained before runs kept nets): skipped")
    arrays = data_mod.load(cfg.data)
    binary = cfg.train.loss == "binary"
    contours = contour_runs(cfg) if settings.contour_points else set()
    started = time.perf_counter()
    for i, (spec, seed, run) in enumerate(with_model, 1):
        name = f"[{i}/{len(with_model)}] {spec.name} seed {seed}"
        stored = None if force else _stored(store, run)
        if stored and stored.get("settings") == json.loads(settings.key()):
            counts["already"] += 1
            echo(f"{name}: analysed already, skipped")
            continue
        t0 = time.perf_counter()
        net, metadata = load_net(store.uri, run.info.run_id, f"{spec.name} seed {seed} (run {run.info.run_id})")
        result = measure(net, spec, seed, arrays, metadata, binary, settings, (spec.name, seed) in contours)
        result["settings"] = json.loads(settings.key())
        result["seconds"] = time.perf_counter() - t0
        store.log_text(run.info.run_id, json.dumps(result, indent=1), ARTIFACT)
        store.log_metrics(run.info.run_id, headline(result))
        counts["analysed"] += 1
        h = headline(result)
        echo(f"{name}: lesion drop {h['lesion/mean_drop']:.3f}, sharpness {h['sharpness/init']:.3g} -> "
             f"{h['sharpness/final']:.3g}, curvature {h['curvature/init']:.3g} -> {h['curvature/final']:.3g} "
             f"({result['seconds']:.1f}s)")  # fmt: skip
    counts["seconds"] = time.perf_counter() - started
    return counts
