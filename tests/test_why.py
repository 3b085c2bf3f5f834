"""The report's "why" section: its claims on hand-built records, then end to end on the tiny
sweep (analyse, report, and the report checked against itself)."""

import contextlib
import io

import numpy as np
import pandas as pd
import pytest

from resnet_bench import cli
from resnet_bench.report import why

from .helpers import private_store

SEEDS = (0, 1, 2)


def _record(relative, sharp_final, curv_final=10.0):
    line = [[1.0, 0.5, 1.0]]
    return {
        "lesions": {"mean_drop": 0.1, "relative_drop": relative, "downsampling_drop": 0.2, "accuracy": [0.5, 0.6]},
        "landscape_init": {"sharpness": 0.1, "alpha": [-1, 0, 1], "loss": line},
        "landscape_final": {"sharpness": sharp_final, "alpha": [-1, 0, 1], "loss": line},
        "curvature_init": {"eigenvalue": 5.0},
        "curvature_final": {"eigenvalue": curv_final},
        "seconds": 2.0,
    }


def _runs(models):
    same = {"zero_init": False, "params_total": 1, "macs": 1, "final_train_loss": 1.0, "final_train_accuracy": 0.5,
            "best_val_accuracy": 0.5, "final_val_accuracy": 0.5, "step_ms": 1.0, "images_per_second": 1.0}  # fmt: skip
    kind = {True: "A", False: "none"}
    rows = [{"run_id": f"{m}-{s}", "model": m, "seed": s, "depth": d, "shortcut": kind[m.startswith("resnet")], **same}
            for m, d in models for s in SEEDS]  # fmt: skip
    return pd.DataFrame(rows)


def test_claims_are_paired_differences_of_the_records_numbers():
    runs = _runs([("resnet20", 20), ("plain20", 20)])
    # plain minus residual relative drop: 0.3, 0.4, 0.5 per seed; sharpness: -0.1 each (plain flatter)
    records = {f"plain20-{s}": _record(0.5 + 0.1 * s, 0.1) for s in SEEDS}
    records.update({f"resnet20-{s}": _record(0.2, 0.2) for s in SEEDS})
    w = why.build(runs, records)
    by = {v.claim: v for v in w.verdicts}
    lesion = by["Deleting a block costs a plain net more at depth 20"]
    assert lesion.estimate.mean == pytest.approx(0.4) and lesion.estimate.n == 3 and lesion.outcome == "reproduced"
    sharp = by["Plain landscapes are sharper at depth 20 (end)"]
    assert sharp.estimate.mean == pytest.approx(-0.1) and sharp.outcome == "not reproduced"
    assert by["Plain curvature is higher at depth 20 (end)"].outcome == "inconclusive"  # equal in every seed
    assert w.analysed == w.total == 6 and w.seconds == pytest.approx(12.0) and not w.notes
    assert list(w.lesions["position"].unique()) == [1, 2]


def test_a_net_at_chance_makes_the_lesion_claim_not_applicable_and_says_why():
    runs = _runs([("resnet56", 56), ("plain56", 56)])
    records = {f"plain56-{s}": _record(None, 0.1) for s in SEEDS}
    records.update({f"resnet56-{s}": _record(0.2, 0.1) for s in SEEDS})
    w = why.build(runs, records)
    assert "Deleting a block costs a plain net more at depth 56" not in {v.claim for v in w.verdicts}
    assert w.notes == [
        "Deleting a block costs a plain net more at depth 56: not applicable: plain56 is within the margin of chance "
        "in 3 of its 3 analysed seeds, so fewer than 2 seeds compare (the rule in docs/methods.md)."
    ]


def test_three_depths_decide_the_sharpness_trends_from_per_seed_slopes():
    depths = (20, 32, 44)
    runs = _runs([(f"{k}{d}", d) for d in depths for k in ("resnet", "plain")])
    records = {}
    for d in depths:
        for s in SEEDS:
            records[f"plain{d}-{s}"] = _record(0.5, 0.01 * d + 0.001 * s)  # slope 0.01 per layer
            records[f"resnet{d}-{s}"] = _record(0.2, 0.5 - 0.001 * s * d / 44)
    by = {v.claim: v for v in why.build(runs, records).verdicts}
    grows = by["Plain sharpness grows with depth"]
    assert grows.estimate.mean == pytest.approx(0.01) and grows.outcome == "reproduced"
    faster = by["Sharpness grows faster with depth without shortcuts"]
    expected = np.mean([0.01 + 0.001 * s / 44 for s in SEEDS])
    assert faster.estimate.mean == pytest.approx(expected) and faster.outcome == "reproduced"


def test_without_twins_the_twin_claims_are_not_made_and_the_section_says_so():
    runs = _runs([("resnet20", 20), ("resnet56", 56)])
    w = why.build(runs, {f"resnet{d}-{s}": _record(0.1 * (d == 20) + 0.05 * s, 0.1) for d in (20, 56) for s in SEEDS})
    assert [v.claim for v in w.verdicts] == ["The deeper residual net is more robust to one deletion"]
    assert w.notes == ["No variant here has its twin (a plain net and a residual net of one depth): "
                       "the plain-against-residual claims are not made."]  # fmt: skip


def test_no_analysed_run_leaves_no_section_data():
    assert why.build(_runs([("resnet20", 20)]), {}) is None


def _cli(args):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(args)
    return code, out.getvalue(), err.getvalue()


@pytest.mark.slow
def test_analysed_runs_get_the_section_its_figures_and_verdicts_that_against_reads(tiny_sweep, tmp_path):
    _, exp, uri = tiny_sweep
    folder, uri = tmp_path, private_store(uri, tmp_path)
    code, printed, _ = _cli(["report", "tiny", "--tracking-uri", uri, "--out", str(folder / "before.md")])
    assert code == 0 and "no run of this report has been analysed" in printed
    assert "## Why residual nets train" not in (folder / "before.md").read_text()  # as reports of earlier runs read
    code, _, err = _cli(
        ["analyse", str(exp), "--tracking-uri", uri, "--set", "grid.depths=[14]", "--set", "analysis.contours=3"]
    )
    assert code == 0, err
    out = folder / "why" / "tiny.md"
    code, printed, err = _cli(["report", "tiny", "--tracking-uri", uri, "--out", str(out)])
    assert code == 0, err
    text = out.read_text()
    section = text.split("## Why residual nets train", 1)[1].split("\n## ", 1)[0]
    assert "4 of the 8 runs used have no analysis" in section
    rows = [line.split(" | ")[:2] for line in section.splitlines() if line.startswith("| ") and "---" not in line]
    assert rows[1:] == [["| resnet14", "2"], ["| plain14", "2"]]
    for claim in ("Plain landscapes are sharper at depth 14 (init)", "Plain curvature is higher at depth 14 (end)"):
        assert f"- {claim}: " in section and claim in printed
    for name in ("lesions", "landscape", "contours"):
        assert (folder / "why" / "figures" / "tiny" / f"{name}.png").is_file()
        assert f"figures/tiny/{name}.png" in text
    code, printed, _ = _cli(["report", "tiny", "--tracking-uri", uri, "--out", str(out), "--against", str(out)])
    assert code == 0 and "Plain landscapes are sharper at depth 14 (end): same verdict" in printed
    code, printed, _ = _cli(["report", "tiny", "--tracking-uri", uri, "--out", str(out), "--against-committed"])
    assert (
        code == 0
        and printed.splitlines()[-1]
        == f"nothing to compare against: {out.with_suffix('.json').resolve()} is not in a git checkout"
    )
