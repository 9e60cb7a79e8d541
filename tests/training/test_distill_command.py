"""`sportlens distill`: the annotation layouts of `sportlens bench` (refused in one line if they do not fit) and the
default split."""
import json
from pathlib import Path

import pytest

from sportlens.benchmarks.loaders import load_dataset
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


def distilled_ids(out):
    return [json.loads(line)["id"] for line in (out / "conversations.jsonl").read_text().splitlines()] + [
        json.loads(line)["id"] for line in (out / "rejected.jsonl").read_text().splitlines()]


def test_by_default_a_file_with_splits_gives_its_train_split(sim_qa, tmp_path):
    boxes = [item for item in load_dataset(sim_qa).items if item.answer_type == "box"]
    assert {item.split for item in boxes} == {"train", "test"}
    assert main(["distill", str(sim_qa), "--out", str(tmp_path / "d"), "--types", "box"]) == 0
    assert sorted(distilled_ids(tmp_path / "d")) == sorted(item.id for item in boxes if item.split == "train")


def test_by_default_a_file_without_splits_gives_every_question(sim_qa, tmp_path):
    """As Video-R1 and SPORTU files have no split."""
    boxes = [item for item in load_dataset(sim_qa).items if item.answer_type == "box"]
    unsplit = tmp_path / "unsplit.jsonl"
    unsplit.write_text("".join(item.model_copy(update={"split": None, "video": str(sim_qa.parent / item.video)})
                               .model_dump_json(exclude_none=True) + "\n" for item in boxes))
    assert main(["distill", str(unsplit), "--out", str(tmp_path / "d")]) == 0
    assert sorted(distilled_ids(tmp_path / "d")) == sorted(item.id for item in boxes)


def test_asking_an_unsplit_file_for_a_split_says_how_to_take_all_its_questions(tmp_path, capsys):
    assert main(["distill", str(VIDEOR1), "--out", str(tmp_path / "d"), "--split", "train"]) == 2
    assert "carry no split: leave --split out or give --split ''" in capsys.readouterr().err


def test_distill_help_says_the_default_split(capsys):
    with pytest.raises(SystemExit):
        main(["distill", "--help"])
    assert '"train" when the file has splits, else every question' in " ".join(capsys.readouterr().out.split())
