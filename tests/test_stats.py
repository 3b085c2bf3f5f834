"""Pure aggregation on hand-built frames with known answers."""

import json
import math
import re

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from resnet_bench.report import against, claims, crossings, estimates, fig7, selection, verdicts


def runs_frame(values: dict[str, list[float]], val: dict[str, list[float]] | None = None):
    """One row per (model, seed) with the given final training losses (and validation
    accuracies, else 0.4); seeds are list positions; a "-zi" name is a zero-init variant."""
    rows = []
    for model, vals in values.items():
        depth = int(re.search(r"\d+", model).group())
        for seed, v in enumerate(vals):
            rows.append(
                {
                    "run_id": f"{model}-{seed}",
                    "model": model,
                    "seed": seed,
                    "depth": depth,
                    "shortcut": "none" if model.startswith("plain") else "A",
                    "zero_init": model.endswith("-zi"),
                    "params_total": 10,
                    "macs": 5,
                    "epochs": 3,
                    "final_train_loss": v,
                    "final_train_accuracy": 0.5,
                    "final_val_accuracy": (val or {}).get(model, [0.4] * len(vals))[seed],
                    "best_val_accuracy": 0.45,
                    "step_ms": 2.0,
                    "images_per_second": 100.0,
                }
            )
    return pd.DataFrame(rows)


def test_paired_known_effect():
    runs = runs_frame({"plain56": [1.0, 1.2, 1.1, 1.3], "plain20": [0.5, 0.6, 0.7, 0.6]})
    d = estimates.paired(runs, "plain56", "plain20", "final_train_loss")
    diffs = [0.5, 0.6, 0.4, 0.7]
    assert d.n == 4
    assert d.mean == pytest.approx(0.55)
    half = sps.t.ppf(0.975, 3) * pd.Series(diffs).std() / 2
    assert d.low == pytest.approx(0.55 - half)
    assert d.high == pytest.approx(0.55 + half)
    assert d.p == pytest.approx(sps.ttest_rel([1.0, 1.2, 1.1, 1.3], [0.5, 0.6, 0.7, 0.6]).pvalue)
    assert d.p < 0.01
    assert verdicts.outcome(d, +1) == "reproduced"
    assert verdicts.outcome(d, -1) == "not reproduced"


def test_paired_null_effect_is_inconclusive():
    runs = runs_frame({"plain56": [1.0, 1.2, 0.9], "plain20": [1.1, 1.0, 1.0]})
    d = estimates.paired(runs, "plain56", "plain20", "final_train_loss")
    assert d.low < 0 < d.high
    assert d.p > 0.05
    assert verdicts.outcome(d, +1) == "inconclusive"


def test_single_seed_has_no_statistics():
    runs = runs_frame({"plain56": [2.0], "plain20": [1.0], "resnet56": [0.5], "resnet20": [0.7]})
    d = estimates.paired(runs, "plain56", "plain20", "final_train_loss")
    assert d.n == 1 and not d.has_stats and math.isnan(d.p)
    verdicts = claims.verdicts(runs)
    assert [v.outcome for v in verdicts] == ["inconclusive"] * 6  # 3 claims x (loss, validation)
    assert all("statistics not available" in v.sentence for v in verdicts)


def test_pairs_only_shared_seeds():
    runs = runs_frame({"plain56": [1.0, 2.0, 3.0], "plain20": [0.0, 1.0]})
    d = estimates.paired(runs, "plain56", "plain20", "final_train_loss")
    assert d.n == 2 and d.seeds == (0, 1)


def test_verdicts_on_a_four_way_design():
    runs = runs_frame(
        {
            "resnet20": [0.40, 0.45, 0.42],
            "plain20": [1.30, 1.25, 1.35],
            "resnet56": [0.70, 0.65, 0.80],
            "plain56": [1.79, 1.80, 1.78],
        }
    )
    out = {v.claim: v for v in claims.verdicts(runs)}
    assert out["Degradation"].outcome == "reproduced"
    assert out["Degradation"].sentence.startswith("Degradation: reproduced. plain56 vs plain20")
    assert out["Shortcut effect"].outcome == "reproduced"
    assert out["Residual depth"].outcome == "not reproduced"  # resnet56 ends higher than resnet20 here
    effects = claims.shortcut_effects(runs)
    assert [e[0] for e in effects] == [20, 56]
    assert effects[1][1].loss.mean == pytest.approx((1.79 + 1.80 + 1.78 - 0.70 - 0.65 - 0.80) / 3)
    # validation accuracy is 0.4 everywhere here: no difference, so nothing is decided
    assert out["Degradation (validation)"].outcome == "inconclusive"


def test_validation_verdicts_flip_the_sign():
    loss = {"resnet20": [0.4, 0.45, 0.42], "plain20": [1.3, 1.25, 1.35], "resnet56": [0.3, 0.32, 0.31],
            "plain56": [1.79, 1.8, 1.78]}  # fmt: skip
    val = {"resnet20": [0.70, 0.72, 0.71], "plain20": [0.50, 0.52, 0.49], "resnet56": [0.80, 0.83, 0.81],
           "plain56": [0.17, 0.18, 0.16]}  # fmt: skip
    out = {v.claim: v for v in claims.verdicts(runs_frame(loss, val))}
    assert list(out) == ["Degradation", "Shortcut effect", "Residual depth", "Degradation (validation)",
                         "Shortcut effect (validation)", "Residual depth (validation)"]  # fmt: skip
    for claim in out:
        assert out[claim].outcome == "reproduced", out[claim].sentence
    assert "final validation accuracy" in out["Shortcut effect (validation)"].sentence
    assert "claimed: < 0" in out["Degradation (validation)"].sentence  # deeper plain net validates worse
    assert "claimed: > 0" in out["Residual depth (validation)"].sentence
    swapped = {"resnet56": val["resnet20"], "resnet20": val["resnet56"], "plain20": val["plain20"],
               "plain56": val["plain56"]}  # fmt: skip
    out = {v.claim: v for v in claims.verdicts(runs_frame(loss, swapped))}
    assert out["Residual depth (validation)"].outcome == "not reproduced"


def test_zero_init_variants_are_reported_beside_the_papers_nets():
    loss = {"resnet20": [0.40, 0.45, 0.42], "resnet20-zi": [0.50, 0.52, 0.49], "plain20": [1.3, 1.25, 1.35],
            "resnet56": [0.70, 0.65, 0.80], "resnet56-zi": [0.30, 0.33, 0.31],
            "plain56": [1.79, 1.8, 1.78]}  # fmt: skip
    out = {v.claim: v for v in claims.verdicts(runs_frame(loss))}
    assert out["Residual depth"].outcome == "not reproduced"
    assert out["Residual depth (zero-init departure)"].outcome == "reproduced"
    assert "resnet56-zi vs resnet20-zi" in out["Residual depth (zero-init departure)"].sentence
    assert "plain56 vs resnet56 " in out["Shortcut effect"].sentence
    assert "plain56 vs resnet56-zi" in out["Shortcut effect (zero-init departure)"].sentence
    depth = claims.depth_effects(runs_frame(loss))
    assert list(depth) == ["plain", "residual", "residual (zero-init)"]
    assert [(d, c.label) for d, c in claims.shortcut_effects(runs_frame(loss))] == [
        (20, "plain"), (20, "plain (zero-init)"), (56, "plain"), (56, "plain (zero-init)")]  # fmt: skip


def test_summary_mean_std_n():
    runs = runs_frame({"resnet20": [0.2, 0.4], "plain20": [1.0, 1.0]})
    rows = {r["model"]: r for r in selection.summary(runs)}
    assert rows["resnet20"]["n"] == 2
    assert rows["resnet20"]["final_train_loss"][0] == pytest.approx(0.3)
    assert rows["resnet20"]["final_train_loss"][1] == pytest.approx(math.sqrt(0.02))
    assert [r["model"] for r in selection.summary(runs)] == ["resnet20", "plain20"]


def test_latest_finished_run_wins_and_failed_runs_are_dropped():
    t = pd.Timestamp("2026-01-01", tz="UTC")
    frame = pd.DataFrame(
        [
            {"run_id": "a", "model": "m", "seed": 0, "status": "FINISHED", "start_time": t, "config_hash": "h"},
            {
                "run_id": "b",
                "model": "m",
                "seed": 0,
                "status": "FINISHED",
                "start_time": t + pd.Timedelta("1h"),
                "config_hash": "h",
            },
            {
                "run_id": "c",
                "model": "m",
                "seed": 0,
                "status": "FAILED",
                "start_time": t + pd.Timedelta("2h"),
                "config_hash": "h",
            },
        ]
    )
    assert list(selection.finished_latest(frame)["run_id"]) == ["b"]


def test_published_comparison_only_for_cifar10():
    runs = runs_frame({"resnet20": [0.1, 0.1]}).assign(final_val_accuracy=[0.9, 0.92])
    rows = claims.published_comparison(runs, "cifar10", "cifar")
    assert rows[0]["paper"] == 8.75
    assert rows[0]["ours"] == pytest.approx(9.0)
    assert claims.published_comparison(runs, "synthetic", "cifar") == []


def test_depth_trend_slopes_are_fitted_per_seed_and_tested_over_seeds():
    # seed k: plain losses rise by exactly (0.01 + 0.001 k) per layer from depth 20
    plain = {f"plain{d}": [0.5 + (0.01 + 0.001 * k) * (d - 20) for k in range(4)] for d in (20, 32, 44, 56)}
    resnet = {"resnet20": [0.5, 0.6, 0.55, 0.5], "resnet32": [0.6, 0.5, 0.5, 0.52],
              "resnet44": [0.52, 0.58, 0.6, 0.49], "resnet56": [0.55, 0.5, 0.53, 0.56]}  # fmt: skip
    runs = runs_frame({**plain, **resnet})
    trends = claims.depth_trends(runs)
    assert list(trends) == ["plain", "residual"]
    t = trends["plain"]
    slopes = [0.010, 0.011, 0.012, 0.013]
    assert t.depths == (20, 32, 44, 56) and t.n == 4
    assert t.mean == pytest.approx(sum(slopes) / 4)
    assert t.p == pytest.approx(sps.ttest_1samp(slopes, 0).pvalue)
    assert claims.trend_verdict(t).outcome == "reproduced"
    assert trends["residual"].p > 0.05 and claims.trend_verdict(trends["residual"]).outcome == "inconclusive"
    titles = [v.claim for v in claims.verdicts(runs)]
    assert titles[-2:] == ["Degradation grows with depth", "Residual nets improve with depth"]


def test_depth_trend_falling_residual_loss_is_reproduced_and_two_depths_give_no_trend():
    resnet = {"resnet20": [0.9, 0.8, 0.85], "resnet32": [0.8, 0.75, 0.7], "resnet44": [0.7, 0.6, 0.62]}
    t = claims.depth_trends(runs_frame(resnet))["residual"]
    assert t.mean < 0 and claims.trend_verdict(t).outcome == "reproduced"
    assert "claimed: < 0" in claims.trend_verdict(t).sentence
    assert claims.depth_trends(runs_frame({"resnet20": [1, 2], "resnet56": [0, 1]})) == {}


def epoch_frame(curves: dict[tuple[str, int], list[float]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A per-epoch frame from {(model, seed): training losses}, and its per-run table."""
    rows = [
        {"run_id": f"{m}-{s}", "model": m, "seed": s, "epoch": e + 1, "train_loss": v}
        for (m, s), losses in curves.items()
        for e, v in enumerate(losses)
    ]
    frame = pd.DataFrame(rows)
    finals = {}
    for (m, s), losses in curves.items():
        finals.setdefault(m, {})[s] = losses[-1]
    runs = runs_frame({m: [v[s] for s in sorted(v)] for m, v in finals.items()})
    return frame, runs


def test_crossing_is_the_first_epoch_below_for_good_in_every_seed():
    frame, runs = epoch_frame(
        {
            ("resnet20", 0): [2.0, 1.0, 0.8, 0.7, 0.6],
            ("resnet56", 0): [2.5, 1.2, 0.7, 0.75, 0.5],  # below at 3, above at 4, below from 5
            ("resnet20", 1): [2.0, 1.0, 0.8, 0.7, 0.6],
            ("resnet56", 1): [2.5, 0.9, 0.7, 0.6, 0.5],  # below from 2
        }
    )
    (c,) = crossings.crossings(frame, runs)
    assert (c.deep, c.shallow, c.epoch, c.epochs, c.n) == ("resnet56", "resnet20", 5, 5, 2)
    assert c.mean_epoch == 3  # mean over seeds: 1.05 vs 1.0 at 2, then 0.7 vs 0.8, 0.675 vs 0.7, 0.5 vs 0.6
    frame2, runs2 = epoch_frame({("resnet20", 0): [1.0, 0.5], ("resnet56", 0): [0.9, 0.6]})
    assert crossings.crossings(frame2, runs2)[0].epoch is None


def test_zero_init_cost_compares_each_departure_with_the_papers_net_of_its_depth():
    runs = runs_frame({"resnet20": [0.4, 0.45, 0.42], "resnet20-zi": [0.9, 0.97, 0.9], "plain20": [1.0, 1, 1]})
    (c,) = claims.zero_init_costs(runs)
    assert (c.loss.a, c.loss.b) == ("resnet20-zi", "resnet20")
    assert c.loss.mean == pytest.approx(0.5) and c.loss.p < 0.01


def layers_frame(values: dict[str, list[list[float]]], kind: str) -> pd.DataFrame:
    """Layer measurements: per model, per seed (list position), one value per layer (index 1..)."""
    rows = [
        (f"{model}-{seed}", kind, i, f"layer{i}", v)
        for model, seeds in values.items()
        for seed, vals in enumerate(seeds)
        for i, v in enumerate(vals, 1)
    ]
    return pd.DataFrame(rows, columns=["run_id", "kind", "index", "layer", "value"])


def test_layer_medians_join_each_run_and_plain_nets_have_no_branch_ratio():
    runs = runs_frame({"plain20": [1.0, 1.0], "resnet20": [0.5, 0.5]})
    layers = pd.concat(
        [
            layers_frame({"plain20": [[3, 1, 2], [4, 4, 1]], "resnet20": [[1, 0.5, 9], [1, 1, 1]]}, "response_std"),
            layers_frame({"resnet20": [[0.2, 0.4], [0.3, 0.5]]}, "branch_ratio"),
        ]
    )
    out = fig7.with_layer_medians(runs, layers).set_index("run_id")
    assert out.loc["plain20-0", "median_response_std"] == 2 and out.loc["plain20-1", "median_response_std"] == 4
    assert out.loc["resnet20-0", "median_response_std"] == 1
    assert math.isnan(out.loc["plain20-0", "median_branch_ratio"])
    assert out.loc["resnet20-1", "median_branch_ratio"] == pytest.approx(0.4)


def test_fig7_verdicts_on_hand_built_layers():
    """Plain responses larger at both depths; deeper residual branches smaller: both reproduced,
    with the paired differences of the per-run medians. Zero-init nets get no verdict."""
    runs = runs_frame({m: [1.0, 1.0, 1.0] for m in ("plain20", "resnet20", "plain56", "resnet56", "resnet56-zi")})
    stds = {
        "plain20": [[1.0, 1.2], [1.1, 1.3], [1.0, 1.4]],  # medians 1.1, 1.2, 1.2
        "resnet20": [[0.5, 0.7], [0.6, 0.6], [0.5, 0.5]],  # 0.6, 0.6, 0.5
        "plain56": [[2.0, 2.0], [1.8, 1.8], [2.2, 2.2]],
        "resnet56": [[0.4, 0.4], [0.3, 0.3], [0.45, 0.45]],
        "resnet56-zi": [[0.0, 0.0], [0.0, 0.0], [0.0, 0.0]],
    }
    ratios = {"resnet20": [[0.5], [0.6], [0.55]], "resnet56": [[0.2], [0.25], [0.3]], "resnet56-zi": [[0.0]] * 3}
    layers = pd.concat([layers_frame(stds, "response_std"), layers_frame(ratios, "branch_ratio")])
    runs = fig7.with_layer_medians(runs, layers)
    decided = fig7.response_verdicts(runs)
    assert [v.claim for v in decided] == [
        "Residual responses are smaller at depth 20",
        "Residual responses are smaller at depth 56",
        "Deeper residual nets modify the signal less",
    ]
    assert [v.outcome for v in decided] == ["reproduced"] * 3
    d = estimates.paired(runs, "plain20", "resnet20", "median_response_std")
    assert d.mean == pytest.approx(((1.1 - 0.6) + (1.2 - 0.6) + (1.2 - 0.5)) / 3)
    assert "difference -0.300" in decided[2].sentence and "resnet56 vs resnet20" in decided[2].sentence
    assert all("zi" not in v.sentence for v in decided)
    assert decided == claims.verdicts(runs)[-3:]  # in the report's one list of verdicts

    # The opposite: residual responses larger, deeper branches larger -> not reproduced.
    swapped = {"plain20": stds["resnet20"], "resnet20": stds["plain20"], "plain56": stds["resnet56"],
               "resnet56": stds["plain56"]}  # fmt: skip
    ratios = {"resnet20": ratios["resnet56"], "resnet56": ratios["resnet20"]}
    layers = pd.concat([layers_frame(swapped, "response_std"), layers_frame(ratios, "branch_ratio")])
    runs = fig7.with_layer_medians(runs_frame({m: [1.0] * 3 for m in swapped}), layers)
    assert [v.outcome for v in fig7.response_verdicts(runs)] == ["not reproduced"] * 3


def test_runs_without_layer_measurements_get_no_fig7_verdict():
    runs = runs_frame({"plain20": [1.0, 1.1], "resnet20": [0.5, 0.6]})
    assert fig7.response_verdicts(runs) == []
    empty = pd.DataFrame(columns=["run_id", "kind", "index", "layer", "value"])
    runs = fig7.with_layer_medians(runs, empty)
    assert fig7.response_verdicts(runs) == [] and fig7.response_table(runs) == []


def test_layer_profiles_in_layer_order_and_sorted():
    runs = runs_frame({"plain20": [1.0, 1.0]})
    layers = layers_frame({"plain20": [[1.0, 3.0, 2.0], [2.0, 1.0, 6.0]]}, "response_std")
    prof = fig7.layer_profiles(layers, runs).set_index(["order", "position"])
    assert prof.loc[("layer", 2), "mean"] == 2.0 and prof.loc[("layer", 2), "max"] == 3.0
    assert prof.loc[("sorted", 1), "mean"] == 4.5  # each run's largest: 3 and 6
    assert prof.loc[("sorted", 3), "min"] == 1.0


def test_a_written_report_is_read_back_claim_by_claim_and_checked_against_fresh_runs():
    # plain56 - plain20 = +1.0 in every seed but one: reproduced, with an interval around 1.
    old = claims.verdicts(runs_frame({"plain20": [1.0, 1.1, 0.9, 1.0], "plain56": [2.0, 2.2, 1.9, 2.05],
                                     "resnet20": [0.5] * 4, "resnet56": [0.6, 0.4, 0.55, 0.45]}))  # fmt: skip
    written = against.read_records(verdicts.to_json(old, experiment="x"), "old.json")
    assert written["Degradation"] == ("reproduced", pytest.approx(1.0375))  # mean of 1.0, 1.1, 1.0, 1.05
    assert written["Residual depth"][0] == "inconclusive"
    assert set(written) == {v.claim for v in old}

    # Fresh runs: the same degradation, smaller; residual depth now clearly reproduced.
    fresh = claims.verdicts(runs_frame({"plain20": [1.0, 1.0, 1.1, 0.9], "plain56": [1.5, 1.6, 1.5, 1.45],
                                       "resnet20": [0.5] * 4, "resnet56": [0.3, 0.31, 0.29, 0.3]}))  # fmt: skip
    by = {a.claim: a for a in against.compare(fresh, written)}
    deg = by["Degradation"]
    assert deg.same_verdict and deg.written == deg.fresh == "reproduced"
    assert deg.inside is False  # 1.038 lies above the fresh interval around +0.51
    assert deg.fresh_estimate.high < 1.038
    assert not by["Residual depth"].same_verdict and by["Residual depth"].fresh == "reproduced"
    lines = against.lines(list(by.values()), "old.md")
    assert lines[-1].startswith("verdicts differ on 1 of") and lines[-1].endswith("Residual depth")
    same = against.compare(old, written)
    assert all(a.same_verdict and a.inside for a in same if a.fresh_estimate.has_stats)
    assert against.lines(same, "old.md")[-1].startswith(f"same verdicts on all {len(old)} claims")


def test_verdict_records_carry_every_number_of_the_claim_and_a_foreign_file_is_one_line():
    old = claims.verdicts(runs_frame({"plain20": [1.0, 1.1, 0.9, 1.0], "plain56": [2.0, 2.2, 1.9, 2.05],
                                     "resnet20": [0.5] * 4, "resnet56": [0.6, 0.4, 0.55, 0.45]}))  # fmt: skip
    doc = json.loads(verdicts.to_json(old, experiment="x", config_hash="abc"))
    assert doc["experiment"] == "x" and doc["rule"] == verdicts.VERDICT_RULE
    (deg,) = [r for r in doc["verdicts"] if r["claim"] == "Degradation"]
    d = [1.0, 1.1, 1.0, 1.05]
    low, high = sps.t.interval(0.95, 3, loc=np.mean(d), scale=np.std(d, ddof=1) / 2)
    assert deg["key"] == "degradation" and deg["outcome"] == "reproduced" and deg["n"] == 4
    assert deg["seeds"] == [0, 1, 2, 3] and deg["claimed_sign"] == 1 and deg["kind"] == "difference"
    assert deg["estimate"] == pytest.approx(np.mean(d)) and deg["interval"] == pytest.approx([low, high])
    assert deg["p"] == pytest.approx(sps.ttest_1samp(d, 0).pvalue)
    assert deg["comparison"] == "plain56 vs plain20 (deep minus shallow plain net)"
    assert [r["key"] for r in doc["verdicts"]][:2] == ["degradation", "shortcut_effect"]
    assert "shortcut_effect/validation" in [r["key"] for r in doc["verdicts"]]
    for bad in ("# a Markdown report\n", json.dumps({"format": 99, "verdicts": []}), json.dumps([1])):
        with pytest.raises(ValueError, match="^old.json: not a report's verdict records"):
            against.read_records(bad, "old.json")


def test_a_claim_only_one_side_decides_is_named_not_compared():
    fresh = claims.verdicts(runs_frame({"plain20": [1.0, 1.2], "plain56": [2.0, 2.1]}))
    agreements = against.compare(fresh, {"Residual depth": ("reproduced", -0.2)})
    (gone,) = [a for a in agreements if a.claim == "Residual depth"]
    assert gone.fresh is None and gone.inside is None
    assert {a.claim for a in agreements if a.written is None} == {v.claim for v in fresh}
    # Why the fresh runs leave claims undecided, where the report knows: said once, then referred to.
    written = {"Residual depth": ("reproduced", -0.2), "Shortcut effect": ("reproduced", 1.0)}
    why = dict.fromkeys(written, "not in this store")
    said = [ln for ln in against.lines(against.compare(fresh, written), "old.md", why) if "not decided" in ln]
    assert said == ["  Residual depth: not decided by these runs (reproduced in old.md): not in this store",
                    "  Shortcut effect: not decided by these runs (reproduced in old.md) (as above)"]  # fmt: skip


def final_epochs(finals: dict[str, dict[int, float]], training="t1", status="FINISHED", hour=0) -> pd.DataFrame:
    """A one-epoch frame as report.frame.load_frames builds it: {model: {seed: training loss}}."""
    t = pd.Timestamp("2026-01-01", tz="UTC") + pd.Timedelta(hours=hour)
    rows = []
    for model, by_seed in finals.items():
        depth = int(re.search(r"\d+", model).group())
        for seed, loss in by_seed.items():
            rows.append({"run_id": f"{model}-{seed}-{training}-{hour}", "model": model, "seed": seed, "epoch": 1,
                         "depth": depth, "shortcut": "none" if model.startswith("plain") else "A",
                         "zero_init": False, "params_total": 10, "macs": 5, "train_loss": loss,
                         "train_accuracy": 0.5, "val_accuracy": 0.4, "step_ms_median": 2.0,
                         "images_per_second": 100.0, "status": status, "start_time": t, "training": training,
                         "schema_missing": ""})  # fmt: skip
    return pd.DataFrame(rows)


def test_held_out_claims_are_decided_on_the_named_seeds_of_runs_that_train_the_same_way():
    from resnet_bench.report import held_out, numbers

    # In-sample seeds 0-3: every claim reproduced. Held-out seeds 4-7: degradation and the
    # shortcut effect hold, residual depth goes the other way in every seed.
    def finals(seeds, residual_deep):
        plain = {"plain20": {s: 1.0 for s in seeds}, "plain56": {s: 2.0 + 0.1 * s for s in seeds}}
        return {**plain, "resnet20": {s: 0.5 for s in seeds}, "resnet56": {s: residual_deep + 0.01 * s for s in seeds}}

    used = final_epochs(finals(range(4), 0.3))
    other = pd.concat([
        final_epochs(finals(range(4, 8), 0.7)),
        final_epochs(finals(range(4, 8), 0.1), training="t2"),  # another training: never counted
        final_epochs(finals(range(8, 10), 0.1)),  # not a held-out seed
        final_epochs({"plain44": {4: 9.0}}),  # a variant the report does not have
    ])  # fmt: skip
    declared = held_out.Declared((0, 1, 2, 3), "fig6", (4, 5, 6, 7))
    h = held_out.check(declared, used, other)
    assert h.missing == "" and h.seeds == [4, 5, 6, 7]
    assert set(h.runs["model"]) == {"plain20", "plain56", "resnet20", "resnet56"}
    by = {v.claim: v for v in h.verdicts}
    assert set(by) == {"Degradation (held-out seeds)", "Shortcut effect (held-out seeds)",
                       "Residual depth (held-out seeds)"}  # fmt: skip
    assert by["Degradation (held-out seeds)"].outcome == "reproduced"
    assert by["Residual depth (held-out seeds)"].outcome == "not reproduced"
    assert by["Residual depth (held-out seeds)"].estimate.mean == pytest.approx(0.7 + 0.055 - 0.5)
    assert by["Shortcut effect (held-out seeds)"].estimate.seeds == (4, 5, 6, 7)
    assert {v.figure for v in h.verdicts} == {"held_out"}
    assert {v.key for v in h.verdicts} >= {"degradation/held_out_seeds"}

    # Why there is no check, in words: the runs are missing, or they train differently.
    missing = held_out.check(declared, used, None, "run it")
    assert "not in this store" in missing.missing and set(missing.undecided) == set(by) and h.undecided == {}
    assert "train differently" in held_out.check(declared, used, other[other["training"] == "t2"]).missing
    assert held_out.check(held_out.Declared(), used, other) is None
    old = other.assign(schema_missing="train.epochs")  # written by another version of the code
    assert "cannot be read: run " in held_out.check(declared, used, old).missing
    assert h.verdict("Degradation") is by["Degradation (held-out seeds)"] and h.verdict("Other") is None
    assert numbers.seed_text((4, 5, 6, 7)) == "4-7" and numbers.seed_text((0, 2)) == "0, 2"
