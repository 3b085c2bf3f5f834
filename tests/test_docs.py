"""Every command the README and docs/ show is one the tools accept.

Commands of resnet-bench are parsed by its own parser (every subcommand and flag must exist
and every value must parse); the ones that can run in a moment without user data run for real
(``--dry-run``, ``--help``). make targets are checked with ``make -n``, mlflow's and ray's
commands against their ``--help``, and pip's extras against pyproject.toml."""

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from resnet_bench import cli

from .helpers import store_uri

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BIN = Path(sys.executable).parent


def _commands(page: Path) -> list[list[str]]:
    """The commands in a page's ```bash blocks, continuation lines joined, comments dropped."""
    out = []
    for block in re.findall(r"```bash\n(.*?)```", page.read_text(), re.S):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words:
                out.append(words)
    return out


COMMANDS = [(page.name, words) for page in PAGES for words in _commands(page)]
TOOLS = {"resnet-bench", "make", "mlflow", "ray", "pip"}


def test_the_pages_show_commands_and_every_one_is_of_a_known_tool():
    assert {page for page, _ in COMMANDS} >= {"README.md", "tracking.md", "scaling.md", "data.md"}
    unknown = [" ".join(w) for _, w in COMMANDS if Path(w[0]).name not in TOOLS]
    assert not unknown


def _ids(kind):
    return [f"{page}: {' '.join(w)[:70]}" for page, w in COMMANDS if Path(w[0]).name == kind]


@pytest.mark.parametrize(
    "words", [w for _, w in COMMANDS if Path(w[0]).name == "resnet-bench"], ids=_ids("resnet-bench")
)
def test_resnet_bench_commands_parse(words, tmp_path, capsys):
    args = cli.build_parser().parse_args(words[1:])  # SystemExit(2) on an unknown flag or a bad value
    assert args.command
    if args.command == "run" and (ROOT / words[2]).is_file() and "--data" not in words:
        # A shipped experiment on generated data: what it would run, against an empty store.
        assert cli.main([*words[1:], "--dry-run", "--tracking-uri", store_uri(tmp_path)]) == 0
        assert "pending" in capsys.readouterr().out


@pytest.mark.parametrize("words", [w for _, w in COMMANDS if w[0] == "make"], ids=_ids("make"))
def test_make_targets_exist(words):
    # ARGS and EXPERIMENT pass through; -n prints what would run without running it.
    done = subprocess.run(["make", "-n", *words[1:]], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("words", [w for _, w in COMMANDS if Path(w[0]).name in ("mlflow", "ray")],
                         ids=_ids("mlflow") + _ids("ray"))  # fmt: skip
def test_mlflow_and_ray_commands_name_real_options(words):
    sub = [w for w in words[1:3] if not w.startswith("-")][:1]
    done = subprocess.run([str(BIN / Path(words[0]).name), *sub, "--help"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    for flag in (w.split("=")[0] for w in words if w.startswith("--")):
        assert flag in done.stdout, flag


def test_pip_commands_name_extras_that_exist():
    pyproject = (ROOT / "pyproject.toml").read_text()
    for _, words in COMMANDS:
        for w in words:
            m = re.fullmatch(r"resnet_bench\[(\w+)\]", w)
            if words[0] == "pip" and m:
                assert re.search(rf"^{m[1]} = \[", pyproject, re.M), w


def test_the_config_reference_is_what_the_code_generates():
    """docs/config.md's tables are ``resnet-bench config --markdown``'s output: a field added,
    removed, or given another default, rule or help fails here until the page is rewritten
    (``resnet-bench config --markdown --into docs/config.md``)."""
    from resnet_bench import config, reference

    page = (ROOT / "docs" / "config.md").read_text()
    assert reference.generated_part(page) == reference.markdown()
    for section, cls in config.SECTIONS.items():  # every field is on the page, under its table
        table = page.split(f"### `[{section}]`")[1].split("###")[0]
        for f in cls.__dataclass_fields__:
            assert f"| `{f}` |" in table, f"{section}.{f}"


def test_config_prints_an_experiment_resolved_and_rewrites_a_pages_reference(tmp_path, capsys):
    import tomllib

    from resnet_bench import config

    assert cli.main(["config", str(ROOT / "experiments" / "shortcut_ablation.toml"), "--set", "train.epochs=3"]) == 0
    resolved = tomllib.loads(capsys.readouterr().out)
    assert resolved["train"]["epochs"] == 3 and resolved["train"]["steps_per_execution"] == 16
    assert resolved["data"]["x_key"] == "train_set_x"  # a default the file leaves out
    again = config.from_dict(resolved)
    assert again.run_key(again.variants()[0], 0) == config.load(
        ROOT / "experiments" / "shortcut_ablation.toml", ["train.epochs=3"]
    ).run_key(again.variants()[0], 0)  # the printed file is the same experiment
    page = tmp_path / "page.md"
    page.write_text("# mine\n\nbefore\n\n<!-- generated by `resnet-bench config --markdown`; edit the fields' help "
                    "in the code -->\nold\n<!-- end of generated reference -->\n\nafter\n")  # fmt: skip
    assert cli.main(["config", "--markdown", "--into", str(page)]) == 0
    text = page.read_text()
    assert text.startswith("# mine\n\nbefore\n\n") and text.endswith("\nafter\n") and "| `bn_momentum` |" in text
    assert cli.main(["config", "--markdown", "--into", str(tmp_path / "none.md")]) == 2
    assert "none.md" in capsys.readouterr().err


def _grid_size(name: str) -> tuple[int, int]:
    from resnet_bench import config

    cfg = config.load(ROOT / "experiments" / name, data_path=str(ROOT))  # a path, for the files that need one
    return len(cfg.variants()), len(cfg.grid.seeds)


def test_the_readmes_run_counts_are_the_experiment_files():
    """The experiments table's "N nets x M seeds" and make bench's run count, read from the files."""
    readme = (ROOT / "README.md").read_text()
    rows = re.findall(r"^\| `(\w+\.toml)`[^|]*\| (\d+) nets x (\d+) seeds? \|", readme, re.M)
    assert {name for name, _, _ in rows} == {p.name for p in (ROOT / "experiments").glob("*.toml")}
    for name, nets, seeds in rows:
        assert (int(nets), int(seeds)) == _grid_size(name), name
    nets, seeds = _grid_size("shortcut_ablation.toml")
    assert f"trains the default experiment ({nets * seeds} runs)" in readme
    nets, seeds = _grid_size("fig6.toml")
    assert f"{seeds} paired seeds (0-{seeds - 1}), {nets * seeds} runs" in (ROOT / "docs" / "results.md").read_text()


HISTORY = {
    "a commit hash": re.compile(r"\b(?=[0-9a-f]*[a-f])(?=[0-9a-f]*[0-9])[0-9a-f]{7,40}\b"),
    "a date": re.compile(r"\b20\d\d-[01]\d-[0-3]\d\b"),
    "an issue number": re.compile(r"(?i)(?:#\d+\b|\bissue \d+)"),
    "a day's note": re.compile(r"(?i)\b(?:slow|fast|half-speed) day\b|\bthis session\b|\byesterday\b"),
}


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_the_pages_describe_the_project_as_it_is_without_history(page):
    """History lives in commit messages: no hashes, dates, issue numbers or day notes here."""
    for what, sample in zip(HISTORY, ("at a8963ad", "on 2026-12-01", "(issue 19)", "the slow day")):
        assert HISTORY[what].search(sample), what  # each pattern finds what it is for
    assert not any(p.search("resnet56 at 16 px, 1e-3, 0.001, epoch 20") for p in HISTORY.values())
    text = page.read_text()
    found = [f"{what}: {m.group(0)!r}" for what, pattern in HISTORY.items() for m in pattern.finditer(text)]
    assert not found, found


def _claim_cells(text: str) -> list[tuple[str, float, float, float, str]]:
    """Every ``outcome, +1.36 [1.19, 1.54], p = 0.0001`` in ``text``: (outcome, estimate, low,
    high, p as written)."""
    num = r"([+−-]?\d+(?:\.\d+)?)"
    pattern = rf"(reproduced|not reproduced|inconclusive), {num} \[{num}, {num}\], p = (\d[\d.]*(?:e[+-]?\d+)?)"
    minus = lambda s: float(s.replace("−", "-"))  # noqa: E731
    return [(o, minus(e), minus(lo), minus(hi), p) for o, e, lo, hi, p in re.findall(pattern, text)]


def _agrees(cell, record) -> bool:
    """A rounded figure agrees with its record: each number to the digits written."""
    outcome, est, low, high, p = cell
    digits = lambda x: len(f"{x}".split(".")[1]) if "." in f"{x}" else 0  # noqa: E731
    same = lambda written, exact: round(exact, digits(written)) == written  # noqa: E731
    sig = len(p.split("e")[0].replace("0.", "").lstrip("0").replace(".", ""))
    return (outcome == record["outcome"] and same(est, record["estimate"]) and same(low, record["interval"][0])
            and same(high, record["interval"][1]) and float(f"{record['p']:.{sig}g}") == float(p))  # fmt: skip


def test_the_readmes_findings_are_the_committed_reports_verdict_records():
    """The "What it found" table and the held-out line, figure by figure, against the records
    beside the reports they cite (reports/NAME.json), so a regenerated report that changes a
    number fails here until the README says the same."""
    import json

    readme = (ROOT / "README.md").read_text()
    found = readme.split("## What it found")[1].split("\n## ")[0]
    records = {
        name: {r["claim"]: r for r in json.loads((ROOT / "reports" / f"{name}.json").read_text())["verdicts"]}
        for name in ("shortcut_ablation", "fig6")
    }
    rows = {re.match(r"\| \*\*([^*]+)\*\*", ln).group(1): ln for ln in found.splitlines() if ln.startswith("| **")}
    assert set(rows) == {"Degradation", "Shortcut effect", "Residual depth"}
    for claim, row in rows.items():
        default, full = row.split(" | ")[1:3]
        (cell,) = _claim_cells(default + " ")
        assert _agrees(cell, records["shortcut_ablation"][claim]), (claim, cell)
        assert _agrees(_claim_cells(full + " ")[0], records["fig6"][claim]), (claim, full)
    held = [c for c in _claim_cells(found) if c not in {x for r in rows.values() for x in _claim_cells(r + " ")}]
    for cell, claim in zip(held, ("Degradation", "Shortcut effect", "Residual depth")):
        assert _agrees(cell, records["shortcut_ablation"][f"{claim} (held-out seeds)"]), (claim, cell)
    assert len(held) == 3


RESULT_SECTIONS = [("## The default", "shortcut_ablation"), ("## Fig. 6 in full", "fig6"),
                   ("## The first three epochs", "early_training")]  # fmt: skip


@pytest.mark.parametrize("section,report", RESULT_SECTIONS, ids=[r for _, r in RESULT_SECTIONS])
def test_every_verdict_on_the_results_page_is_one_of_its_reports_records(section, report):
    """docs/results.md's tables, row by row: every "outcome, estimate [interval], p" in a claim's
    row (its name in italics) agrees, to the digits written, with a record of that claim (its
    first three words) in the report the section cites; the Fig. 6 rows are checked cell by
    cell (training loss, then validation accuracy)."""
    import json

    text = (ROOT / "docs" / "results.md").read_text().split(section)[1].split("\n## ")[0]
    records = json.loads((ROOT / "reports" / f"{report}.json").read_text())["verdicts"]
    by_claim = {r["claim"]: r for r in records}
    checked = 0
    for line in text.splitlines():
        if not (name := re.match(r"\| \*([^*]+)\*", line)):
            continue
        head = " ".join(name.group(1).split()[:3])
        candidates = [r for r in records if r["claim"].startswith(head)]
        for cell in _claim_cells(line + " "):
            assert any(_agrees(cell, r) for r in candidates), (name.group(1), cell)
            checked += 1
    for claim in ("Degradation", "Shortcut effect", "Residual depth"):
        (row,) = [ln for ln in text.splitlines() if ln.startswith(f"| *{claim}*:")]
        training, validation = row.split(" | ")[1:3]
        assert _agrees(_claim_cells(training + " ")[0], by_claim[claim]), (claim, training)
        assert _agrees(_claim_cells(validation + " ")[0], by_claim[f"{claim} (validation)"]), (claim, validation)
    assert checked >= 6
