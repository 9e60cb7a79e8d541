"""`sportlens distill --format`: the annotation layouts of `sportlens bench`, refused in one line if they do not fit."""
import json
from pathlib import Path

from sportlens.cli import main

VIDEOR1 = Path(__file__).parents[1] / "benchmarks" / "fixtures" / "videor1" / "Video-R1-sample.json"


def test_the_format_reaches_the_loader_and_the_dataset_records_it(sim_qa, tmp_path):
    out = tmp_path / "d"
    assert main(["distill", str(sim_qa), "--out", str(out), "--format", "qa", "--types", "choice", "--limit", "1"]) == 0
    assert json.loads((out / "dataset.json").read_text())["source_format"] == "qa"


def test_a_format_that_does_not_fit_is_one_line_naming_the_field(tmp_path, capsys):
    assert main(["distill", str(VIDEOR1), "--out", str(tmp_path / "d"), "--format", "sportu"]) == 2
    error = capsys.readouterr().err
    assert f"{VIDEOR1}:2: record 0: field 'id'" in error and error.count("\n") == 1


def test_files_without_splits_say_how_to_take_all_their_questions(tmp_path, capsys):
    assert main(["distill", str(VIDEOR1), "--out", str(tmp_path / "d")]) == 2
    assert "carry no split: give --split ''" in capsys.readouterr().err
