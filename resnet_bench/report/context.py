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
    runs: pd.DataFrame  # one row per run used (selection.per_run)
    config_hash: str
    other_configs: int  # runs of the experiment under other configurations
    pending: int
    running: int
    excluded: int  # FAILED or KILLED runs of this configuration
    index: pd.DataFrame  # every run of the configuration: model, seed, run_id, status, failure_reason
    summary: list[dict]  # selection.summary: one row per variant
    shortcut: list[tuple]  # claims.shortcut_effects: (depth, claims.Comparison)
    depth: dict  # claims.depth_effects: kind -> claims.Comparison
    verdicts: list  # verdicts.Verdict records, each knowing its section
    trends: dict  # claims.depth_trends: "plain" / "residual" -> estimates.Trend
    crossings: list  # crossings.Crossing
    headline: object  # crossings.headline: the crossing the claims section names, or None
    zero_init: list  # claims.zero_init_costs: claims.Comparison
    responses: list[dict]  # fig7.response_table
    profiles: object  # fig7.layer_profiles, or None without layer measurements
    published: list
    why: object  # why.Why: the analyses of the runs used, or None when none was analysed
    held_out: object  # held_out.HeldOut: the claims on held-out seeds, or None when none is declared
    design_seeds: tuple  # the seeds the design was chosen on ([report]), () when not declared
    figure_dir: str
    command: str
    description: str
    figures: dict = field(default_factory=dict)  # figure name -> file, once drawn
    all_frame: pd.DataFrame | None = None  # every run of the experiment (write_report)
