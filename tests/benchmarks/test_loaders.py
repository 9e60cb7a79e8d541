"""Loaders: our QA JSONL, SportR's annotation JSON, DeepSport-style sets and the real Video-R1 and SPORTU files;
a bad record names file, line and field."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sportlens.agent.records import QAItem
from sportlens.benchmarks.commands import DATASET_FORMATS
from sportlens.benchmarks.loaders import FORMATS, DatasetError, load_dataset

FIXTURES = Path(__file__).parent / "fixtures"  # real records; README.md there names their sources
VIDEOR1 = FIXTURES / "videor1" / "Video-R1-sample.json"
SPORTU_MC = FIXTURES / "sportu" / "SportU_Video_mc.json"
SPORTU_OE = FIXTURES / "sportu" / "SportU_video_oe.json"

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


def test_sportr_closed_questions_without_options_are_its_open_ended_form(tmp_path):
    data = {"videos": [{"id": "bb_7", "video": "v.mp4", "sport": "basketball",
                        "Q9": {"answer": "blocking foul"}, "Q13": {"options": [], "answer": "2-3 zone"}}]}
    items = {item.id: item for item in load_dataset(write(tmp_path / "sportr.json", json.dumps(data))).items}
    assert items["bb_7-Q9"].answer_type == "open" and items["bb_7-Q9"].options is None
    assert items["bb_7-Q9"].answer == "blocking foul" and items["bb_7-Q9"].task == "foul_type"
    assert items["bb_7-Q13"].answer_type == "open" and items["bb_7-Q13"].answer == "2-3 zone"


def test_videor1_records_become_choice_and_open_items():
    dataset = load_dataset(VIDEOR1, "videor1")
    assert dataset.items == [
        QAItem(id="2", video="./LLaVA-Video-178K/liwei_youtube_videos/videos/youtube_video_2024/ytb_7nRmsEw7nsE.mp4",
               question="What appears on the screen in Russian during the missile's ascent?",
               options=["A) A YouTube subscription notification", "B) A military command", "C) A warning message",
                        "D) A weather update"],
               answer="A", answer_type="choice", sport="unknown", task="multiple choice"),
        QAItem(id="1", video="./Math/CLEVR-Math/images/CLEVR_train_036427.png",
               question="Subtract 0 cyan cubes. How many objects are left?", answer="5", answer_type="open",
               sport="unknown", task="numerical"),
    ]
    # "path" is relative to the annotation file's folder, as Video-R1's own scripts read it
    assert dataset.video_path(dataset.items[1]) == VIDEOR1.parent / "Math/CLEVR-Math/images/CLEVR_train_036427.png"


def test_sportu_multiple_choice_and_open_ended_files():
    mc = load_dataset(SPORTU_MC, "sportu").items
    assert mc[0] == QAItem(id="soccer_267-0", video="soccer_267.mp4",
                           question="What main color jersey is the offensive team wearing?",
                           options=["A) red & white", "B) blue & red", "C) black & red", "D) black & blue"],
                           answer="D", answer_type="choice", sport="soccer", task="medium", level=2)
    assert [item.id for item in mc] == ["soccer_267-0", "soccer_260_2-1", "Badminton_76-2", "american_football_49-3"]
    assert mc[1].video == "soccer_260_2.mp4" and mc[1].sport == "soccer"  # the clip id's suffix is part of its name
    assert mc[2].options == ["A) 4", "B) 6", "C) 5", "D) 2"]
    assert (mc[2].sport, mc[2].task, mc[2].level) == ("badminton", "easy", 1)
    assert mc[3].options == ["A) No", "B) Yes"] and mc[3].answer == "A" and mc[3].sport == "american football"
    oe = load_dataset(SPORTU_OE, "sportu").items
    assert oe[0] == QAItem(id="baseball_311-0", video="baseball_311.mp4",
                           question="Why did the rule violation occur in the video?", answer="pitcher in white balks",
                           answer_type="open", sport="baseball", task="hard", level=3)


def test_sportu_clips_are_found_in_their_sport_folder(tmp_path):
    shutil.copy(SPORTU_MC, tmp_path)
    (tmp_path / "videos" / "Soccer").mkdir(parents=True)
    (tmp_path / "videos" / "Soccer" / "soccer_267.mp4").write_bytes(b"")
    dataset = load_dataset(tmp_path / SPORTU_MC.name)
    assert dataset.items[0].video == "videos/Soccer/soccer_267.mp4"
    assert dataset.video_path(dataset.items[0]).is_file()
    assert dataset.items[2].video == "Badminton_76.mp4"  # not there: beside the file, where the runner misses it


def test_sportu_answers_may_be_an_options_number_or_text(tmp_path):
    record = {"id": "Badminton_76", "question": "How many players?", "options": [4, 6, 5, 2], "answer": 2,
              "difficulty level": "Easy"}
    item = load_dataset(write(tmp_path / "u.json", json.dumps([record])), "sportu").items[0]
    assert item.options == ["A) 4", "B) 6", "C) 5", "D) 2"] and item.answer == "D" and item.level == 1


@pytest.mark.parametrize("path, format", [(VIDEOR1, "videor1"), (SPORTU_MC, "sportu"), (SPORTU_OE, "sportu")])
def test_auto_tells_each_real_layout_apart(tmp_path, path, format):
    assert load_dataset(path).format == format
    records = json.loads(path.read_text())
    as_lines = load_dataset(write(tmp_path / "records.jsonl", "\n".join(json.dumps(r) for r in records) + "\n"))
    assert as_lines.format == format and as_lines.items == load_dataset(path, format).items


@pytest.mark.parametrize(
    "path, mutate, field",
    [
        (VIDEOR1, lambda r: r.update(solution="A"), "'solution'"),
        (VIDEOR1, lambda r: r.update(problem_type="essay"), "'problem_type'"),
        (VIDEOR1, lambda r: r.pop("path"), "'path'"),
        (VIDEOR1, lambda r: r.update(problem_type="multiple choice"), "'options'"),  # its options are []
        (SPORTU_MC, lambda r: r.update(answer="F"), "'answer'"),
        (SPORTU_MC, lambda r: r.update({"difficulty level": "expert"}), "'difficulty level'"),
        (SPORTU_OE, lambda r: r.pop("answer"), "'answer'"),
    ],
)
def test_a_broken_real_record_names_file_line_record_and_field(tmp_path, path, mutate, field):
    records = json.loads(path.read_text())
    mutate(records[1])
    text = json.dumps(records, indent=2)
    line = [number for number, text_line in enumerate(text.splitlines(), 1) if text_line == "  {"][1]
    with pytest.raises(DatasetError) as raised:
        load_dataset(write(tmp_path / path.name, text))
    message = str(raised.value)
    assert message.startswith(f"{tmp_path / path.name}:{line}: record 1: field {field}") and "\n" not in message


def test_a_forced_format_that_does_not_fit_names_the_field(tmp_path):
    with pytest.raises(DatasetError, match=r"Video-R1-sample\.json:2: record 0: field 'id'"):
        load_dataset(VIDEOR1, "sportu")
    with pytest.raises(DatasetError, match=r"x\.json:1: a videor1 file is a JSON list"):
        load_dataset(write(tmp_path / "x.json", '{"results": []}'), "videor1")


def test_the_commands_offer_every_format():
    assert DATASET_FORMATS == FORMATS


def test_bench_refuses_a_broken_annotation_file_in_one_line(tmp_path):
    records = json.loads(VIDEOR1.read_text())
    records[0]["solution"] = "A"
    broken = write(tmp_path / "eval.json", json.dumps(records, indent=2))
    ran = subprocess.run([sys.executable, "-m", "sportlens.cli", "bench", str(broken), "--format", "videor1",
                          "--oracle", "--out", str(tmp_path / "o")], capture_output=True, text=True, timeout=60)
    assert ran.returncode == 2
    assert ran.stderr == f"sportlens: error: {broken}:2: record 0: field 'solution': " \
                         "no answer inside <answer>…</answer> in 'A'\n"
    assert not (tmp_path / "o").exists()
