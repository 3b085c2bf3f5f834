"""Experiment files -> one frozen, validated config object.

An experiment file (``experiments/*.toml``) has six tables: ``[data]``, ``[train]``,
``[model]`` (architecture options shared by every variant), ``[grid]`` (depths x shortcut
options x seeds), ``[analysis]`` (what ``resnet-bench analyse`` adds to its fixed set) and
``[report]`` (which seeds chose the design, and which held-out runs check it).
Command-line overrides (``--set train.epochs=3``) are applied to the parsed TOML before
validation, so they obey exactly the same rules. Every field is logged as an MLflow
param (see :func:`flatten`), and ``tests/test_config.py`` checks that none is left out.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import sys
import typing
from dataclasses import dataclass, field
from pathlib import Path

from . import fields, inputs, schema
from .errors import UserError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib
from .data.files import ARRAY_SUFFIXES, pair_test_file
from .sections import (  # noqa: F401 (the tables, re-exported: config.DataConfig and so on)
    GRID_FIELDS,
    PRECISIONS,
    SOURCES,
    AnalysisConfig,
    DataConfig,
    GridConfig,
    ModelConfig,
    ReportConfig,
    TrainConfig,
)
from .spec import ModelSpec


@dataclass(frozen=True)
class ExperimentConfig:
    name: str
    description: str = ""
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    grid: GridConfig = field(default_factory=GridConfig)
    analysis: AnalysisConfig = field(default_factory=AnalysisConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    source_file: str = field(default="", compare=False)

    def variants(self) -> list[ModelSpec]:
        """Model variants of the grid (:meth:`GridConfig.cells`)."""
        return [
            ModelSpec(depth=d, shortcut=s, zero_init=z, **dataclasses.asdict(self.model))
            for d, s, z in self.grid.cells()
        ]

    def run_config(self) -> dict:
        """The part of the config that defines a run's training (grid and seeds excluded)."""
        d = dataclasses.asdict(self)
        for k in ("grid", "analysis", "report", "source_file", "description"):
            d.pop(k)
        return d

    def run_key(self, spec: ModelSpec, seed: int) -> str:
        """Identity of one (variant, seed) run: a hash of everything that shapes its numbers."""
        model = dataclasses.asdict(spec)
        # Hashed under the field's first name, so that runs tracked by earlier versions keep
        # their keys and a sweep over their store resumes instead of training them again.
        for name, earlier in schema.EARLIER_PARAM_NAMES.items():
            model[earlier] = model.pop(name)
        payload = {"config": self.run_config(), "model": model, "seed": seed}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]

    def config_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.run_config(), sort_keys=True).encode()).hexdigest()[:16]


SECTIONS = {"data": DataConfig, "train": TrainConfig, "model": ModelConfig, "grid": GridConfig,
            "analysis": AnalysisConfig, "report": ReportConfig}  # fmt: skip


def _coerce(value, hint, where: str):
    """Check ``value`` against a dataclass field type; lists become tuples."""
    origin = typing.get_origin(hint)
    if origin is tuple:
        (item,) = {a for a in typing.get_args(hint) if a is not Ellipsis}
        if not isinstance(value, (list, tuple)):
            raise UserError(f"{where}: expected a list, got {value!r}")
        return tuple(_coerce(v, item, where) for v in value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, float) and not math.isfinite(value):
        raise UserError(f"{where}: expected a finite number, got {value!r}")
    if hint is bool and not isinstance(value, bool):
        raise UserError(f"{where}: expected true or false, got {value!r}")
    if hint is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise UserError(f"{where}: expected an integer, got {value!r}")
    if not isinstance(value, hint):
        raise UserError(f"{where}: expected {hint.__name__}, got {value!r}")
    return value


def _build(cls, table: dict, section: str, origin: str):
    if not isinstance(table, dict):
        raise UserError(f"{origin}: [{section}] must be a table")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    values = {}
    for key, value in table.items():
        where = f"{origin}: {section}.{key}"
        if key not in known:
            raise UserError(f"{where}: unknown key (known: {', '.join(sorted(known))})")
        values[key] = _coerce(value, hints[key], where)
    return cls(**values)


def _check(cfg: ExperimentConfig, origin: str) -> None:
    for section in SECTIONS:
        obj = getattr(cfg, section)
        for f in dataclasses.fields(obj):
            wrong = fields.problem(f"{section}.{f.name}", getattr(obj, f.name), f.metadata)
            if wrong:
                raise UserError(f"{origin}: {wrong}")
    g, t, d = cfg.grid, cfg.train, cfg.data
    for name in ("depths", "shortcuts", "zero_init", "seeds"):
        items = getattr(g, name)
        if not items:
            raise UserError(f"{origin}: grid.{name} is empty")
        if len(set(items)) != len(items):
            raise UserError(f"{origin}: grid.{name} has duplicates: {list(items)}")
    inputs.check_seeds(g.seeds, f"{origin}: grid.seeds")
    if d.image_size < 8 and d.source == "synthetic" or d.image_size > 1024:
        raise UserError(f"{origin}: data.image_size must be between 8 and 1024, got {d.image_size}")
    if d.source != "synthetic" and not d.path:
        raise UserError(f"{origin}: data.source = {d.source!r} needs data.path (or --data PATH)")
    if d.source == "synthetic":
        _check_generated(d, t, origin)
    if t.loss == "binary" and d.source == "synthetic" and d.classes != 2:
        raise UserError(f"{origin}: train.loss = 'binary' needs 2 classes, data.classes is {d.classes}")
    if t.jit_compile == "on" and t.deterministic:
        raise UserError(
            f"{origin}: train.jit_compile = 'on' needs train.deterministic = false "
            "(Keras compiles without XLA while op determinism is on)"
        )
    if cfg.analysis.contours in (1, 2):
        raise UserError(
            f"{origin}: analysis.contours must be 0 or at least 3 points a side, got {cfg.analysis.contours}"
        )
    _check_report(cfg, origin)
    if t.warmup_factor > 1:
        raise UserError(
            f"{origin}: train.warmup_factor must be at most 1 (a warm-up lowers the rate), got {t.warmup_factor}"
        )
    if any(b <= 0 for b in t.lr_boundaries):
        raise UserError(f"{origin}: train.lr_boundaries must be positive step counts, got {list(t.lr_boundaries)}")
    if t.lr_schedule == "step" and list(t.lr_boundaries) != sorted(t.lr_boundaries):
        raise UserError(f"{origin}: train.lr_boundaries must be increasing, got {list(t.lr_boundaries)}")
    for spec_err in _variant_errors(cfg):
        raise UserError(f"{origin}: {spec_err}")


def _check_report(cfg: ExperimentConfig, origin: str) -> None:
    """A held-out check names both the experiment and its seeds, and none of those seeds
    chose the design."""
    r = cfg.report
    for name in ("design_seeds", "held_out_seeds"):
        inputs.check_seeds(getattr(r, name), f"{origin}: report.{name}")
    if bool(r.held_out) != bool(r.held_out_seeds):
        raise UserError(f"{origin}: report.held_out and report.held_out_seeds go together (one is empty)")
    if r.held_out == cfg.name:
        raise UserError(f"{origin}: report.held_out names this experiment itself ({cfg.name!r})")
    if shared := sorted(set(r.design_seeds) & set(r.held_out_seeds)):
        raise UserError(f"{origin}: report.held_out_seeds {shared} also chose the design (report.design_seeds)")


def memory_bytes() -> int:
    """Physical memory of this machine (0 where the system does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0


def _check_generated(d: DataConfig, t: TrainConfig, origin: str) -> None:
    """The generator's own limits, and what the generated set needs against what there is.

    The set is generated in memory and every worker process holds its own copy, so it must fit
    in half the machine's memory; caught here, before minutes of generating towards an
    allocation that cannot succeed.
    """
    from .data import synthetic  # numpy only: TensorFlow is not loaded yet

    if not 2 <= d.classes <= synthetic.MAX_CLASSES:
        raise UserError(
            f"{origin}: data.classes must be between 2 and {synthetic.MAX_CLASSES} for the generated set "
            f"({len(synthetic.SHAPES)} shapes x {len(synthetic.PATTERNS)} fill patterns), got {d.classes}"
        )
    if t.batch_size > d.train_size:
        raise UserError(f"{origin}: train.batch_size {t.batch_size} is larger than data.train_size {d.train_size}")
    need, have = (d.train_size + d.test_size) * d.image_size**2 * 3, memory_bytes()
    if have and need > have / 2:
        raise UserError(
            f"{origin}: data.train_size + data.test_size = {d.train_size + d.test_size:,} images of "
            f"{d.image_size} px need {need / 1e9:.1f} GB in memory, more than half of this machine's "
            f"{have / 1e9:.1f} GB"
        )


def _variant_errors(cfg: ExperimentConfig):
    try:
        specs = cfg.variants()
    except ValueError as e:
        yield f"grid/model: {e}"
        return
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        yield f"grid: variants share a name ({', '.join(names)}); use one residual shortcut option"


def _parse_value(text: str):
    """A ``--set`` value: TOML syntax when it parses (3, 1e-3, true, [1, 2]), else a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(raw: dict, overrides: list[str], origin: str) -> dict:
    """Apply ``section.key=value`` overrides to a parsed TOML document (returns a copy)."""
    raw = json.loads(json.dumps(raw))
    for item in overrides:
        if "=" not in item:
            raise UserError(f"--set {item!r}: expected section.key=value")
        dotted, text = item.split("=", 1)
        parts = dotted.strip().split(".")
        if len(parts) != 2 or parts[0] not in SECTIONS:
            raise UserError(f"--set {dotted!r}: expected one of {', '.join(SECTIONS)} then .key")
        raw.setdefault(parts[0], {})[parts[1]] = _parse_value(text.strip())
    return raw


def from_dict(raw: dict, origin: str = "<config>") -> ExperimentConfig:
    """Validate a parsed experiment document; raises :class:`UserError` naming key and file."""
    known = {"name", "description"} | set(SECTIONS)
    for key in raw:
        if key not in known:
            raise UserError(f"{origin}: unknown key {key!r} (known: {', '.join(sorted(known))})")
    name = raw.get("name")
    if not isinstance(name, str) or not name.replace("_", "").replace("-", "").isalnum():
        raise UserError(f"{origin}: name must be a word of letters, digits, '-' or '_', got {name!r}")
    parts = {k: _build(cls, raw.get(k, {}), k, origin) for k, cls in SECTIONS.items()}
    cfg = ExperimentConfig(name=name, description=str(raw.get("description", "")), source_file=origin, **parts)
    _check(cfg, origin)
    return cfg


def load(path: str | Path, overrides: list[str] = (), data_path: str | None = None) -> ExperimentConfig:
    """Read an experiment file, apply ``--set`` overrides and ``--data``, validate."""
    path = Path(path)
    text = inputs.read_text(path, "experiment file")
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"{path}: not valid TOML ({e})") from None
    raw = apply_overrides(raw, list(overrides), str(path))
    if data_path:
        raw.setdefault("data", {})["path"] = data_path
        if raw["data"].get("source", "synthetic") == "synthetic":
            raw["data"]["source"] = guess_source(data_path)
    return from_dict(raw, str(path))


def check_data_path(cfg: ExperimentConfig) -> None:
    """A photo folder or array file that is not there, told before anything heavy loads.

    Not part of validation: an experiment file parses (and plans) without its data present.
    """
    d = cfg.data
    if d.source in ("folder", "arrays"):
        # an array source may be a folder holding a train/test pair of files
        inputs.existing_path(d.path, "data path", "folder" if d.source == "folder" else "any")


def _holds_array_pair(folder: Path) -> bool:
    try:
        return any(pair_test_file(f) for f in folder.iterdir())
    except OSError:  # unreadable: reading it as a photo folder says why
        return False


def guess_source(path: str) -> str:
    """``--data PATH`` without a source: arrays for .npz/.h5, CIFAR-10 by name, else folders."""
    p = Path(path).expanduser()
    if p.suffix in ARRAY_SUFFIXES:
        return "arrays"
    if p.is_dir() and not (p / "training_set").is_dir() and _holds_array_pair(p):
        return "arrays"  # a folder holding the course's train_X / test_X pair
    if "cifar-10" in p.name:
        return "cifar10"
    return "folder"


def flatten(cfg: ExperimentConfig) -> dict[str, str]:
    """Every resolved field as ``section.key`` -> string, for MLflow params."""
    out = {"name": cfg.name}
    for section in SECTIONS:
        for k, v in dataclasses.asdict(getattr(cfg, section)).items():
            out[f"{section}.{k}"] = ",".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v)
    return out


def toml_value(value) -> str:
    """``value`` as an experiment file writes it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in value) + "]"
    if isinstance(value, str):
        return json.dumps(value)
    return repr(value)


def to_toml(cfg: ExperimentConfig) -> str:
    """The resolved config as TOML (logged as an artifact beside each run)."""
    lines = [f"name = {toml_value(cfg.name)}", f"description = {toml_value(cfg.description)}"]
    for section in SECTIONS:
        lines.append(f"\n[{section}]")
        for k, v in dataclasses.asdict(getattr(cfg, section)).items():
            lines.append(f"{k} = {toml_value(v)}")
    return "\n".join(lines) + "\n"
