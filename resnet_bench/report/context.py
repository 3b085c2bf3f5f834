"""What a report is made of: the typed result of aggregation, which the renderers read."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd


@dataclass
class ReportContext:
    """Everything the renderers read, computed from the tidy frames by :func:`build_context`
    (pure); the figures are added once drawn, and the whole store's frame for ``--csv``."""

    experiment: str
    frame: pd.DataFrame  # the per-epoch rows of the runs used
    runs: pd.DataFrame  # one row per run used (stats.per_run)
    config_hash: str
    other_configs: int  # runs of the experiment under other configurations
    pending: int
    running: int
    excluded: int  # FAILED or KILLED runs of this configuration
    index: pd.DataFrame  # every run of the configuration: model, seed, run_id, status, failure_reason
    summary: list
    shortcut: list
    depth: dict
    verdicts: list  # stats.Verdict, each knowing its figure
    trends: list
    crossings: list
    zero_init: list
    responses: list
    profiles: object  # stats.layer_profiles, or None without layer measurements
    published: list
    why: object  # why.Why: the analyses of the runs used, or None when none was analysed
    figure_dir: str
    command: str
    description: str
    figures: dict = field(default_factory=dict)  # figure name -> file, once drawn
    all_frame: pd.DataFrame | None = None  # every run of the experiment (write_report)
