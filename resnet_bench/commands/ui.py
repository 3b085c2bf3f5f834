"""``resnet-bench ui``: print where an experiment's runs are, then serve ``mlflow ui`` on the store."""

from __future__ import annotations

import os
import sys

from .. import inputs
from ..tracking.uris import tracking_uri

NAME = "ui"
LOADS_TENSORFLOW = False


def add_parser(sub) -> None:
    ui = sub.add_parser(
        NAME, help="serve mlflow ui on the tracking store and print the address of an experiment's runs"
    )
    ui.add_argument("experiment", nargs="?", default="shortcut_ablation", help="experiment name or file")
    ui.add_argument("--tracking-uri")
    ui.add_argument("--port", type=inputs.positive_int, default=5000)
    ui.add_argument("--print-only", action="store_true", help="print the address, do not start the server")
    ui.add_argument(
        "--workers",
        type=inputs.positive_int,
        default=1,
        help="server processes (mlflow ui's own default is 4; one serves a person browsing and starts sooner)",
    )
    ui.set_defaults(command_main=main)


def runs_address(experiment_id: str, base: str = "http://127.0.0.1:5000") -> str:
    """The MLflow UI address of an experiment's runs in the model-training view.

    MLflow 3 can open an experiment on its GenAI overview instead (a choice it remembers per
    browser); ``workflowType=machine_learning`` always lands on the runs table.
    """
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}?workflowType=machine_learning"


def main(args) -> int:
    from ..errors import UserError
    from ..tracking.store import Store

    experiment = os.path.splitext(os.path.basename(args.experiment))[0]
    uri = tracking_uri(args.tracking_uri, must_exist=True)
    exp_id = Store(uri).experiment_id(experiment, create=False)
    if exp_id is None:
        raise UserError(f"no experiment {experiment!r} in the tracking store {uri}; run it first (make bench)")
    print(f"{experiment}: {runs_address(exp_id, f'http://127.0.0.1:{args.port}')}", flush=True)
    if args.print_only:
        return 0
    # MLflow 3's GenAI job runner starts eight worker processes that browsing runs never uses.
    env = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **os.environ}
    # One server process unless asked: on 2 cores mlflow ui's default of 4 answered after 9 s
    # and 16 s of CPU, one after 6 s and 7 s (docs/tracking.md).
    argv = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--port", str(args.port),
            "--workers", str(args.workers)]  # fmt: skip
    os.execve(sys.executable, argv, env)  # the server replaces this process
