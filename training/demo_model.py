"""A tiny random-weight Qwen2.5-VL checkpoint built offline, so every layer can run end to end without a hub.

The checkpoint has the real architecture, tokenizer conventions and chat template of Qwen2.5-VL (byte-level
BPE, single-digit number tokens, Qwen's special tokens with ``<tool_call>`` tags as special tokens), so
transformers and vLLM load it exactly like a released one. Its weights are random: its answers mean nothing.
"""
from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import (
    GenerationConfig,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2_5_VLProcessor,
    Qwen2TokenizerFast,
    Qwen2VLImageProcessor,
    Qwen2VLVideoProcessor,
)
from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

from sportlens.agent import protocol
from sportlens.agent.records import PROTOCOL_VERSION
from sportlens.benchmarks import sportsim_visual as visual

CHAT_TEMPLATE_PATH = Path(__file__).with_name("qwen2_5_vl_chat_template.jinja")

# Qwen's order, so the ids keep Qwen's relative layout at the end of the vocabulary.
SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
    "<tool_call>",
    "</tool_call>",
]

_VOCAB_SIZE = 4096  # an upper bound: this corpus runs out of merges near 2.2k tokens
_MODEL_VOCAB_MULTIPLE = 64  # the model's embedding rows are padded, as Qwen pads 151665 tokens to 151936 rows

_PROTOCOL_TEXT = """
You are a sports video analyst. You are shown frames of a video with their frame index and time.
Think step by step inside <think> </think> tags. If the frames shown are not enough to answer, call the
tool choose_frames with a frame range to see more frames of that moment, or answer inside <answer> </answer>
tags. You may call the tool at most four times, and your last turn must answer. A range must lie inside the
video, must not repeat an earlier range, and must be wider than the number of frames it returns.
For a question with options, answer with the letter of the option only.
Question: Answer with the option's letter from the given choices directly. Options:
The tool returned these frames. Here are the frames you asked for. The range was not valid: please try again.
Your previous tool call had a format error. The video has frames from the first to the last index.
"""

_SPORTS_WORDS = """
basketball soccer football american table tennis badminton volleyball hockey baseball rugby cricket golf
swimming diving gymnastics athletics running sprint marathon cycling boxing wrestling judo fencing skating
player players team teams referee umpire coach goalkeeper keeper striker defender midfielder forward guard
center winger pitcher batter catcher quarterback receiver linebacker server receiver shuttle racket paddle
ball net hoop basket goal post line court field pitch table rim backboard paint penalty box area corner
foul fouls infraction violation penalty free kick throw shot pass dribble tackle block steal rebound assist
dunk layup jumper three pointer dunk header volley cross smash clear drop drive lob serve return rally spin
topspin backspin forehand backhand push loop chop flick offside handball travel traveling double dribble
charging blocking holding pushing tripping kicking elbowing hooking slashing interference encroachment
false start delay game clock shot clock timeout substitution yellow card red card warning ejection
technical flagrant personal team foul goal kick corner kick throw in free throw penalty kick advantage
tactic tactics offensive defensive offense defense attack counter attack press pressing high low zone man
marking pick roll screen cut isolation post up fast break transition possession build up long ball wing
overlap switch help rotation trap double team formation shape compact width depth space pace tempo
score scored scores point points set match game win wins lose loses draw tie lead trailing half quarter
period inning round lap minute second seconds frame frames video clip replay moment event action play
left right top bottom middle near far side front back behind ahead before after during while when where
who what which why how many much first second third last next previous same different other another
yes no not none all any some each every both either neither true false correct incorrect valid invalid
red blue green yellow white black orange purple gray colour color jersey shirt number numbers square
the a an of to in on at by for with from into over under between through about against across along
is are was were be been being has have had do does did can could will would should may might must
this that these those it its he she they them his her their there here then than so because if else
see sees seen look looks watch shows shown show appears seems visible clearly likely probably maybe
ball carrier contact arm hand foot leg body head shoulder hip knee jump jumps landing lands falls fall
moves moving move runs run steps step stops stop turns turn raises raise signals signal whistle blows
official decision call calls called review check checks confirm confirms overturn stands awarded
explain explanation reason because rule rules law laws procedure procedural logic assessment coaching
commentary reporting recognition fine grained grounding bounding region evidence location position
"""


@dataclass(frozen=True)
class ModelShape:
    """The sizes of a checkpoint built from scratch, and how it reads numbers and frames.

    ``number_tokens``: a number of up to three digits is one token (else every digit is one, Qwen's way); copying a
    frame label into a tool call is then copying one token. Its tokenizer also learns the protocol's prompts and
    SportSim visual's words as whole tokens, which makes a training sample about half as long. ``max_pixels`` bounds the pixels the image processor
    keeps of a frame: 16000 turns a 320×180 frame into 168×84, 18 image tokens. ``tie_embeddings`` shares the input
    and output embeddings (as Qwen2.5-VL-3B does), so a token the model attends to is one it can write.
    """

    hidden: int = 128
    layers: int = 2
    vision_hidden: int = 128
    vision_depth: int = 2
    max_pixels: int | None = None  # None: the image processor's default
    number_tokens: bool = False
    tie_embeddings: bool = False


DEMO_SHAPE = ModelShape()
# The shape trained to see SportSim visual clips on a 2-core CPU (training/configs/full-run-visual-cpu.yaml).
VISUAL_SHAPE = ModelShape(hidden=192, layers=4, vision_hidden=128, vision_depth=2, max_pixels=16000,
                          number_tokens=True, tie_embeddings=True)


def _corpus(number_tokens: bool = False) -> list[str]:
    """Protocol text, sports vocabulary and the shapes of model turns (tool calls, labels, answers)."""
    rng = random.Random(0)
    words = _SPORTS_WORDS.split()
    lines = [line.strip() for line in _PROTOCOL_TEXT.strip().splitlines()]
    lines += [" ".join(words[i : i + 12]) for i in range(0, len(words), 12)]
    lines += [w.capitalize() for w in words]
    for _ in range(300):
        start = rng.randrange(0, 9000)
        end = start + rng.randrange(8, 2000)
        fps = rng.choice([25.0, 29.97, 30.0, 50.0, 60.0])
        thought = " ".join(rng.choice(words) for _ in range(rng.randrange(4, 16)))
        letter = rng.choice("ABCD")
        call = json.dumps({"name": "choose_frames", "arguments": {"frame_range": [start, end]}})
        deepsport_call = json.dumps({"action": "choose_frames", "frame_range": [start, end]})
        lines += [
            f"frame {start} ({start / fps:.1f}s):",
            f"<think>{thought}</think>\n<tool_call>\n{call}\n</tool_call>",
            f"<think>{thought}</think>\n<tool_call>{deepsport_call}</tool_call>",
            f"<think>{thought}</think>\n<answer>{letter}</answer>",
            f"<tool_response>\nframe {end} ({end / fps:.1f}s):\n</tool_response>",
            f"{letter}. {' '.join(rng.choice(words) for _ in range(rng.randrange(2, 6)))}",
        ]
    lines += ["0123456789 .,:;!?'\"()[]{}<>/\\-_+=*&%$#@|~`^"]
    if number_tokens:  # every number below 1000 often enough to be merged into one token
        lines += [" ".join(str(n) for n in range(1000))] * 2
    return lines


def _visual_corpus() -> list[str]:
    """The protocol's own prompts and SportSim visual's words, many times: they become few, whole tokens.

    The system prompt alone is ≈480 tokens in the demo tokenizer and ≈1/3 of a training sample's length.
    """
    system = protocol.system_message(total_frames=200, fps=2.0, initial_frames=8, frames_per_call=8, max_turns=5)
    words = [*visual.TEAM_RGB, *visual.PLACES, *visual.SIDES, *visual.KIND_WORDS.values(), *visual.SHAPE_WORDS,
             "circle", "triangle", *(p for rules in visual.PENALTIES.values() for p in rules.values()), *visual.SPORTS]
    thoughts = ["frame 12: 1 mark. frame 37: 2 marks. The new mark appeared between frame 12 and frame 37.",
                "Frame 30 shows the moment: a red square on the left. It shows a blue circle on the right.",
                "The red team stands on the left. I have not seen the moment, so I can only guess.",
                "What happened at the incident? Which team was the incident about? Where on the field did the "
                "incident happen? outside the field What penalty follows the foul in this soccer clip? "
                "Which side does the blue team defend? top bottom",
                f"<tool_response>\n</tool_response>\n{protocol.LAST_TURN_NOTE} format error:"]
    return ([system.text()] + thoughts + [" ".join(words)]) * 20


def _train_tokenizer(number_tokens: bool = False) -> Qwen2TokenizerFast:
    """A byte-level BPE trained on the built-in corpus, wrapped with Qwen's special tokens and conventions."""
    split = PRETOKENIZE_REGEX.replace(r"|\p{N}|", r"|\p{N}{1,3}|") if number_tokens else PRETOKENIZE_REGEX
    bpe = Tokenizer(models.BPE())
    bpe.normalizer = normalizers.NFC()
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            # Qwen2's split: \p{N} stands alone, so every digit is a token and numbers can be constrained digit by digit
            pre_tokenizers.Split(Regex(split), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=_VOCAB_SIZE,
        min_frequency=1,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(_corpus(number_tokens) + (_visual_corpus() if number_tokens else []), trainer=trainer)
    model = json.loads(bpe.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    vocab = model["vocab"] | {token: len(model["vocab"]) + i for i, token in enumerate(SPECIAL_TOKENS)}
    tokenizer = Qwen2TokenizerFast(
        vocab=vocab,
        merges=merges,
        unk_token=None,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        model_max_length=32768,
    )
    tokenizer.backend_tokenizer.pre_tokenizer = bpe.pre_tokenizer  # the wrapper sets Qwen's split; keep ours
    tokenizer.add_special_tokens({"additional_special_tokens": SPECIAL_TOKENS})
    tokenizer.chat_template = CHAT_TEMPLATE_PATH.read_text()
    return tokenizer


def _config(tokenizer: Qwen2TokenizerFast, shape: ModelShape) -> Qwen2_5_VLConfig:
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    token_ids = {
        "image_token_id": ids["<|image_pad|>"],
        "video_token_id": ids["<|video_pad|>"],
        "vision_start_token_id": ids["<|vision_start|>"],
        "vision_end_token_id": ids["<|vision_end|>"],
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
        "pad_token_id": ids["<|endoftext|>"],
    }
    head_dim = 64  # vLLM's CPU attention rejects head_dim 16; 64 works
    hidden, heads = shape.hidden, shape.hidden // head_dim
    vocab_size = -(-len(tokenizer) // _MODEL_VOCAB_MULTIPLE) * _MODEL_VOCAB_MULTIPLE
    text_config = {
        "vocab_size": vocab_size,
        "hidden_size": hidden,
        "intermediate_size": 4 * hidden,
        "num_hidden_layers": shape.layers,
        "num_attention_heads": heads,
        "num_key_value_heads": heads,
        "head_dim": head_dim,
        "max_position_embeddings": 32768,
        "max_window_layers": shape.layers,
        "use_sliding_window": False,
        # mrope splits head_dim / 2 rotary frequencies over time, height and width in Qwen's 2:3:3 ratio
        "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [8, 12, 12]},
        "tie_word_embeddings": shape.tie_embeddings,
        **token_ids,
    }
    vision_config = {
        "depth": shape.vision_depth,
        "hidden_size": shape.vision_hidden,
        "intermediate_size": 2 * shape.vision_hidden,
        "num_heads": shape.vision_hidden // head_dim,
        "patch_size": 14,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
        "tokens_per_second": 2,
        "window_size": 112,
        "fullatt_block_indexes": [shape.vision_depth - 1],
        "out_hidden_size": hidden,
    }
    return Qwen2_5_VLConfig(
        text_config=text_config, vision_config=vision_config, tie_word_embeddings=shape.tie_embeddings, dtype="float32",
        **token_ids,
    )


def build_demo_model(out_dir: Path, seed: int = 0, shape: ModelShape = DEMO_SHAPE) -> Path:
    """Write a random-init Qwen2.5-VL checkpoint (model, tokenizer, processor, chat template, manifest) to out_dir.

    Needs no network and takes well under a second on a CPU once torch is imported. The same seed gives the same
    tokenizer and weights; the result is a few MB of float32 safetensors. Returns out_dir.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = _train_tokenizer(shape.number_tokens)
    config = _config(tokenizer, shape)

    with torch.random.fork_rng(devices=[]):  # seed the weights without touching the caller's RNG
        torch.manual_seed(seed)
        model = Qwen2_5_VLForConditionalGeneration(config).eval()
    model.generation_config = GenerationConfig(
        bos_token_id=config.bos_token_id,
        eos_token_id=[config.eos_token_id, config.pad_token_id],
        pad_token_id=config.pad_token_id,
    )
    model.save_pretrained(out_dir)

    processor = Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(**({"max_pixels": shape.max_pixels} if shape.max_pixels else {})),
        tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(),
        chat_template=tokenizer.chat_template,
    )
    processor.save_pretrained(out_dir)
    write_legacy_files(out_dir, processor)
    if shape.number_tokens:  # Qwen2Tokenizer rebuilds Qwen's digit-by-digit split on load; the generic class keeps ours
        path = out_dir / "tokenizer_config.json"
        path.write_text(json.dumps(json.loads(path.read_text()) | {"tokenizer_class": "PreTrainedTokenizerFast"},
                                   indent=2, ensure_ascii=False) + "\n")

    manifest = {
        "name": out_dir.resolve().name,
        "base_architecture": "Qwen2_5_VLForConditionalGeneration",
        "stages": ["random-init demo"],
        "seed": seed,
        "shape": asdict(shape),
        "protocol_version": PROTOCOL_VERSION,
        "note": "random weights built offline for wiring and tests; its answers are random",
    }
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return out_dir


def write_legacy_files(out_dir: Path, processor: Qwen2_5_VLProcessor) -> None:
    """What readers older than transformers 5 (and the vLLM builds pinned to them) look for.

    They read the chat template only from tokenizer_config.json, expect ``additional_special_tokens`` (transformers 5
    writes a list under ``extra_special_tokens``, which 4.x takes for a dict) and read the image and video processors
    from their own files. transformers 5 reads all of these as well.
    """
    path = out_dir / "tokenizer_config.json"
    config = json.loads(path.read_text())
    config["chat_template"] = processor.chat_template
    config["additional_special_tokens"] = config.pop("extra_special_tokens", SPECIAL_TOKENS)
    path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")
    processor.image_processor.save_pretrained(out_dir)
    processor.video_processor.save_pretrained(out_dir)
