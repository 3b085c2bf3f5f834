"""The report over a tiny tracked sweep: sections, figures, numbers, determinism, no TensorFlow."""

import json
import re
import subprocess
import sys

import pytest
from mlflow.tracking import MlflowClient
from scipy import stats

from resnet_bench import cli, schema

from .helpers import TRAIN_LOSS, all_runs, store_uri

SECTIONS = [
    "# Report: tiny",
    "## The three claims",
    "## Summary",
    "## Shortcut effect",
    "## Degradation check",
    "### Verdict",
    "## Where depth starts to pay",
    "## Layer responses (He et al. Fig. 7)",
    "## Figures",
    "## Run index",
]


@pytest.fixture(scope="module")
def reported(tiny_sweep):
    tmp, exp, uri = tiny_sweep
    out = tmp / "out" / "tiny.md"
    assert cli.main(["report", "tiny", "--tracking-uri", uri, "--out", str(out), "--csv", str(tmp / "t.csv")]) == 0
    return tmp, uri, out


@pytest.mark.slow
def test_report_has_every_section_and_its_figures(reported):
    tmp, uri, out = reported
    text = out.read_text()
    for s in SECTIONS:
        assert s in text, s
    for name in ("train_loss", "accuracy", "grad_norms", "fig6", "fig7", "step_time"):
        png = out.parent / "figures" / "tiny" / f"{name}.png"
        assert png.is_file() and png.stat().st_size > 1000
        assert f"](figures/tiny/{name}.png)" in text
    val_acc = schema.stored_key("val_accuracy")
    finals = {metric: _finals(uri, metric) for metric in (TRAIN_LOSS, val_acc)}
    for claim, (a, b, sign) in FIG6_CLAIMS.items():
        for metric, suffix, claimed in ((TRAIN_LOSS, "", sign), (val_acc, " (validation)", -sign)):
            line = next(ln for ln in text.splitlines() if ln.startswith(f"- {claim}{suffix}: "))
            diffs = [finals[metric][a, s] - finals[metric][b, s] for s in (0, 1)]
            assert _word(line) == _expected_word(diffs, claimed), line
    assert "n = 2" in text
    assert (tmp / "t.csv").read_text().count("\n") > 16


VERDICT = re.compile(
    r"^- (?P<claim>[^:]+): (?P<word>reproduced|not reproduced|inconclusive)\. .* difference "
    r"(?P<mean>\S+) \[(?P<low>\S+), (?P<high>\S+)\], p = (?P<p>\S+), n = \d+; claimed: (?P<sign>[<>]) 0\.$"
)


def stats_of(report) -> dict:
    """claim -> (outcome, estimate) from the verdict records beside ``report``."""
    from resnet_bench.report import against

    return against.read_records(report.with_suffix(".json").read_text(), str(report))


@pytest.mark.slow
def test_the_report_leads_with_the_three_claims_as_its_verdicts_decide_them(reported):
    _, _, out = reported
    text = out.read_text()
    lead = text.split("## The three claims")[1].split("## Summary")[0]
    verdicts = stats_of(out)
    for claim in ("Degradation", "Shortcut effect", "Residual depth"):
        line = next(ln for ln in lead.splitlines() if ln.startswith(f"- **{claim}**: "))
        assert line.startswith(f"- **{claim}**: {verdicts[claim][0]}. "), line
        assert f"{verdicts[claim][1]:+.3f} [" in line, line  # the verdict's own estimate
    assert "- **Where depth starts to pay**: resnet14 stays below resnet8 " in lead


def _word(line: str) -> str:
    return VERDICT.match(line)["word"]


# He et al.'s Fig. 6 claims on the tiny sweep: (a, b, the claimed sign of a - b in training loss)
FIG6_CLAIMS = {"Degradation": ("plain14", "plain8", +1), "Shortcut effect": ("plain14", "resnet14", +1),
               "Residual depth": ("resnet14", "resnet8", -1)}  # fmt: skip


def _expected_word(diffs: list[float], claimed: int) -> str:
    """The verdict docs/methods.md's rule gives the paired differences ``diffs``, by scipy's
    one-sample t-test and its 95% interval: not the report's code, nor its rounded numbers."""
    test = stats.ttest_1samp(diffs, 0.0)
    ci = test.confidence_interval(0.95)
    if not (test.pvalue < 0.05 and (ci.low > 0 or ci.high < 0)):
        return "inconclusive"
    return "reproduced" if (sum(diffs) > 0) == (claimed > 0) else "not reproduced"


def _finals(uri: str, metric: str) -> dict[tuple[str, int], float]:
    """(model, seed) -> last logged value of ``metric``, read from MLflow, not from the report."""
    client = MlflowClient(tracking_uri=uri)
    final = {}
    for run in all_runs(uri, "tiny"):
        hist = sorted(client.get_metric_history(run.info.run_id, metric), key=lambda m: m.step)
        final[run.data.params["model"], int(run.data.params["seed"])] = hist[-1].value
    return final


@pytest.mark.slow
def test_the_degradation_verdict_is_the_paired_difference_recomputed_from_mlflow(reported):
    tmp, uri, out = reported
    final = _finals(uri, TRAIN_LOSS)
    diffs = [final["plain14", s] - final["plain8", s] for s in (0, 1)]
    line = next(ln for ln in out.read_text().splitlines() if ln.startswith("- Degradation: "))
    m = VERDICT.match(line)
    assert float(m["mean"]) == pytest.approx(sum(diffs) / 2, abs=5e-4)
    expected_p = stats.ttest_1samp(diffs, 0.0).pvalue
    assert float(m["p"]) == pytest.approx(expected_p, rel=0.01)
    assert _word(line) == _expected_word(diffs, +1)


@pytest.mark.slow
def test_report_is_logged_as_a_run_the_report_itself_ignores(reported):
    tmp, uri, out = reported
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("tiny")
    (run,) = client.search_runs([exp.experiment_id], "tags.bench_report = 'true'", max_results=10)[:1]
    assert "run_key" not in run.data.tags and run.data.params["runs_used"] == "8"
    line = next(ln for ln in out.read_text().splitlines() if ln.startswith("- Degradation (validation): "))
    assert run.data.params["verdict/degradation/validation"] == _word(line)  # the logged verdict is the report's
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"tiny.md", "tiny.json", "figures"} <= artifacts
    logged = client.download_artifacts(run.info.run_id, "tiny.md", str(tmp))
    assert open(logged).read() == out.read_text()


@pytest.mark.slow
def test_summary_numbers_equal_those_recomputed_from_mlflow(reported):
    tmp, uri, out = reported
    finals = {}
    for (model, _), loss in sorted(_finals(uri, TRAIN_LOSS).items()):
        finals.setdefault(model, []).append(loss)
    summary = out.read_text().split("## Summary")[1].split("## Shortcut effect")[0]
    rows = {ln.split("|")[1].strip(): ln for ln in summary.splitlines() if ln.startswith("| ")}
    import statistics

    for model, values in finals.items():
        expected = f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"
        assert expected in rows[model], (model, expected, rows[model])


@pytest.mark.slow
def test_regenerating_gives_identical_bytes(reported):
    tmp, uri, out = reported
    first = {p: p.read_bytes() for p in out.parent.rglob("*") if p.is_file()}
    assert cli.main(["report", "tiny", "--tracking-uri", uri, "--out", str(out)]) == 0
    second = {p: p.read_bytes() for p in out.parent.rglob("*") if p.is_file()}
    assert first == second


@pytest.mark.slow
def test_report_does_not_import_tensorflow(reported):
    tmp, uri, out = reported
    code = (
        "import sys; from resnet_bench.report import write_report; "
        f"write_report({uri!r}, 'tiny', {str(tmp / 'again.md')!r}); "
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'imported TF'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_no_runs_is_one_line_exit_2(tmp_path, capsys):
    uri = store_uri(tmp_path)  # a store that exists but holds no such experiment
    capsys.readouterr()  # MLflow's table-creation lines, if this process made the empty store
    assert cli.main(["report", "nothing_here", "--tracking-uri", uri]) == 2
    err = capsys.readouterr().err.strip()
    assert "nothing_here" in err and "db.sqlite" in err and "\n" not in err


@pytest.mark.slow
def test_single_seed_report_says_statistics_not_available(tiny_sweep, tmp_path):
    _, _, uri = tiny_sweep
    out = tmp_path / "r.md"
    assert cli.main(["report", "tiny", "--tracking-uri", uri, "--out", str(out), "--seeds", "0"]) == 0
    text = out.read_text()
    assert "Statistics are not available" in text and "4 finished runs used (1 seeds: 0)" in text


@pytest.mark.slow
def test_layer_response_table_equals_the_logged_layer_profiles(reported):
    """Each run logs its response std per 3x3 layer and ratio per residual block as two
    profile metrics (step = position in the net) and a table naming the layers, so a run's
    metric keys stay few; the report's table is the mean over seeds of each run's median."""
    import csv
    import statistics

    from mlflow.tracking import MlflowClient

    from resnet_bench import schema

    tmp, uri, out = reported
    client = MlflowClient(tracking_uri=uri)
    medians: dict[str, list[float]] = {}
    for run in all_runs(uri, "tiny"):
        rid = run.info.run_id
        assert len(run.data.metrics) <= 25, sorted(run.data.metrics)
        stds = {m.step: m.value for m in client.get_metric_history(rid, "response_std")}
        ratios = {m.step: m.value for m in client.get_metric_history(rid, "branch_ratio")}
        model = run.data.params["model"]
        depth = int(run.data.params["depth"])
        assert sorted(stds) == list(range(1, depth))  # every conv of a CIFAR net is 3x3 (the last layer is dense)
        assert sorted(ratios) == list(range(1, 1 + (0 if model.startswith("plain") else (depth - 2) // 2)))
        with open(client.download_artifacts(rid, schema.LAYERS_ARTIFACT, str(tmp))) as f:
            table = list(csv.DictReader(f))
        named = {int(r["index"]): r["layer"] for r in table if r["kind"] == "response_std"}
        assert named[1] == "stem_bn" and named[2] == "stage1_block1_bn1" and set(named) == set(stds)
        assert {int(r["index"]): float(r["value"]) for r in table if r["kind"] == "branch_ratio"} == ratios
        medians.setdefault(model, []).append(statistics.median(stds.values()))
    section = out.read_text().split("## Layer responses (He et al. Fig. 7)")[1].split("## Figures")[0]
    rows = {ln.split("|")[1].strip(): ln for ln in section.splitlines() if ln.startswith("| ")}
    for model, values in medians.items():
        assert f"| {statistics.mean(values):.3f} ± {statistics.stdev(values):.3f} |" in rows[model], model
    assert "- Residual responses are smaller at depth" in section
    assert "- Deeper residual nets modify the signal less: " in section


def test_layer_values_are_read_from_profiles_and_from_one_metric_per_layer(tmp_path):
    """Both ways a store holds layer values: profiles (what runs log) and a metric per layer."""
    from mlflow.entities import Metric

    from resnet_bench import schema
    from resnet_bench.report.frame import load_frames
    from resnet_bench.tracking import Store

    store = Store(store_uri(tmp_path))
    exp = store.experiment_id("layers")
    values = {schema.response_metric(1, "stem_bn"): 0.5, schema.response_metric(2, "stage1_block1_bn1"): 0.25,
              schema.branch_metric(1, "stage1_block1"): 0.75}  # fmt: skip
    profiled = store.create_run(exp, {"run_key": "a"})
    store.log_layers(profiled, values)
    per_layer = store.create_run(exp, {"run_key": "b"})
    store.client.log_batch(per_layer, metrics=[Metric(k, v, 0, 3) for k, v in values.items()])
    _, layers = load_frames(store_uri(tmp_path), "layers")
    for rid in (profiled, per_layer):
        got = layers[layers["run_id"] == rid]
        assert list(zip(got["kind"], got["index"], got["value"])) == [
            ("branch_ratio", 1, 0.75), ("response_std", 1, 0.5), ("response_std", 2, 0.25)]  # fmt: skip
    assert set(store.get_run(profiled).data.metrics) == {"response_std", "branch_ratio"}


def test_epoch_metrics_are_read_under_their_stored_keys_and_under_the_earlier_names(tmp_path):
    """Runs log ``loss/train``, ``grad_norm_stem`` ...; runs of earlier versions logged the
    names themselves (``train_loss``, ``grad_norm/stem``). The report's frame is the same."""
    from mlflow.entities import Metric

    from resnet_bench.report.frame import load_frames
    from resnet_bench.tracking import Store

    store = Store(store_uri(tmp_path))
    exp = store.experiment_id("keys")
    row = {"epoch": 1, "train_loss": 0.5, "val_accuracy": 0.75, "learning_rate": 0.125, "grad_norm/stem": 2.0}
    logged = store.create_run(exp, {"run_key": "a"})
    store.log_epoch(logged, row)
    assert set(store.get_run(logged).data.metrics) == {"loss/train", "top1/val", "learning_rate", "grad_norm_stem"}
    earlier = store.create_run(exp, {"run_key": "b"})
    store.client.log_batch(earlier, metrics=[Metric(k, v, 0, 1) for k, v in row.items() if k != "epoch"])
    frame, _ = load_frames(store_uri(tmp_path), "keys")
    for rid in (logged, earlier):
        got = frame[frame["run_id"] == rid].iloc[0]
        assert [got[k] for k in row] == [1, 0.5, 0.75, 0.125, 2.0], rid


@pytest.mark.slow
def test_against_a_written_report_says_claim_by_claim_whether_the_runs_agree(reported, capsys):
    tmp, uri, out = reported
    written = out.read_text()
    base = ["report", "tiny", "--tracking-uri", uri, "--out", str(tmp / "again.md")]
    capsys.readouterr()
    assert cli.main([*base, "--against", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    claims = [ln for ln in written.splitlines() if VERDICT.match(ln) or ln.startswith("- Degradation grows")]
    assert len(stats_of(out)) == len(claims)
    compared = [ln for ln in lines if ln.startswith("  ") and "same verdict" in ln]
    assert len(compared) == len(claims) > 6
    assert lines[-1].startswith(f"same verdicts on all {len(claims)} claims")

    # The same report whose records have one outcome changed: that claim is named and the exit
    # is 1 (the records decide, not the prose: the Markdown is left as it was).
    line = next(ln for ln in claims if ln.startswith("- Shortcut effect: "))
    word = _word(line)
    other = "inconclusive" if word != "inconclusive" else "reproduced"
    doctored = tmp / "doctored.md"
    doctored.write_text(written)
    records = json.loads(out.with_suffix(".json").read_text())
    for r in records["verdicts"]:
        if r["claim"] == "Shortcut effect":
            r["outcome"] = other
    doctored.with_suffix(".json").write_text(json.dumps(records))
    assert cli.main([*base, "--against", str(doctored)]) == 1
    out_lines = capsys.readouterr().out.splitlines()
    assert f"  Shortcut effect: VERDICT DIFFERS: {other} there, {word} here" in "\n".join(out_lines)
    assert out_lines[-1] == f"verdicts differ on 1 of {len(claims)} claims: Shortcut effect"


@pytest.mark.slow
def test_against_a_missing_report_is_one_line_exit_2(reported, capsys):
    tmp, uri, _ = reported
    args = ["report", "tiny", "--tracking-uri", uri, "--out", str(tmp / "x.md"), "--against", str(tmp / "nope.md")]
    assert cli.main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "nope.md" in err and "--against" in err and "\n" not in err


@pytest.mark.slow
def test_ui_prints_the_address_of_the_experiments_runs(reported, capsys):
    from resnet_bench.tracking import Store

    tmp, uri, _ = reported
    capsys.readouterr()
    assert cli.main(["ui", "tiny", "--tracking-uri", uri, "--port", "5123", "--print-only"]) == 0
    exp_id = Store(uri).experiment_id("tiny", create=False)
    assert (
        capsys.readouterr().out == f"tiny: http://127.0.0.1:5123/#/experiments/{exp_id}?workflowType=machine_learning\n"
    )
    assert cli.main(["ui", "no_such", "--tracking-uri", uri, "--print-only"]) == 2
    assert "no_such" in capsys.readouterr().err


def _declaring(tiny_sweep, folder, **report) -> str:
    """A copy of the tiny store whose runs carry ``report.*`` params (as runs of an experiment
    file with a ``[report]`` table log them)."""
    import shutil
    import sqlite3

    own, _, _ = tiny_sweep
    shutil.copy(own / "db.sqlite", folder / "db.sqlite")
    # The runs logged the tiny file's [report] fields, all empty; MLflow keeps a param's first
    # value, so the store is edited under it.
    with sqlite3.connect(folder / "db.sqlite") as db:
        for key, value in report.items():
            assert db.execute("UPDATE params SET value = ? WHERE key = ?", (value, f"report.{key}")).rowcount >= 8
    return f"sqlite:///{folder}/db.sqlite"


def test_a_declared_held_out_check_is_decided_beside_the_headline_from_its_own_runs(tiny_sweep, tmp_path):
    # The design "chosen" on seed 0, its held-out seed 1 (of the same experiment here: the
    # runs of one store that train the same way).
    uri = _declaring(tiny_sweep, tmp_path, design_seeds="0", held_out="tiny", held_out_seeds="1")
    out = tmp_path / "r.md"
    assert cli.main(["report", "tiny", "--tracking-uri", uri, "--out", str(out), "--seeds", "0"]) == 0
    lead = out.read_text().split("## The three claims")[1].split("## Summary")[0]
    assert "This design was chosen on seeds 0, so the verdicts above are in-sample." in lead
    assert "| claim | seeds 0 (in-sample) | seeds 1 of tiny (held out) |" in lead
    records = json.loads(out.with_suffix(".json").read_text())["verdicts"]
    held = {r["claim"]: r for r in records if r["figure"] == "held_out"}
    assert set(held) == {"Degradation (held-out seeds)", "Shortcut effect (held-out seeds)",
                         "Residual depth (held-out seeds)"}  # fmt: skip
    finals = _finals(uri, TRAIN_LOSS)
    assert held["Degradation (held-out seeds)"]["seeds"] == [1]
    assert held["Degradation (held-out seeds)"]["estimate"] == pytest.approx(
        finals["plain14", 1] - finals["plain8", 1], abs=1e-12
    )
    assert held["Degradation (held-out seeds)"]["outcome"] == "inconclusive"  # one seed: no statistics
    assert [r["seeds"] for r in records if r["claim"] == "Degradation"] == [[0]]


def test_a_held_out_check_whose_runs_are_not_in_the_store_says_so(tiny_sweep, tmp_path):
    uri = _declaring(tiny_sweep, tmp_path, design_seeds="0,1", held_out="elsewhere", held_out_seeds="4,5,6,7")
    out = tmp_path / "r.md"
    assert cli.main(["report", "tiny", "--tracking-uri", uri, "--out", str(out)]) == 0
    lead = out.read_text().split("## The three claims")[1].split("## Summary")[0]
    assert "This design was chosen on seeds 0, 1, so the verdicts above are in-sample." in lead
    assert ("Held-out check: not shown here, elsewhere's runs of seeds 4-7 are not in this store "
            "(`resnet-bench run experiments/elsewhere.toml --set 'grid.seeds=[4,5,6,7]' --set 'grid.depths=[8,14]'` "
            "trains them)") in lead  # fmt: skip
    assert not [r for r in json.loads(out.with_suffix(".json").read_text())["verdicts"] if r["figure"] == "held_out"]
