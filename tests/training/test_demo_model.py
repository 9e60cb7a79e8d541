"""The demo checkpoint is a real Qwen2.5-VL checkpoint: transformers loads it, and it carries what vLLM needs."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from transformers import AutoProcessor, AutoTokenizer, Qwen2_5_VLForConditionalGeneration

from sportlens.agent.records import PROTOCOL_VERSION
from sportlens.training.demo_model import SPECIAL_TOKENS, build_demo_model


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_transformers_loads_it_as_qwen2_5_vl(demo_model_dir: Path) -> None:
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(demo_model_dir)
    processor = AutoProcessor.from_pretrained(demo_model_dir)

    assert model.config.model_type == "qwen2_5_vl"
    assert model.config.architectures == ["Qwen2_5_VLForConditionalGeneration"]
    assert type(processor).__name__ == "Qwen2_5_VLProcessor"
    assert type(processor.image_processor).__name__.startswith("Qwen2VLImageProcessor")
    assert type(processor.video_processor).__name__ == "Qwen2VLVideoProcessor"
    assert next(model.parameters()).dtype == torch.float32


def test_the_checkpoint_is_a_few_megabytes_of_safetensors(demo_model_dir: Path) -> None:
    weights = list(demo_model_dir.glob("*.safetensors"))
    assert len(weights) == 1
    assert 1_000_000 < weights[0].stat().st_size < 20_000_000


def test_special_tokens_are_single_tokens_that_survive_decoding(demo_model_dir: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(demo_model_dir)
    for token in SPECIAL_TOKENS:
        ids = tokenizer.encode(token, add_special_tokens=False)
        assert len(ids) == 1, token
        assert tokenizer.decode(ids, skip_special_tokens=False) == token
    text = '<tool_call>{"name": "choose_frames", "arguments": {"frame_range": [120, 360]}}</tool_call>'
    assert tokenizer.decode(tokenizer.encode(text, add_special_tokens=False), skip_special_tokens=False) == text
    assert tokenizer.eos_token == "<|im_end|>"
    assert tokenizer.pad_token == "<|endoftext|>"


def test_digits_are_single_tokens_so_numbers_can_be_constrained(demo_model_dir: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(demo_model_dir)
    assert tokenizer.convert_ids_to_tokens(tokenizer.encode("[1200, 3600]", add_special_tokens=False)) == [
        "[", "1", "2", "0", "0", ",", "Ġ", "3", "6", "0", "0", "]",
    ]  # fmt: skip
    assert 1500 < len(tokenizer) < 4500


def test_config_carries_what_vllm_needs(demo_model_dir: Path) -> None:
    config = json.loads((demo_model_dir / "config.json").read_text())
    text, vision = config["text_config"], config["vision_config"]
    tokenizer = AutoTokenizer.from_pretrained(demo_model_dir)

    assert text["head_dim"] >= 32  # vLLM's CPU attention rejects 16
    assert text["head_dim"] * text["num_attention_heads"] == text["hidden_size"]
    assert sum(text["rope_parameters"]["mrope_section"]) == text["head_dim"] // 2
    assert text["max_position_embeddings"] >= 32768
    assert vision["out_hidden_size"] == text["hidden_size"]
    assert vision["hidden_size"] % vision["num_heads"] == 0
    assert (vision["patch_size"], vision["spatial_merge_size"]) == (14, 2)
    assert text["vocab_size"] >= len(tokenizer)
    expected = {
        "image_token_id": "<|image_pad|>",
        "video_token_id": "<|video_pad|>",
        "vision_start_token_id": "<|vision_start|>",
        "vision_end_token_id": "<|vision_end|>",
        "bos_token_id": "<|endoftext|>",
        "eos_token_id": "<|im_end|>",
        "pad_token_id": "<|endoftext|>",
    }
    for key, token in expected.items():
        assert config[key] == text[key] == tokenizer.convert_tokens_to_ids(token), key
    generation = json.loads((demo_model_dir / "generation_config.json").read_text())
    assert config["eos_token_id"] in generation["eos_token_id"]


def test_the_chat_template_is_qwen2_5_vl_and_is_saved_where_every_reader_looks(demo_model_dir: Path) -> None:
    processor = AutoProcessor.from_pretrained(demo_model_dir)
    user = [{"type": "text", "text": "frame 0 (0.0s):"}, {"type": "image"}, {"type": "text", "text": "Who?"}]
    chat = [{"role": "system", "content": [{"type": "text", "text": "Be brief."}]}, {"role": "user", "content": user}]
    rendered = processor.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)

    assert rendered == (
        "<|im_start|>system\nBe brief.<|im_end|>\n"
        "<|im_start|>user\nframe 0 (0.0s):<|vision_start|><|image_pad|><|vision_end|>Who?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    template = (demo_model_dir / "chat_template.jinja").read_text()
    assert json.loads((demo_model_dir / "tokenizer_config.json").read_text())["chat_template"] == template
    assert AutoTokenizer.from_pretrained(demo_model_dir).chat_template == template


def test_it_generates_from_eight_640x360_frames(demo_model_dir: Path) -> None:
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(demo_model_dir).eval()
    processor = AutoProcessor.from_pretrained(demo_model_dir)
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (360, 640, 3), dtype=np.uint8)) for _ in range(8)]
    content = [part for i in range(8) for part in ({"type": "text", "text": f"frame {i}:"}, {"type": "image"})]
    chat = [{"role": "user", "content": content}]
    prompt = processor.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
    inputs = processor(text=[prompt], images=images, return_tensors="pt")

    with torch.inference_mode():
        output = model.generate(**inputs, max_new_tokens=8, min_new_tokens=8, do_sample=False)

    assert inputs["image_grid_thw"].shape == (8, 3)
    assert output.shape[1] == inputs["input_ids"].shape[1] + 8


def test_manifest_says_what_the_checkpoint_is(demo_model_dir: Path) -> None:
    manifest = json.loads((demo_model_dir / "manifest.json").read_text())
    assert manifest["base_architecture"] == "Qwen2_5_VLForConditionalGeneration"
    assert manifest["stages"] == ["random-init demo"]
    assert manifest["protocol_version"] == PROTOCOL_VERSION
    assert "random" in manifest["note"]


def test_building_is_deterministic_for_a_seed(demo_model_dir: Path, tmp_path: Path) -> None:
    again = build_demo_model(tmp_path / "again", seed=0)
    other = build_demo_model(tmp_path / "other", seed=1)

    assert (again / "tokenizer.json").read_bytes() == (demo_model_dir / "tokenizer.json").read_bytes()
    assert _sha256(again / "model.safetensors") == _sha256(demo_model_dir / "model.safetensors")
    assert _sha256(other / "model.safetensors") != _sha256(demo_model_dir / "model.safetensors")


def test_the_visual_shape_reads_numbers_as_one_token_and_frames_as_18_tokens(tmp_path: Path) -> None:
    from sportlens.training.demo_model import VISUAL_SHAPE

    folder = build_demo_model(tmp_path / "visual", shape=VISUAL_SHAPE)
    processor = AutoProcessor.from_pretrained(folder)  # as the backends and vLLM load it
    tokenizer = processor.tokenizer
    for number in ("0", "7", "45", "207", "999"):
        assert len(tokenizer.encode(number, add_special_tokens=False)) == 1, number
    text = '<tool_call>{"name": "choose_frames", "arguments": {"frame_range": [45, 207]}}</tool_call>'
    assert tokenizer.decode(tokenizer.encode(text, add_special_tokens=False), skip_special_tokens=False) == text
    for token in SPECIAL_TOKENS:
        assert len(tokenizer.encode(token, add_special_tokens=False)) == 1, token
    grid = processor.image_processor(images=[Image.new("RGB", (320, 180))], return_tensors="pt")["image_grid_thw"]
    assert grid.tolist() == [[1, 6, 12]]  # 6×12 patches of 14 px, merged 2×2: 18 image tokens
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(folder)
    assert model.get_output_embeddings().weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()
    assert json.loads((folder / "manifest.json").read_text())["shape"]["number_tokens"] is True
