import re

from stemunmix.cli import main
from stemunmix.nn import load_model


def test_demo_runs_and_reports_the_domains(capsys):
    assert main(["demo", "--size", "384"]) == 0
    out = capsys.readouterr().out
    ari = float(re.search(r"adjusted Rand index ([0-9.]+)", out).group(1))
    assert ari > 0.5
    assert "columns: <Columns" in out


def test_train_command_writes_a_loadable_model(tmp_path, capsys):
    assert (
        main(["train", "--steps", "2", "--batch-size", "2", "--out", str(tmp_path)])
        == 0
    )
    model = load_model(tmp_path / "model.pt")
    assert model.card["recipe"]["steps"] == 2


def test_bad_arguments_give_one_sentence(capsys):
    assert main(["train", "--steps", "0", "--out", "unused"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("stemunmix train: steps must be a positive integer")
