import numpy as np
import pytest
from safetensors.torch import load_file

from sportlens.benchmarks import sportsim_visual as visual
from sportlens.training.config import ConfigError, VisionSettings
from sportlens.training.demo_model import VISUAL_SHAPE, build_demo_model
from sportlens.training.visual_pretrain import COLOURS, SHAPES, pretrain, sample_frames


def test_the_targets_are_what_the_pixels_show():
    images, labels = sample_frames(seed=5, count=40)
    assert 10 <= int(labels["seen"].sum()) <= 30  # about half the frames inside the incident
    for i, image in enumerate(images):
        pixels = np.asarray(image)
        assert visual.count_marks(pixels) == int(labels["marks"][i])
        assert visual.shows_moment(pixels) == bool(labels["seen"][i])
        left_team = np.array(visual.TEAM_RGB[COLOURS[labels["left"][i]]])
        near = np.abs(pixels[visual.BAR_HEIGHT:].astype(int) - left_team).sum(axis=2) < 40  # its players' pixels
        half = near.shape[1] // 2
        if labels["seen"][i]:
            assert COLOURS[labels["colour"][i]] in visual.TEAM_RGB and SHAPES[labels["shape"][i]]
        else:  # the left team is checked without a marker (in a team's colour, it may be larger than the players)
            assert int(labels["colour"][i]) == int(labels["shape"][i]) == int(labels["place"][i]) == -100
            assert near[:, :half].sum() > 2 * 16 * 16 > near[:, half:].sum()  # its 4 players (JPEG blurs their edges)


def test_pretraining_changes_the_tower_only_and_writes_a_checkpoint_that_names_the_stage(tmp_path):
    base = build_demo_model(tmp_path / "base", seed=0, shape=VISUAL_SHAPE)
    summary = pretrain(base, tmp_path / "vision", steps=2, batch=4, seed=1)
    assert set(summary["held_out_accuracy"]) == {"marks", "seen", "left", "colour", "shape", "place"}
    before, after = load_file(base / "model.safetensors"), load_file(tmp_path / "vision" / "model.safetensors")
    tower = [name for name in before if name.startswith("visual.")]
    language = [name for name in before if not name.startswith("visual.")]
    assert tower and language
    assert any(not before[name].equal(after[name]) for name in tower)
    assert all(before[name].equal(after[name]) for name in language)
    manifest = (tmp_path / "vision" / "manifest.json").read_text()
    assert '"stage": "vision"' in manifest


def test_impossible_vision_settings_are_refused():
    with pytest.raises(ConfigError, match="steps must be 0 or more"):
        VisionSettings(steps=-1)
