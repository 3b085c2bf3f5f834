"""``resnet-bench report``: reports/<experiment>.md, its figures and verdicts from the tracked runs."""

from __future__ import annotations

import os
from pathlib import Path

from .. import inputs
from ..errors import UserError
from ..tracking.uris import tracking_uri

NAME = "report"
LOADS_TENSORFLOW = False  # never: a report reads the store only


def add_parser(sub) -> None:
    rep = sub.add_parser(NAME, help="write reports/<experiment>.md from the tracked runs")
    rep.add_argument("experiment", help="experiment name or file")
    rep.add_argument("--tracking-uri")
    rep.add_argument("--out", help="Markdown file (default reports/<experiment>.md)")
    rep.add_argument("--seeds", type=inputs.seed_list, help="only these seeds")
    rep.add_argument("--config-hash", help="runs of this configuration (default: the newest run's)")
    rep.add_argument("--csv", help="also write the tidy per-epoch frame as CSV")
    rep.add_argument("--parquet", help="also write the tidy per-epoch frame as Parquet")
    rep.add_argument(
        "--against",
        metavar="REPORT.md",
        help="say, claim by claim, whether these runs agree with a written report, from the verdict records "
        "beside it (REPORT.json): same verdict, its estimate inside the fresh interval; exit 1 when a verdict differs",
    )
    rep.add_argument(
        "--against-committed",
        action="store_true",
        help="before writing, keep the committed version of the report (git) and compare against it, as --against",
    )
    rep.set_defaults(command_main=main)


def main(args) -> int:
    from ..report import log_report_run, records_path, write_report

    experiment = args.experiment
    if experiment.endswith(".toml"):
        experiment = Path(experiment).stem
    uri = tracking_uri(args.tracking_uri, must_exist=True)
    out = inputs.output_path(args.out or f"reports/{experiment}.md", "--out")
    for flag in ("csv", "parquet"):
        if getattr(args, flag):
            inputs.output_path(getattr(args, flag), f"--{flag}")
    if args.parquet:
        inputs.require("pyarrow", "--parquet", "parquet")
    written, source, missing = None, args.against, ""  # read before --out overwrites them
    if args.against:
        inputs.read_text(args.against, "--against")  # the report named must be there
        records = str(records_path(Path(args.against)))
        written = inputs.read_text(records, "--against's verdict records")
    elif args.against_committed:
        from ..provenance import committed_text

        records = str(records_path(out))
        written, missing = committed_text(Path(records))
        source, records = f"the committed {out}", f"the committed {records}"
    command = f"resnet-bench report {experiment}"
    if args.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI"):
        command += " --tracking-uri URI"
    if args.out:
        command += f" --out {args.out}"
    if args.seeds:
        command += f" --seeds {','.join(map(str, args.seeds))}"
    ctx = write_report(uri, experiment, out, args.config_hash, args.seeds, command)
    if args.csv:
        ctx.all_frame.to_csv(args.csv, index=False)
    if args.parquet:
        ctx.all_frame.to_parquet(args.parquet, index=False)
    run_id = log_report_run(uri, experiment, out, ctx)
    print(f"wrote {out} ({len(ctx.runs)} runs, {len(ctx.figures)} figures; logged as run {run_id})")
    for v in ctx.verdicts:
        print(v.sentence)
    if ctx.why is None:
        print(
            "no run of this report has been analysed: resnet-bench analyse EXPERIMENT_FILE measures their stored nets"
        )
    print(f"browse the runs: make ui (or resnet-bench ui {experiment}, which prints their address)")
    if written is None:
        if missing:
            print(f"nothing to compare against: {missing}")
        return 0
    return _compare(ctx, written, records, source)


def _compare(ctx, written: str, records: str, source: str) -> int:
    """Print the fresh verdicts against the written records, claim by claim; 1 when a verdict
    differs. The held-out claims a store without their runs leaves undecided say why."""
    from ..report import against

    try:
        agreements = against.compare(ctx.verdicts, against.read_records(written, records))
    except ValueError as e:
        raise UserError(str(e)) from None
    for line in against.lines(agreements, source, ctx.held_out.undecided if ctx.held_out else {}):
        print(line)
    return 0 if all(a.same_verdict for a in agreements if a.written and a.fresh) else 1
