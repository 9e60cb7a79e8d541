"""Loaders: our QA JSONL, SportR's annotation JSON and DeepSport-style sets; a bad record names file and line."""
import json

import pytest

from sportlens.benchmarks.loaders import DatasetError, load_dataset

SPORTR = {
    "images": [
        {
            "id": "bb_0001", "image": "images/bb_0001.jpg", "sport": "basketball", "split": "test",
            "Q1": {"answer": "Yes"},
            "Q2": {"options": ["blocking foul", "charging", "travelling"], "answer": "B"},
            "Q3": {"options": {"A": "two free throws", "B": "possession to the defending team"},
                   "answer": "possession to the defending team"},
            "Q4": {"answer": "The attacker runs into a set defender.", "explanation": "charging"},
            "Q5": {"box": [10, 20, 110, 220]},
            "Q6": {"options": ["A) pick and roll", "B) isolation"], "answer": "A"},
            "Q7": {"options": ["man-to-man", "2-3 zone"], "answer": "2-3 zone", "question": "Which defence?"},
        }
    ],
    "videos": [
        {"id": "sc_0042", "video": "videos/sc_0042.mp4", "sport": "soccer", "event_window": [120, 160],
         "Q8": {"answer": "no"}, "Q12": {"options": ["high press", "low block"], "answer": "A"}},
    ],
}


def write(path, text):
    path.write_text(text)
    return path


def test_our_jsonl_round_trips_and_videos_resolve_beside_the_file(sim_dataset):
    dataset = load_dataset(sim_dataset)
    assert dataset.format == "qa" and len(dataset.items) == len(sim_dataset.read_text().splitlines())
    assert dataset.video_path(dataset.items[0]).is_file()


def test_a_malformed_jsonl_line_is_named(tmp_path, sim_dataset):
    lines = sim_dataset.read_text().splitlines()[:3]
    broken = json.loads(lines[1])
    broken["answer_type"] = "essay"
    path = write(tmp_path / "qa.jsonl", "\n".join([lines[0], json.dumps(broken), lines[2]]) + "\n")
    with pytest.raises(DatasetError, match=r"qa\.jsonl:2: .*answer_type"):
        load_dataset(path)
    path = write(tmp_path / "cut.jsonl", lines[0] + "\n" + lines[1][:40] + "\n")
    with pytest.raises(DatasetError, match=r"cut\.jsonl:2: not valid JSON"):
        load_dataset(path)


def test_sportr_image_and_video_questions(tmp_path):
    dataset = load_dataset(write(tmp_path / "sportr.json", json.dumps(SPORTR, indent=2)))
    assert dataset.format == "sportr"
    by_id = {item.id: item for item in dataset.items}
    assert sorted(by_id) == sorted([f"bb_0001-Q{n}" for n in range(1, 8)] + ["sc_0042-Q8", "sc_0042-Q12"])
    assert by_id["bb_0001-Q1"].answer == "yes" and by_id["bb_0001-Q1"].answer_type == "yes_no"
    assert by_id["bb_0001-Q2"].options == ["A) blocking foul", "B) charging", "C) travelling"]
    assert by_id["bb_0001-Q3"].answer == "B"  # given as the option's text
    assert by_id["bb_0001-Q4"].answer_type == "open" and by_id["bb_0001-Q4"].level == 4
    assert by_id["bb_0001-Q5"].box == (10, 20, 110, 220) and by_id["bb_0001-Q5"].task == "evidence_box"
    assert by_id["bb_0001-Q6"].options == ["A) pick and roll", "B) isolation"]
    assert by_id["bb_0001-Q7"].answer == "B" and by_id["bb_0001-Q7"].question == "Which defence?"
    assert by_id["sc_0042-Q8"].task == "infraction" and "clip" in by_id["sc_0042-Q8"].question
    assert by_id["sc_0042-Q12"].task == "offensive_tactic" and by_id["sc_0042-Q12"].event_window == (120, 160)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d["videos"][0].update(Q9={"options": ["a", "b"], "answer": "Z"}), "neither an option letter"),
        (lambda d: d["videos"][0].update(Q5={"box": [1, 2, 3, 4]}), "Q5 are not video questions"),
        (lambda d: d["videos"][0].update(Q8={"answer": "maybe"}), "yes or no"),
        (lambda d: d["videos"][0].pop("sport"), "'sport'"),
    ],
)
def test_a_malformed_sportr_record_names_the_line_it_starts_on(tmp_path, mutate, message):
    data = json.loads(json.dumps(SPORTR))
    mutate(data)
    text = json.dumps(data, indent=2)
    line = text[: text.index('"id": "sc_0042"')].count("\n")  # the record's "{" is on the line before its "id"
    with pytest.raises(DatasetError, match=rf"sportr\.json:{line}: .*{message}"):
        load_dataset(write(tmp_path / "sportr.json", text))


def test_deepsport_lists_and_jsonl(tmp_path):
    records = [
        {"question": "Which team presses?", "options": {"A": "home", "B": "away"}, "answer": "A",
         "dimension": "assessment & coaching", "video": "v/1.mp4", "sport": "soccer", "frame_range": [10, 90]},
        {"question": "Describe the goal.", "answer": "A header from a corner.", "dimension": "live commentary & reporting",
         "video": "v/2.mp4", "id": "q2"},
    ]
    as_list = load_dataset(write(tmp_path / "ds.json", json.dumps(records, indent=1)))
    as_lines = load_dataset(write(tmp_path / "ds.jsonl", "\n".join(json.dumps(r) for r in records)))
    for dataset in (as_list, as_lines):
        assert dataset.format == "deepsport"
        first, second = dataset.items
        assert first.answer_type == "choice" and first.options == ["A) home", "B) away"] and first.event_window == (10, 90)
        assert first.task == "assessment & coaching" and first.id == "ds-0"
        assert second.answer_type == "open" and second.sport == "unknown" and second.id == "q2"


def test_a_malformed_deepsport_record_names_its_line(tmp_path):
    records = [{"question": "q", "answer": "a", "dimension": "d", "video": "v.mp4"}, {"question": "q", "answer": "a", "video": "v.mp4"}]
    text = "[\n" + ",\n".join(json.dumps(r) for r in records) + "\n]\n"
    with pytest.raises(DatasetError, match=r"ds\.json:3: .*'dimension'"):
        load_dataset(write(tmp_path / "ds.json", text))


def test_not_a_dataset(tmp_path):
    with pytest.raises(DatasetError, match=r"x\.json:1"):
        load_dataset(write(tmp_path / "x.json", '{"rows": []}'))
    with pytest.raises(DatasetError, match=r"cannot read"):
        load_dataset(tmp_path / "missing.jsonl")
