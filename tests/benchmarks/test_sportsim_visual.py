"""SportSim visual: clips whose answers are large marks a model trained from scratch can read, sparse in time."""
import json
import re

import numpy as np
import pytest

from sportlens.agent.loop import AgentSettings, answer_question
from sportlens.agent.records import QAItem
from sportlens.benchmarks import sportsim_visual as visual
from sportlens.benchmarks.visual_oracle import (
    ASKED, DRILL_ASKED, VisualOraclePolicy, marker_words, scan_thought, seen_entry, unseen_entry,
)
from sportlens.tools.frames import Frame, uniform_indices
from sportlens.tools.video import Video
from cli_runner import run_sportlens

SCENES = [visual.make_scene(5, i) for i in range(300)]


@pytest.fixture(scope="module")
def visual_set(tmp_path_factory):
    """qa.jsonl of 12 visual clips (all three sports, every split), seed 1."""
    return visual.generate(tmp_path_factory.mktemp("visual"), n=12, seed=1, workers=2)


def items_of(qa):
    return [QAItem.model_validate_json(line) for line in qa.read_text().splitlines()]


def test_the_same_seed_draws_the_same_clips_and_questions():
    assert visual.make_scene(5, 17) == SCENES[17]
    first = visual.questions(SCENES[17], "clips/x.mp4", 5)
    assert first == visual.questions(visual.make_scene(5, 17), "clips/x.mp4", 5)
    assert visual.make_scene(6, 17) != SCENES[17]


def test_the_moment_is_sparse_for_uniform_frames_and_always_inside_the_interval_the_new_mark_points_to():
    seen8 = seen16 = 0
    for scene in SCENES:
        start, end = scene.moment
        initial = uniform_indices(0, scene.frames - 1, 8)
        seen8 += any(start <= f <= end for f in initial)
        seen16 += any(start <= f <= end for f in uniform_indices(0, scene.frames - 1, 16))
        first_new = next(k for k, f in enumerate(initial) if f >= start)  # the first initial frame with the new mark
        assert first_new >= 1
        if not start <= initial[first_new] <= end:
            low, high = initial[first_new - 1], initial[first_new]
            assert low < high - 8  # a range protocol v2 accepts
            assert any(start <= f <= end for f in uniform_indices(low, high, 8))
    assert seen8 / len(SCENES) < 0.25 and seen16 / len(SCENES) < 0.5


def test_pixel_readers_agree_with_the_scene_on_every_frame():
    for scene in SCENES[:12]:
        start, end = scene.moment
        for t in range(scene.frames):
            image = visual.render(scene, t)
            assert visual.count_marks(image) == scene.marks_before + (t >= start)
            assert visual.shows_moment(image) == (start <= t <= end)


def test_clips_decode_at_2_fps_and_their_marks_survive_compression(visual_set):
    items = items_of(visual_set)
    scenes = [json.loads(line) for line in (visual_set.parent / "scenes.jsonl").read_text().splitlines()]
    assert {s["sport"] for s in scenes} == set(visual.SPORTS)
    assert {item.split for item in items} == {"train", "val", "test"}
    scene = scenes[0]
    with Video(visual_set.parent / scene["video"]) as clip:
        assert (clip.info.frames, clip.info.fps, clip.info.width) == (scene["frames"], 2, 320)
        start = scene["moment_start"]
        before, during = clip.frames_at([start - 1, start + 1])
    assert visual.count_marks(before.image) == scene["marks_before"]
    assert visual.count_marks(during.image) == scene["marks_before"] + 1
    assert visual.shows_moment(during.image) and not visual.shows_moment(before.image)


def test_questions_ask_what_who_where_the_rule_and_one_any_frame_answers():
    items = [item for scene in SCENES[:60] for item in visual.questions(scene, "clips/x.mp4", 5)]
    assert {item.task for item in items} == {"what", "who", "where", "penalty", "side"}
    for item in items:
        assert len(item.options) == 4 and item.answer in "ABCD"
        right = item.options["ABCD".index(item.answer)].split(") ", 1)[1]
        assert sum(option.endswith(f") {right}") for option in item.options) == 1
    penalties = [item for item in items if item.task == "penalty"]
    scene_of = {f"sv5-{s.index:05d}": s for s in SCENES[:60]}
    for item in penalties:  # the penalty follows from the foul's shape by the sport's rule
        scene = scene_of[item.id.rsplit("-", 1)[0]]
        assert item.options["ABCD".index(item.answer)].endswith(visual.PENALTIES[scene.sport][scene.shape])
    letters = [item.answer for item in items]
    assert max(letters.count(x) for x in "ABCD") < 0.4 * len(letters)  # no letter a model could always say


def test_each_question_kind_lists_its_options_in_one_order():
    """A report form's order: the letter follows from the option named (a penalty's list is its sport's)."""
    items = [item for scene in SCENES[:60] for item in visual.questions(scene, "clips/x.mp4", 5)]
    forms: dict[tuple[str, str], set[tuple[str, ...]]] = {}
    for item in items:
        forms.setdefault((item.task, item.sport if item.task == "penalty" else ""), set()).add(tuple(item.options))
    assert len(forms) == 4 + len(visual.SPORTS) and all(len(orders) == 1 for orders in forms.values())
    assert forms[("who", "")] == {tuple(f"{letter}) {colour}" for letter, colour in zip("ABCD", visual.TEAM_RGB))}


def test_the_visual_oracle_plays_the_set_and_uniform_frames_fall_short(visual_set):
    items = items_of(visual_set)
    scores = {}
    for name, settings in {"agent": AgentSettings(), "uniform16": AgentSettings(initial_frames=16, max_turns=1)}.items():
        right = []
        for item in items:
            with Video(visual_set.parent / item.video) as clip:
                trajectory = answer_question(clip, item.question, VisualOraclePolicy(item), options=item.options,
                                             settings=settings)
            right.append(trajectory.answer == item.answer)
            if name == "agent" and item.task == "side":
                assert not any(step.action == "choose_frames" for step in trajectory.steps)
        scores[name] = np.mean(right)
    assert scores["agent"] >= 0.95
    assert scores["uniform16"] <= scores["agent"] - 0.2


def test_the_oracle_thought_scans_to_the_new_mark_and_calls_the_interval_around_it(visual_set):
    item = next(i for i in items_of(visual_set) if i.task == "what")
    with Video(visual_set.parent / item.video) as clip:
        trajectory = answer_question(clip, item.question, VisualOraclePolicy(item), options=item.options)
        initial = clip.frames_at([f.index for f in trajectory.initial_frames])
    scan, position = scan_thought(initial, "what")
    first = trajectory.steps[0]
    assert first.thought.startswith(scan)
    assert scan.count("frame ") == position + 1 and f"frame {initial[0].index} (" in scan
    if first.action == "choose_frames":
        assert first.frame_range == (initial[position - 1].index, initial[position].index)
        assert f"between frame {first.frame_range[0]} and frame {first.frame_range[1]}" in first.thought
        second = trajectory.steps[1]
        right = next(o.split(") ", 1)[1] for o in item.options if o.startswith(item.answer + ")"))
        assert second.thought.endswith(f"asked what, shows {right}. So the answer is {right}.")
        # every entry of both scans carries what the question asks
        entries = re.findall(r"frame \d+ \([^)]*\): (\w+ \w+),", scan + " " + second.thought)
        assert len(entries) > position + 1 and set(entries) == {"asked what"}
        assert second.thought.endswith(f"So the answer is {right}.") and second.answer == item.answer


def test_each_scan_entry_is_as_many_tokens_as_a_labelled_frame_is_positions_in_the_prompt():
    """18 = a label's 10 tokens + vision start + 18 image tokens that advance the position by 6 + vision end."""
    from sportlens.training.demo_model import _train_tokenizer

    tokenizer = _train_tokenizer(number_tokens=True)
    scene = SCENES[3]
    frames = [Frame(index, index / 2, visual.render(scene, index)) for index in uniform_indices(0, scene.frames - 1, 8)]
    scan, position = scan_thought(frames, "penalty")
    entries = scan.split(" frame ")
    assert len(entries) == position + 1
    for entry in entries[1:-1]:
        assert len(tokenizer.tokenize(" frame " + entry)) == 18, entry
    assert len(tokenizer.tokenize(f"\n{frames[5].label()}")) == 10
    frame = Frame(97, 48.5, frames[0].image)
    for asked in (*ASKED.values(), *visual.SPORTS, DRILL_ASKED):
        assert len(tokenizer.tokenize(" " + unseen_entry(frame, asked))) == 18
    # a look drill describes the whole marker in as many tokens
    assert len(tokenizer.tokenize(" " + seen_entry(frame, marker_words("a black triangle on the centre"), "look"))) == 18


def test_synth_preset_visual_writes_the_set_and_an_unknown_preset_is_one_line_and_exit_2(tmp_path):
    done = run_sportlens("synth", "--preset", "visual", "--out", tmp_path / "v", "--n", "3", "--workers", "1")
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "v" / "sportsim.json").read_text())["generator"] == visual.GENERATOR_VERSION
    bad = run_sportlens("synth", "--preset", "cartoon", "--out", tmp_path / "w", "--n", "3")
    assert bad.returncode == 2
    assert bad.stderr.strip().count("\n") == 0 and "cartoon" in bad.stderr


def test_bench_oracle_and_distill_play_a_visual_set_with_the_visual_oracle(visual_set, tmp_path):
    bench = run_sportlens("bench", visual_set, "--oracle", "--split", "test", "--baselines", "uniform16",
                          "--out", tmp_path / "bench")
    assert bench.returncode == 0, bench.stderr
    results = [json.loads(line) for line in (tmp_path / "bench" / "agent.results.jsonl").read_text().splitlines()]
    assert results and all(r["trajectory"]["model"] == "sportsim-visual-oracle" and r["correct"] for r in results)
    distilled = run_sportlens("distill", visual_set, "--out", tmp_path / "d", "--types", "choice", "--limit", "4")
    assert distilled.returncode == 0, distilled.stderr
    conversation = json.loads((tmp_path / "d" / "conversations.jsonl").read_text().splitlines()[0])
    assert conversation["provenance"]["trajectory"]["model"] == "sportsim-visual-oracle"
