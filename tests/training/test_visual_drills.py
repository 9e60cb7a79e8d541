import json
import re

import numpy as np
from PIL import Image

from sportlens.benchmarks import sportsim_visual as visual
from sportlens.training.distill import load_conversations
from sportlens.training.visual_drills import FRAMES_PER_DRILL, write_drills

ENTRY = re.compile(r"frame (\d+) \(\d+\.\ds\): asked look, (?:the incident is (not seen)|shows (\w+ \w+, \w+))\.")


def test_drills_are_valid_conversations_whose_every_entry_says_what_the_frame_shows(tmp_path):
    qa = visual.generate(tmp_path / "set", n=5, seed=3, workers=1)
    scenes = {s["index"]: s for s in map(json.loads, (qa.parent / "scenes.jsonl").read_text().splitlines())}
    train = [i for i, s in scenes.items() if s["split"] == "train"]
    out = tmp_path / "distilled"
    out.mkdir()
    assert write_drills(qa.parent, out, per_clip=3, seed=0) == 3 * len(train)
    conversations = load_conversations(out)  # protocol-valid, frames on disk
    seen_entries = 0
    records = [json.loads(line) for line in (out / "conversations.jsonl").read_text().splitlines()]
    for record, (messages, images) in zip(records, conversations):
        scene = visual.make_scene(3, record["provenance"]["clip"])
        text = messages[-1]["content"][0]["text"]
        entries = ENTRY.findall(text)
        assert len(entries) == len(images) == FRAMES_PER_DRILL
        for (index, not_seen, description), image in zip(entries, images):
            shows = visual.shows_moment(np.asarray(Image.open(image).convert("RGB")))
            assert (not_seen == "") == shows, (record["id"], index)
            if shows:
                assert f"a {description.replace(',', ' on the')}" == scene.describe()
                seen_entries += 1
    assert seen_entries >= len(records)  # around the incident about half the looks are at the marker


