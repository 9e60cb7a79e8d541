"""The frame record: its label and its JPEG form."""
import io

import numpy as np
from PIL import Image

from sportlens.tools.frames import Frame


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
