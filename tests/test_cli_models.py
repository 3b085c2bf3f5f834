"""`resnet-bench models`: listing, JSON shape, and one-line errors."""

import json

import pytest

from resnet_bench import cli

from .test_models import ARTICLE, CIFAR, TORCHVISION  # the published counts, written once


def test_models_json_lists_each_residual_model_then_its_plain_twin(capsys):
    args = ["models", "--image-size", "32", "--classes", "10", "--model", "resnet20", "--model", "resnet32", "--json"]
    assert cli.main(args) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == ["resnet20", "plain20", "resnet32", "plain32"]
    assert [r["shortcut"] for r in rows] == ["A", "none", "A", "none"]
    for r in rows:
        assert {"name", "depth", "shortcut", "flavour", "params_total", "params_trainable", "macs"} <= set(r)
    assert rows[0]["params_trainable"] == CIFAR[20] == rows[1]["params_trainable"]


def test_models_shortcut_option_applies(capsys):
    assert cli.main(["models", "--model", "resnet18", "--shortcut", "B", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["params_trainable"] == TORCHVISION[18] and rows[1]["shortcut"] == "none"


def test_models_article_flavour_table(capsys):
    # One pair (test_models builds every article net at its published size)
    assert cli.main(["models", "--flavour", "article", "--classes", "2", "--model", "article_resnet18"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[1:]]
    assert [(r[0], r[4]) for r in rows] == [("article_resnet18", f"{ARTICLE[18, 'B']:,}"),
                                            ("article_plain18", f"{ARTICLE[18, 'none']:,}")]  # fmt: skip


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--model", "resnet50", "--image-size", "8"], "too small"),
        (["--model", "resnet21"], "6n+2"),
        (["--model", "vgg16"], "vgg16"),
    ],
)
def test_models_bad_input_exits_2_with_one_line(capsys, args, needle):
    assert cli.main(["models", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and "\n" not in err
