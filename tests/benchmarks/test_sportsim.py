"""SportSim: deterministic clips of three sports whose questions are answerable from readable cues."""
import hashlib
import json

import pytest

from sportlens.agent.records import QAItem
from sportlens.benchmarks.sportsim import SPORTS, SimSettings, generate
from sportlens.benchmarks.sportsim_questions import questions
from sportlens.benchmarks.sportsim_render import shows_banner
from sportlens.benchmarks.sportsim_simulation import Simulation, make_scene
from sportlens.tools.frames import uniform_indices
from sportlens.tools.video import Video

SMALL = SimSettings(seconds=20, fps=6)  # as the sim_dataset fixture writes them


def items_of(qa):
    return [QAItem.model_validate_json(line) for line in qa.read_text().splitlines()]


def test_every_question_is_a_valid_item_with_a_window_inside_its_video(sim_dataset):
    items = items_of(sim_dataset)
    assert {item.sport for item in items} == set(SPORTS)
    assert {item.split for item in items} == {"train", "val", "test"}
    assert len({item.id for item in items}) == len(items)
    for video in {item.video for item in items}:
        with Video(sim_dataset.parent / video) as clip:
            assert (clip.info.frames, clip.info.fps, clip.info.width, clip.info.height) == (120, 6, 640, 360)
        assert len({item.split for item in items if item.video == video}) == 1  # split by video
    for item in items:
        start, end = item.event_window
        assert 0 <= start < end <= 119 and end - start + 1 >= 8
        assert item.explanation
        if item.options:
            assert item.answer in "ABCD"[: len(item.options)]


def test_questions_follow_sportr_hierarchy_and_deepsport_dimensions(sim_dataset):
    items = items_of(sim_dataset)
    tasks = {item.task for item in items}
    assert {"infraction", "foul_type", "penalty", "explanation", "evidence_box", "offensive_tactic",
            "defensive_tactic"} <= tasks
    assert {item.level for item in items if item.level} == {1, 2, 3, 4, 5, 6}
    assert {item.dimension for item in items} == {
        "fine-grained recognition", "rule & procedural logic", "assessment & coaching", "live commentary & reporting"}
    assert {item.answer_type for item in items} == {"choice", "yes_no", "open", "box"}
    foul_clips = {item.video for item in items if item.task == "foul_type"}
    for video in foul_clips:  # the whole chain is asked about a clip with a foul
        assert {i.task for i in items if i.video == video} >= {"infraction", "penalty", "explanation", "evidence_box"}
        assert next(i.answer for i in items if i.video == video and i.task == "infraction") == "yes"


def test_same_seed_same_clips_and_questions(tmp_path):
    settings = SimSettings(seconds=12, fps=6)
    first = generate(tmp_path / "a", n=2, seed=11, settings=settings, workers=1)
    second = generate(tmp_path / "b", n=2, seed=11, settings=settings, workers=1)
    assert first.read_text() == second.read_text()
    for name in ("soccer_00000.mp4", "basketball_00001.mp4"):
        digests = {hashlib.sha256((p.parent / "clips" / name).read_bytes()).hexdigest() for p in (first, second)}
        assert len(digests) == 1
    other = generate(tmp_path / "c", n=2, seed=12, settings=settings, workers=1)
    assert other.read_text() != first.read_text()


def test_the_event_cues_are_readable_in_the_decoded_frames(sim_dataset):
    """The banner shows in every frame of an event window and in no frame far from every event; the evidence
    box holds the ringed player."""
    items = items_of(sim_dataset)
    scenes = [json.loads(line) for line in (sim_dataset.parent / "scenes.jsonl").read_text().splitlines()]
    boxes = [item for item in items if item.task == "evidence_box"][:3]
    assert boxes
    for item in boxes:
        scene = next(s for s in scenes if s["video"] == item.video)
        busy = {t for e in scene["events"] for t in range(e["start"] - 2, e["end"] + 3)}
        quiet = [t for t in range(0, 120, 7) if t not in busy][:3]
        start, end = item.event_window
        with Video(sim_dataset.parent / item.video) as clip:
            inside = clip.frames_at([start, (start + end) // 2, end])
            outside = clip.frames_at(quiet)
        assert all(shows_banner(frame.image) for frame in inside)
        assert not any(shows_banner(frame.image) for frame in outside)
        x0, y0, x1, y1 = (int(v) for v in item.box)
        ring = inside[1].image[y0:y1, x0:x1].reshape(-1, 3).astype(int)
        yellow = (ring[:, 0] > 200) & (ring[:, 1] > 180) & (ring[:, 2] < 90)
        assert yellow.sum() > 30  # the highlight ring round the player is inside the box


def test_eight_uniform_frames_usually_miss_an_event_in_a_default_clip():
    settings = SimSettings()  # 60 s at 12 fps, events of 1.5 s
    hits = total = 0
    shown = set(uniform_indices(0, settings.frames - 1, 8))
    for index in range(60):
        scene = make_scene(0, index, SPORTS[index % 3], settings)
        for event in scene.events:
            total += 1
            hits += any(event.start <= t <= event.end for t in shown)
    assert hits / total < 0.35


def test_questions_are_drawn_for_every_sport_without_encoding():
    for sport in SPORTS:
        for index in range(5):
            sim = Simulation(make_scene(5, index, sport, SMALL), SMALL)
            items = questions(sim, f"clips/{sport}.mp4", 5)
            assert {"offensive_tactic", "defensive_tactic", "restart", "commentary", "infraction"} <= {i.task for i in items}
            frame = sim.frame(sim.events[0].start)
            assert frame.shape == (360, 640, 3) and shows_banner(frame)


@pytest.mark.parametrize("bad", [dict(seconds=3), dict(fps=2), dict(size=(160, 90)), dict(seconds=10, fps=6)])
def test_settings_that_would_make_unreadable_clips_are_refused(bad):
    with pytest.raises(ValueError):
        SimSettings(**bad)


def test_unknown_sport_is_refused(tmp_path):
    with pytest.raises(ValueError, match="curling"):
        generate(tmp_path, n=1, sports=("curling",))
