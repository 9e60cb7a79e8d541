"""Distillation: the oracle's trajectories through the agent loop, judged, written as conversations with frames."""
import json
from pathlib import Path

import pytest

from sportlens.agent.records import QAItem
from sportlens.training.distill import DistillDataError, judge, load_conversations

from builders import example_trajectory


def test_the_oracle_conversations_are_kept_with_frames_and_provenance(distilled: Path):
    summary = json.loads((distilled / "dataset.json").read_text())
    assert summary["kept"] == 6 and summary["rejected"] == 0
    conversations = load_conversations(distilled)
    assert len(conversations) == 6
    record = json.loads((distilled / "conversations.jsonl").read_text().splitlines()[0])
    assert record["provenance"]["teacher"] == "sportsim-oracle"
    assert record["provenance"]["judge"] == "distill-judge-v2" and len(record["provenance"]["video_sha256"]) == 64
    messages, images = conversations[0]
    assert [m["role"] for m in messages][:2] == ["system", "user"] and messages[-1]["role"] == "assistant"
    assert all(path.suffix == ".jpg" and path.is_file() for path in images)
    assert len(images) == sum(p["type"] == "image" for m in messages for p in m["content"])
    # at least one conversation looked closer: assistant tool call, then a tool response with frames
    assert any(len(m) == 5 and "<tool_call>" in m[2]["content"][0]["text"] and "<tool_response>" in m[3]["content"][0]["text"]
               for m, _ in conversations)


def item(answer="B"):
    return QAItem(id="q", video="v.mp4", question="Which?", options=["A) a", "B) b", "C) c"], answer=answer,
                  answer_type="choice", sport="soccer", task="foul_type")


def test_the_judge_names_what_is_wrong():
    assert judge(item(), example_trajectory("B", tool=True)) == []
    assert "not the reference" in judge(item(), example_trajectory("C"))[0]
    assert judge(item(), example_trajectory("B", format_error="missing <think>…</think>"))[0].startswith("protocol broken")
    inconsistent = example_trajectory("B", tool=True)
    inconsistent.steps[0].thought = "I look at frames 10 to 30"  # but it calls [40, 60]
    assert "names frames (10, 30) but calls (40, 60)" in judge(item(), inconsistent)[0]
    hesitant = example_trajectory("B")
    hesitant.steps[0].thought = "I should look closer"
    assert "announces another look" in judge(item(), hesitant)[0]


def test_the_judge_maps_a_box_from_the_shown_frame_as_the_bench_does():
    box = QAItem(id="q", video="v.mp4", question="Where?", answer="[200, 100, 600, 500]", answer_type="box",
                 sport="soccer", task="evidence_box", box=(200, 100, 600, 500))
    assert judge(box, example_trajectory("[100, 50, 300, 250]", video_size=(1280, 720))) == []
    assert "not the reference" in judge(box, example_trajectory("[200, 100, 600, 500]", video_size=(1280, 720)))[0]


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda line: "{not json", "conversations.jsonl:2: not a conversation record"),
        (lambda line: line.replace('"answer"', '"anwser"'), "conversations.jsonl:2: not a conversation record"),
        (lambda line: json.dumps({**json.loads(line), "images": json.loads(line)["images"][1:]}),
         "conversations.jsonl:2: .* image parts but"),
        (lambda line: json.dumps({**json.loads(line), "images": ["frames/none.jpg"] * len(json.loads(line)["images"])}),
         "conversations.jsonl:2: missing frame file"),
        (lambda line: line.replace("<answer>", "<answr>"), "conversations.jsonl:2: an assistant turn breaks the protocol"),
    ],
)
def test_broken_records_are_named_by_file_and_line(distilled: Path, tmp_path: Path, mutate, message):
    lines = (distilled / "conversations.jsonl").read_text().splitlines()
    (tmp_path / "frames").symlink_to(distilled / "frames")
    (tmp_path / "conversations.jsonl").write_text("\n".join([lines[0], mutate(lines[1])]) + "\n")
    with pytest.raises(DistillDataError, match=message):
        load_conversations(tmp_path)
