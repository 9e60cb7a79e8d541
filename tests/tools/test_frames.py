"""The frame record (its label and its JPEG form) and the named samplers that pick which frames are shown."""
import io

import numpy as np
import pytest
from PIL import Image

from sportlens.tools.frames import Frame, call_indices, linspace_indices, opening_indices, uniform_indices


def test_jpeg_is_encoded_once_per_quality_and_decodes_to_the_frame() -> None:
    image = np.zeros((36, 64, 3), np.uint8)
    image[:, :32] = 255
    frame = Frame(3, 0.125, image)
    first = frame.jpeg(90)
    assert frame.jpeg(90) is first  # kept: a chat sends the same frame again with every later turn
    assert frame.jpeg(50) is not first and frame.jpeg(50) is frame.jpeg(50)
    decoded = np.asarray(Image.open(io.BytesIO(first)))
    assert decoded.shape == (36, 64, 3) and decoded[:, :30].mean() > 240 and decoded[:, 34:].mean() < 15
    assert frame.label() == "frame 3 (0.1s):" and frame == Frame(3, 0.125, image)


def test_the_centred_sampler_takes_the_centre_of_each_bin_over_the_whole_range() -> None:
    assert opening_indices(100, 8) == [6, 18, 31, 43, 56, 68, 81, 93]  # the default: neither end of the video
    assert call_indices(10, 19, 8) == [10, 11, 13, 14, 15, 16, 18, 19] == uniform_indices(10, 19, 8)
    assert call_indices(10, 19, 8, "centred") == call_indices(10, 19, 8)


def test_the_framethinker_sampler_includes_both_ends_of_the_video_and_excludes_a_ranges_ends() -> None:
    assert opening_indices(100, 8, "framethinker") == [0, 14, 28, 42, 56, 70, 84, 99]  # linspace(0, 99, 8)
    assert call_indices(10, 19, 8, "framethinker") == [11, 12, 13, 14, 15, 16, 17, 18]  # linspace(11, 18, 8)
    assert call_indices(0, 40, 4, "framethinker") == [1, 13, 26, 39]  # linspace(1, 39, 4) = 1, 13.67, 26.33, 39


def test_a_video_shorter_than_k_shows_every_frame() -> None:
    assert opening_indices(5, 8, "centred") == opening_indices(5, 8, "framethinker") == [0, 1, 2, 3, 4]


def test_a_range_without_n_frames_inside_it_is_refused_rather_than_repeating_frames() -> None:
    with pytest.raises(ValueError, match="cannot take 8 distinct frames"):
        call_indices(10, 18, 8, "framethinker")  # only 11..17 lie strictly inside
    with pytest.raises(ValueError, match="cannot take 3"):
        linspace_indices(4, 5, 3)


def test_an_unknown_sampler_is_named_in_the_error() -> None:
    with pytest.raises(ValueError, match="centred, framethinker.*'uniform'"):
        call_indices(0, 99, 8, "uniform")
