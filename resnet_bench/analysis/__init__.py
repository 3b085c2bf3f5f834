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

    lesion_images: int = 500  # lesions: the first images of the validation split, one batch
    landscape_images: int = 64  # the first images of the training split, un-augmented
    directions: int = 2  # random lines per run, at the initial and at the final weights
    points: int = 21  # values of alpha in [-1, 1] per line (0 among them when odd)
    sharpness_alpha: float = 0.2  # sharpness: mean loss rise at |alpha| = this
    contour_points: int = 0  # a 2-D contour of points x points (0: none)
    hessian_images: int = 64  # the fixed batch of the curvature (the first training images)
    bn_images: int = 128  # at init: the BN statistics of the first this many training images
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


class Bench:
    """One variant's lesionable net and the compiled functions every measurement calls: the
    validation accuracy, the training loss on the fixed subset with the kernels moved along a
    direction (a :class:`~.landscape.Surface`), and Hessian-vector products on the fixed batch.
    Built once per variant and process, so each function is traced once per variant, not once
    per run: the traces cost about 6 s of CPU for a resnet56, most of it the Hessian-vector
    product's (docs/designs.md). Every subset is the first images of its split, so they nest."""

    def __init__(self, spec, shape: tuple, classes: int, binary: bool, inputs: dict, settings: Settings):
        from ..models import build_model
        from . import curvature, landscape, lesions

        self.spec, self.shape, self.classes, self.binary = spec, shape, classes, binary
        self.model = build_model(spec, shape, 2 if binary else classes, binary_head=binary, lesionable=True)
        self.accuracy = lesions.accuracy_fn(self.model, *inputs["val"], settings.lesion_images)
        self.surface = landscape.Surface(self.model, landscape.loss_fn(self.model, *inputs["fit"]))
        self.hvp, self.size = curvature.hessian_vector_product(self.model, *inputs["hessian"])
        self.bn_x = inputs["bn"]


def inputs_of(arrays, metadata: dict, settings: Settings) -> dict:
    """The images every measurement reads, normalised as the stored net's inputs were."""
    from .. import trained

    def first(x, y, n: int):
        return trained.normalise(x[:n], metadata), y[:n]

    s = settings
    return {"val": first(arrays.x_test, arrays.y_test, s.lesion_images),
            "fit": first(arrays.x_train, arrays.y_train, s.landscape_images),
            "hessian": first(arrays.x_train, arrays.y_train, s.hessian_images),
            "bn": first(arrays.x_train, arrays.y_train, s.bn_images)[0]}  # fmt: skip


def measure(bench: Bench, net, seed: int, settings: Settings, contour: bool) -> dict:
    """Every measurement of one stored net ``net`` and of the initial net of its seed."""
    from ..train import initial_model
    from . import curvature, landscape, lesions

    lesions.load_weights(bench.model, net)
    out: dict = {"lesions": lesions.lesion(bench.model, bench.accuracy)}
    out["lesions"].update(lesions.summary(out["lesions"], 1.0 / bench.classes, settings.chance_margin))
    start = initial_model(bench.spec, bench.shape, bench.classes, bench.binary, seed)
    for when in ("final", "init"):
        if when == "init":
            lesions.load_weights(bench.model, start)
            landscape.set_bn_statistics(bench.model, bench.bn_x)
        lines = landscape.lines(bench.surface, seed, settings.directions, settings.points)
        part = {"alpha": landscape.alphas(settings.points).tolist(), "loss": lines,
                "sharpness": landscape.sharpness(lines, settings.sharpness_alpha)}  # fmt: skip
        if contour:
            part["contour_alpha"] = landscape.alphas(settings.contour_points).tolist()
            part["contour"] = landscape.contour(bench.surface, seed, settings.contour_points)
        out[f"landscape_{when}"] = part
        out[f"curvature_{when}"] = curvature.power_iteration(
            bench.hvp, bench.size, seed, settings.tolerance, settings.max_iterations
        )
    return {k: out[k] for k in ("lesions", "landscape_init", "landscape_final", "curvature_init", "curvature_final")}


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


def analyse(cfg, uri: str, *, settings: Settings = Settings(), force: bool = False, jobs: int = 1, echo=print) -> dict:
    """Measure every FINISHED run of ``cfg`` that has a stored net and lacks these measurements
    (all of them with ``force``), in ``jobs`` processes. Returns counts: analysed, already,
    without a model, and the seconds it took."""
    from ..tracking.store import Store
    from ..trained import has_model

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
    todo = []
    for spec, seed, run in with_model:
        stored = None if force else store.analysis_record(run)
        if stored and stored.get("settings") == json.loads(settings.key()):
            counts["already"] += 1
        else:
            todo.append((spec, seed, run.info.run_id))
    if counts["already"]:
        echo(f"{counts['already']} runs analysed already with these settings: skipped")
    contours = contour_runs(cfg) if settings.contour_points else set()
    tasks = [
        (cfg, store.uri, settings, spec, seed, run_id, (spec.name, seed) in contours) for spec, seed, run_id in todo
    ]
    started = time.perf_counter()
    for i, (task, h, seconds) in enumerate(_results(tasks, jobs), 1):
        spec, seed = task[3], task[4]
        counts["analysed"] += 1
        echo(f"[{i}/{len(tasks)}] {spec.name} seed {seed}: {_summary(h)} ({seconds:.1f}s)")
    counts["seconds"] = time.perf_counter() - started
    return counts


def _summary(h: dict) -> str:
    return (f"lesion drop {h['lesion/mean_drop']:.3f}, sharpness {h['sharpness/init']:.3g} -> "
            f"{h['sharpness/final']:.3g}, curvature {h['curvature/init']:.3g} -> "
            f"{h['curvature/final']:.3g}")  # fmt: skip


def settings_of(cfg) -> Settings:
    """The settings an experiment is analysed with: the fixed set and its ``[analysis]`` table."""
    return Settings(contour_points=cfg.analysis.contours)


def analyse_experiment(cfg, uri: str, jobs: int, *, force: bool = False, echo=print) -> dict:
    """:func:`analyse` with the experiment's settings in ``jobs`` processes, then one line of
    counts: what ``analyse`` and ``run --analyse`` (after its sweep) do."""
    counts = analyse(cfg, uri, settings=settings_of(cfg), force=force, jobs=jobs, echo=echo)
    echo(f"analysed {counts['analysed']} runs in {counts['seconds']:.0f}s ({counts['already']} already analysed, "
         f"{counts['no_model']} without a stored model)")  # fmt: skip
    return counts


def lanes(tasks: list, jobs: int) -> list[list]:
    """``tasks`` split into at most ``jobs`` lists, all runs of a variant in one list, so each
    process traces a variant's functions once. Variants go heaviest first (depth x runs) to the
    lightest list: the default's four variants split into two equal halves."""
    groups: dict = {}
    for task in tasks:
        groups.setdefault(task[3], []).append(task)
    out: list[list] = [[] for _ in range(min(jobs, len(groups)))]
    load = [0] * len(out)
    for spec, group in sorted(groups.items(), key=lambda kv: -kv[0].depth * len(kv[1])):
        i = load.index(min(load))
        out[i] += group
        load[i] += spec.depth * len(group)
    return out


def _results(tasks: list, jobs: int):
    """(task, headline, seconds) of each task as it ends: here for one job, else in one worker
    process per lane of :func:`lanes` (spawned: TensorFlow does not survive a fork)."""
    from ..device import prepare_process

    if jobs <= 1 or len(tasks) <= 1:
        if tasks:
            prepare_process(tasks[0][0])  # TensorFlow, quietly, with the experiment's threads
        for task in tasks:
            yield (task, *measure_run(*task))
        return
    import concurrent.futures
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    split = lanes(tasks, jobs)
    pools = [
        concurrent.futures.ProcessPoolExecutor(
            1, mp_context=context, initializer=prepare_process, initargs=(tasks[0][0],)
        )
        for _ in split
    ]
    futures = {pool.submit(measure_run, *task): task for pool, lane in zip(pools, split) for task in lane}
    try:
        for future in concurrent.futures.as_completed(futures):
            yield (futures[future], *future.result())
    except BaseException:
        for pool in pools:
            pool.shutdown(wait=False, cancel_futures=True)
        raise
    for pool in pools:
        pool.shutdown()


def measure_run(cfg, uri: str, settings: Settings, spec, seed: int, run_id: str, contour: bool):
    """Measure one run's stored net and write the results onto the run: its headline numbers
    and the seconds it took. The unit a worker process runs."""
    from ..trained import load_net

    t0 = time.perf_counter()
    net, metadata = load_net(uri, run_id, f"{spec.name} seed {seed} (run {run_id})")
    return measure_net(cfg, uri, settings, spec, seed, run_id, contour, net, metadata, t0)


@dataclass(frozen=True)
class AfterTraining:
    """What ``run --analyse`` hands its sweep's task (:class:`resnet_bench.runner.Training`):
    called with each run that finishes, in the process that trained it."""

    settings: Settings

    def __call__(self, ctx, spec, seed: int, run_id: str, net, normalisation, name: str) -> None:
        after_training(ctx, self.settings, spec, seed, run_id, net, normalisation, name)


def after_training(ctx, settings: Settings, spec, seed: int, run_id: str, net, normalisation, name: str) -> None:
    """Measure the run ``run_id`` that just finished, in the process that trained it, from its
    net in memory (the weights it stored). A failure is one line and leaves the run FINISHED;
    ``resnet-bench analyse`` (and ``run --analyse`` after its sweep) measures it again."""
    from ..trained import net_metadata

    t0 = time.perf_counter()
    cfg = ctx.cfg
    contour = bool(settings.contour_points) and (spec.name, seed) in contour_runs(cfg)
    try:
        h, seconds = measure_net(cfg, ctx.uri, settings, spec, seed, run_id, contour, net,
                                 net_metadata(*normalisation, [], 0), t0)  # fmt: skip
    except Exception as e:
        ctx.echo(f"{name}: not analysed ({type(e).__name__}: {str(e).strip()[:200]}); resnet-bench analyse retries it")
        return
    ctx.echo(f"{name}: analysed in {seconds:.1f}s: {_summary(h)}")


_BENCHES: dict = {}  # this process's benches, one per (variant, normalisation)


def measure_net(cfg, uri, settings: Settings, spec, seed: int, run_id: str, contour: bool, net, metadata, t0):
    """Measure ``net``, the stored net of run ``run_id`` (``metadata``: its normalisation),
    write the results onto the run, and return its headline numbers and the seconds since
    ``t0``."""
    from .. import data as data_mod
    from ..tracking.store import Store
    from ..train import seed_everything

    # TensorFlow's op determinism as the run had it, whatever this process did before: the
    # batch statistics of the initial net are reductions that otherwise vary between processes.
    seed_everything(seed, cfg.train.deterministic, tensorflow_seed=False)
    store = Store(uri)
    arrays = data_mod.load(cfg.data)
    key = (spec, json.dumps([metadata["normalisation_mean"], metadata["normalisation_std"]]))
    if key not in _BENCHES:
        binary = cfg.train.loss == "binary"
        inputs = inputs_of(arrays, metadata, settings)
        _BENCHES[key] = Bench(spec, tuple(net.input_shape[1:]), len(arrays.classes), binary, inputs, settings)
    result = measure(_BENCHES[key], net, seed, settings, contour)
    result["settings"] = json.loads(settings.key())
    result["seconds"] = time.perf_counter() - t0
    store.log_text(run_id, json.dumps(result, indent=1), ARTIFACT)
    store.log_metrics(run_id, headline(result))
    return headline(result), result["seconds"]
