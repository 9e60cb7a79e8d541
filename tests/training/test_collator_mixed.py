"""A batch may mix conversations with frames and text-only ones: the collator pads and stacks both."""
import json

from PIL import Image
from transformers import AutoProcessor

from sportlens.training.demo_model import VISUAL_SHAPE, build_demo_model
from sportlens.training.sft import ConversationCollator


def test_a_batch_of_a_conversation_with_a_frame_and_a_text_only_one(tmp_path):
    model_dir = build_demo_model(tmp_path / "m", seed=0, shape=VISUAL_SHAPE)
    processor = AutoProcessor.from_pretrained(model_dir)
    frame = tmp_path / "f.jpg"
    Image.new("RGB", (320, 180), (40, 120, 50)).save(frame)
    with_frame = [{"role": "system", "content": [{"type": "text", "text": "s"}]},
                  {"role": "user", "content": [{"type": "text", "text": "look"}, {"type": "image"}]},
                  {"role": "assistant", "content": [{"type": "text", "text": "<think>t</think>\n<answer>A</answer>"}]}]
    text_only = [{"role": "system", "content": [{"type": "text", "text": "s"}]},
                 {"role": "user", "content": [{"type": "text", "text": "Question: q?\nOptions:\nA) x\nB) y"}]},
                 {"role": "assistant", "content": [{"type": "text", "text": "<think>So the answer is y.</think>\n<answer>B</answer>"}]}]
    collate = ConversationCollator(processor)
    for rows in ([text_only, with_frame], [with_frame, text_only]):
        batch = collate([{"conversation": json.dumps(c), "frames": [str(frame)] if c is with_frame else []} for c in rows])
        assert batch["input_ids"].shape[0] == 2 and batch["image_grid_thw"].shape[0] == 1
        assert batch["pixel_values"].shape[0] == int(batch["image_grid_thw"].prod())
        assert all(batch[key].shape == batch["input_ids"].shape for key in ("attention_mask", "labels"))
