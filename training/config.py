"""One config dataclass per training stage, read from YAML or JSON and checked before any training starts.

Every knob has help text (``field(metadata={"help": …})``, as TRL's configs do). ``load_config`` rejects unknown
keys, wrong types and impossible values with a message naming the file and the key, so a typo never silently
falls back to a default after minutes of model loading.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, get_type_hints

import yaml

from sportlens.agent.loop import AgentSettings
from sportlens.agent.settings_flags import SAMPLER_HELP
from sportlens.benchmarks.commands import SYNTH_PRESETS
from sportlens.tools.frames import SAMPLERS
from sportlens.training.rewards import PRESETS, REWARDS


class ConfigError(ValueError):
    """A config that cannot be trained as it is; the message says which file and key, and what is allowed."""


def _help(text: str, default: Any = dataclasses.MISSING, **kwargs) -> Any:
    return field(default=default, metadata={"help": text}, **kwargs)


@dataclass
class SFTStageConfig:
    """Supervised fine-tuning on distilled conversations (``sportlens distill`` output)."""

    model: str = _help("checkpoint directory to start from (e.g. `sportlens make-demo-model`)")
    data: str = _help("dataset directory written by `sportlens distill` (conversations.jsonl + frames/)")
    output_dir: str = _help("where the trained, merged checkpoint is written")
    learning_rate: float = _help("AdamW peak learning rate", 1e-5)
    epochs: float = _help("passes over the data (DeepSport: 1)", 1.0)
    max_steps: int = _help("stop after this many optimizer steps; -1: run the epochs", -1)
    max_seconds: float | None = _help("stop after the first step that ends this long into training; null: no limit",
                                      None)
    batch_size: int = _help("conversations per device per step", 1)
    gradient_accumulation_steps: int = _help("steps whose gradients are summed before an update", 1)
    warmup_ratio: float = _help("fraction of steps the learning rate warms up over", 0.0)
    lr_scheduler: str = _help('transformers\' schedule: "linear" (decays to 0 over the run), "cosine", or '
                              '"constant_with_warmup" (for runs resumed across sessions)', "linear")
    save_steps: int | None = _help("keep a resumable checkpoint (weights, optimizer, data order) every this many "
                                   "steps; a rerun of the stage continues from the latest; null: none", None)
    lora: bool = _help("train LoRA adapters (merged into the weights at the end) instead of every weight", False)
    lora_r: int = _help("LoRA rank", 16)
    lora_alpha: int = _help("LoRA scaling numerator", 32)
    lora_dropout: float = _help("dropout on the LoRA path", 0.05)
    freeze_vision: bool = _help("keep the vision tower fixed (full fine-tune only)", True)
    dtype: str = _help('"auto" (bf16 on GPU, fp32 on CPU), "float32" or "bfloat16"', "auto")
    loader_workers: int = _help("processes decoding and preprocessing frames beside training (GPU runs wait on "
                                "the CPU without them)", 0)
    seed: int = _help("random seed", 0)
    logging_steps: int = _help("log every this many steps", 1)

    def __post_init__(self) -> None:
        if self.loader_workers < 0:
            raise ConfigError("loader_workers must be ≥ 0")
        _positive(self, "learning_rate", "epochs", "batch_size", "gradient_accumulation_steps", "logging_steps")
        _common(self)
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigError("warmup_ratio must be in [0, 1)")
        if self.max_steps == 0 or self.max_steps < -1:
            raise ConfigError("max_steps must be -1 (run the epochs) or at least 1")
        if self.lr_scheduler not in ("linear", "cosine", "constant_with_warmup"):
            raise ConfigError(f'lr_scheduler must be "linear", "cosine" or "constant_with_warmup", not '
                              f"{self.lr_scheduler!r}")
        if self.save_steps is not None and self.save_steps < 1:
            raise ConfigError("save_steps must be at least 1 or null")


@dataclass
class GRPOStageConfig:
    """GRPO with the agent loop as the rollout (same protocol, parser and frame tool as serving)."""

    model: str = _help("checkpoint directory to start from (normally the SFT output)")
    data: str = _help("QA JSONL of training questions (e.g. SportSim's qa.jsonl); videos relative to it")
    output_dir: str = _help("where the trained, merged checkpoint is written")
    split: str | None = _help('keep only items of this split ("train"); null keeps all', "train")
    max_items: int | None = _help("use at most this many items (after the split filter); null: all", None)
    answer_types: list[str] = _help("answer types trained on (open answers are scored by the judge when judge_url is "
                                    "set, else by Video-R1's ROUGE overlap with the reference)",
                                    default_factory=lambda: ["choice", "yes_no", "box"])
    reward: str = _help('reward preset, a weighted sum of reward terms: "v1" (DeepSport\'s gated tool reward), "v2" '
                        '(tool only where needed), "sportr" (1.0·correct + 0.5·format), "video-r1" (accuracy + '
                        'format), "accuracy" or "format"', "v1")
    reward_weights: list[float] | None = _help("one weight per term of the preset, in its order (TRL's "
                                               "reward_weights); null: the preset's own", None)
    judge_url: str | None = _help("OpenAI-compatible server of the judge that scores open answers (its API key from "
                                  "$SPORTLENS_JUDGE_API_KEY); null: ROUGE overlap", None)
    judge_model: str | None = _help("the judge model's name on that server", None)
    num_generations: int = _help("group size: rollouts per question, compared with each other (DeepSport: 8)", 8)
    prompts_per_step: int | None = _help("questions per optimizer step, each rolled out num_generations times "
                                         "(DeepSport: 32); the step then accumulates prompts_per_step × "
                                         "num_generations / batch_size micro-batches. null: the step is batch_size × "
                                         "gradient_accumulation_steps rollouts", None)
    batch_size: int = _help("rollouts per device per micro-batch (a multiple of num_generations unless "
                            "prompts_per_step is set)", 8)
    gradient_accumulation_steps: int = _help("micro-batches whose gradients are summed before an update (follows "
                                             "from prompts_per_step when that is set)", 1)
    preflight: str = _help('before training, roll every question out num_generations times with the starting model: '
                           '"report" logs the share whose rollouts all earn the same reward (no learning signal), '
                           '"drop" also trains without them; "off" skips the pass', "off")
    beta: float = _help("KL coefficient against the starting model (0 loads no reference model)", 0.04)
    learning_rate: float = _help("AdamW peak learning rate", 1e-6)
    max_steps: int = _help("optimizer steps (DeepSport: 300)", 300)
    max_seconds: float | None = _help("stop after the first step that ends this long into training; null: no limit",
                                      None)
    max_turns: int = _help("assistant turns per rollout; the last must answer", AgentSettings.max_turns)
    initial_frames: int = _help("uniform frames in the first user turn", AgentSettings.initial_frames)
    frames_per_call: int = _help("frames a choose_frames call returns", AgentSettings.frames_per_call)
    sampler: str = _help(SAMPLER_HELP, AgentSettings.sampler)
    max_tokens_per_turn: int = _help("generation budget of one turn", 256)
    temperature: float = _help("sampling temperature of the rollouts", 1.0)
    constrain: bool = _help("keep rollout turns inside the protocol with the regex constraint", False)
    lora: bool = _help("train LoRA adapters (merged at the end) instead of every weight", False)
    lora_r: int = _help("LoRA rank", 16)
    lora_alpha: int = _help("LoRA scaling numerator", 32)
    lora_dropout: float = _help("dropout on the LoRA path", 0.05)
    freeze_vision: bool = _help("keep the vision tower fixed (full fine-tune only)", True)
    dtype: str = _help('"auto" (bf16 on GPU, fp32 on CPU), "float32" or "bfloat16"', "auto")
    seed: int = _help("random seed", 0)
    logging_steps: int = _help("log every this many steps", 1)

    def __post_init__(self) -> None:
        _positive(self, "num_generations", "batch_size", "gradient_accumulation_steps", "learning_rate", "max_steps",
                  "max_turns", "initial_frames", "frames_per_call", "max_tokens_per_turn", "logging_steps")
        _common(self)
        if self.reward not in REWARDS:
            raise ConfigError(f"reward must be one of {', '.join(REWARDS)}, not {self.reward!r}")
        terms = PRESETS[self.reward].functions
        if self.reward_weights is not None and len(self.reward_weights) != len(terms):
            raise ConfigError(f"reward_weights must give one weight per term of the {self.reward!r} preset "
                              f"({', '.join(f.__name__ for f in terms)}), not {len(self.reward_weights)}")
        if (self.judge_url is None) != (self.judge_model is None):
            raise ConfigError("judge_url and judge_model go together")
        if self.sampler not in SAMPLERS:
            raise ConfigError(f"sampler must be one of {', '.join(SAMPLERS)}, not {self.sampler!r}")
        if self.preflight not in ("off", "report", "drop"):
            raise ConfigError(f'preflight must be "off", "report" or "drop", not {self.preflight!r}')
        if self.num_generations < 2:
            raise ConfigError("num_generations must be at least 2: GRPO compares rollouts of the same question")
        if self.prompts_per_step is None and self.batch_size % self.num_generations:
            raise ConfigError(f"batch_size ({self.batch_size}) must be a multiple of num_generations "
                              f"({self.num_generations})")
        if self.prompts_per_step is not None:
            _shaped_step(self)
        if self.beta < 0:
            raise ConfigError("beta must be ≥ 0")
        if self.temperature <= 0:
            raise ConfigError("temperature must be > 0: GRPO needs different rollouts of one question")
        _item_filter(self)

    @property
    def accumulation_steps(self) -> int:
        """Micro-batches of ``batch_size`` rollouts per optimizer step."""
        if self.prompts_per_step is None:
            return self.gradient_accumulation_steps
        return self.prompts_per_step * self.num_generations // self.batch_size


def _shaped_step(config: GRPOStageConfig) -> None:
    if config.prompts_per_step < 1:
        raise ConfigError(f"prompts_per_step must be at least 1 or null, not {config.prompts_per_step}")
    if config.gradient_accumulation_steps != 1:
        raise ConfigError("gradient_accumulation_steps follows from prompts_per_step: set one of them")
    rollouts = config.prompts_per_step * config.num_generations
    if rollouts % config.batch_size:
        raise ConfigError(f"prompts_per_step × num_generations ({rollouts}) must be a multiple of batch_size "
                          f"({config.batch_size})")


@dataclass
class SynthSettings:
    """The SportSim clips and questions of a full run (`sportlens synth`'s options)."""

    preset: str = _help('"broadcast" (SportSim: banners, digits; for pretrained VLMs) or "visual" (large marks a '
                        'model trained from scratch can read; its own clip length and frame rate)', "broadcast")
    clips: int = _help("clips to draw; by clip index, 6 in 10 are train, 2 val and 2 test (indices 0 and 7)", 30)
    seconds: float = _help("clip length in seconds", 24.0)
    fps: int = _help("frames per second of the clips", 6)
    size: str = _help('frame size "WIDTHxHEIGHT" (at least 320x180)', "320x180")
    seed: int = _help("random seed of the clips and their questions", 0)
    workers: int | None = _help("encoding processes; null: one per CPU", None)

    def __post_init__(self) -> None:
        _positive(self, "clips", "seconds", "fps")
        if self.preset not in SYNTH_PRESETS:
            raise ConfigError(f"preset must be one of {', '.join(SYNTH_PRESETS)}, not {self.preset!r}")
        if self.workers is not None and self.workers < 1:
            raise ConfigError("workers must be at least 1 or null")
        width, _, height = self.size.lower().partition("x")
        if not (width.isdigit() and height.isdigit()):
            raise ConfigError(f'size must be "WIDTHxHEIGHT", not {self.size!r}')

    @property
    def frame_size(self) -> tuple[int, int]:
        width, _, height = self.size.lower().partition("x")
        return int(width), int(height)


@dataclass
class DistillSettings:
    """Which training questions the SportSim oracle answers for SFT (`sportlens distill`)."""

    answer_types: list[str] = _help("answer types distilled (open answers need an LLM judge to be checked)",
                                    default_factory=lambda: ["choice", "yes_no", "box"])
    max_items: int | None = _help("distill at most this many questions of the train split; null: all", None)
    max_turns: int = _help("the teacher's turn budget", AgentSettings.max_turns)
    drills_per_clip: int = _help("look drills per training clip of a SportSim visual set (training/visual_drills.py)", 0)

    def __post_init__(self) -> None:
        _positive(self, "max_turns")
        if self.drills_per_clip < 0:
            raise ConfigError(f"{type(self).__name__}.drills_per_clip must be 0 or more, got {self.drills_per_clip}")
        _item_filter(self)


@dataclass
class VisionSettings:
    """Auxiliary training of the vision tower before SFT (``training/visual_pretrain.py``; SportSim visual only)."""

    steps: int = _help("batches of rendered frames whose marks, marker, colour, shape and place, and the team on the "
                       "left, the tower learns to read; 0: none", 0)
    batch_size: int = _help("frames a batch", 32)
    learning_rate: float = _help("AdamW learning rate of the tower and its read-out heads", 1.0e-3)

    def __post_init__(self) -> None:
        if self.steps < 0:
            raise ConfigError(f"{type(self).__name__}.steps must be 0 or more, got {self.steps}")
        _positive(self, "batch_size")


@dataclass
class EvalSettings:
    """The evaluation of a full run: every model on the held-out questions, through the benchmark runner."""

    split: str = _help("the split asked (the held-out test split)", "test")
    answer_types: list[str] = _help("answer types asked (open answers need an LLM judge to be scored)",
                                    default_factory=lambda: ["choice", "yes_no", "box"])
    max_items: int | None = _help("ask at most this many questions, drawn in a fixed shuffled order; null: all", None)
    max_turns: int = _help("the agent's turn budget", AgentSettings.max_turns)
    initial_frames: int = _help("uniform frames in the agent's first turn", AgentSettings.initial_frames)
    frames_per_call: int = _help("frames a choose_frames call returns", AgentSettings.frames_per_call)
    max_tokens_per_turn: int = _help("generation budget of one turn", 128)
    constrain: bool = _help("keep turns inside the protocol with the regex constraint (`sportlens bench`'s "
                            "in-process default)", True)
    uniform_frames: int = _help("frames of the no-tool baseline: one answering turn over this many uniform frames", 16)
    sampler: str = _help(SAMPLER_HELP, AgentSettings.sampler)
    no_tool_for: list[str] = _help("trained stages also asked without the tool (the first is the verdict's agent)",
                                   default_factory=lambda: ["grpo-v1"])
    chunk: int = _help("questions every row answers before any row goes on (a deadline cuts all rows alike)", 8)
    max_seconds: float | None = _help("stop asking after this long and report the questions every row answered; "
                                      "null: ask them all", None)

    def __post_init__(self) -> None:
        _positive(self, "max_turns", "initial_frames", "frames_per_call", "max_tokens_per_turn", "uniform_frames",
                  "chunk")
        _item_filter(self)
        stages = ("sft", "grpo-v1", "grpo-v2")
        if not self.no_tool_for or any(s not in stages for s in self.no_tool_for):
            raise ConfigError(f"no_tool_for takes one or more of {', '.join(stages)}, not {self.no_tool_for}")
        if self.max_seconds is not None and self.max_seconds <= 0:
            raise ConfigError("max_seconds must be > 0 or null")
        if self.sampler not in SAMPLERS:
            raise ConfigError(f"sampler must be one of {', '.join(SAMPLERS)}, not {self.sampler!r}")


def _item_filter(config: Any) -> None:
    unknown = [t for t in config.answer_types if t not in ("choice", "yes_no", "box", "open")]
    if unknown or not config.answer_types:
        raise ConfigError(f"answer_types takes choice, yes_no, box and open, not {unknown or 'nothing'}")
    if config.max_items is not None and config.max_items < 1:
        raise ConfigError("max_items must be at least 1 or null")


def _positive(config: Any, *names: str) -> None:
    for name in names:
        if not getattr(config, name) > 0:
            raise ConfigError(f"{name} must be > 0, not {getattr(config, name)!r}")


def _common(config: Any) -> None:
    if config.max_seconds is not None and config.max_seconds <= 0:
        raise ConfigError("max_seconds must be > 0 or null")
    if config.dtype not in ("auto", "float32", "bfloat16"):
        raise ConfigError(f'dtype must be "auto", "float32" or "bfloat16", not {config.dtype!r}')
    if config.lora and config.lora_r < 1:
        raise ConfigError("lora_r must be at least 1")
    if not 0 <= config.lora_dropout < 1:
        raise ConfigError("lora_dropout must be in [0, 1)")


C = TypeVar("C")


def load_config(path: str | Path, kind: type[C]) -> C:
    """Read a YAML (.yaml/.yml) or JSON file into ``kind``; relative paths in it are relative to the file."""
    path = Path(path)
    return config_from_dict(read_mapping(path), kind, source=str(path), base=path.parent)


def read_mapping(path: Path) -> dict:
    """The mapping a YAML (.yaml/.yml) or JSON config file holds; anything else is a :class:`ConfigError`."""
    try:
        text = path.read_text()
    except OSError as error:
        raise ConfigError(f"cannot read the config {path}: {error.strerror}") from error
    try:
        raw = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as error:
        raise ConfigError(f"{path}: not valid {'JSON' if path.suffix == '.json' else 'YAML'} ({error})") from error
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a config is a mapping of keys to values")
    return raw


def config_from_dict(raw: dict, kind: type[C], *, source: str = "config", base: Path | None = None) -> C:
    """Build ``kind`` from a mapping, checking keys, types and values (see ``load_config``)."""
    fields = {f.name: f for f in dataclasses.fields(kind)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) {', '.join(unknown)}; {kind.__name__} takes {', '.join(fields)}")
    missing = [name for name, f in fields.items()
               if name not in raw and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ConfigError(f"{source}: missing key(s) {', '.join(missing)}")
    hints = get_type_hints(kind)
    values = {}
    for name, value in raw.items():
        values[name] = _checked(source, name, value, hints[name])
        if name in ("model", "data", "output_dir") and base is not None and not Path(value).is_absolute():
            values[name] = str(base / value)
    try:
        return kind(**values)
    except ConfigError as error:
        raise ConfigError(f"{source}: {error}") from None


def _checked(source: str, name: str, value: Any, hint: Any) -> Any:
    allowed = [a for a in getattr(hint, "__args__", (hint,))] if "|" in str(hint) else [hint]
    if value is None and type(None) in allowed:
        return None
    for kind in allowed:
        origin = getattr(kind, "__origin__", kind)
        if origin is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if origin is float and isinstance(value, str):  # YAML 1.1 reads 1e-5 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        if origin is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if origin is list and isinstance(value, list):
            (element,) = kind.__args__
            if element is str and all(isinstance(v, str) for v in value):
                return value
            if element is float and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
                return [float(v) for v in value]
        if origin in (str, bool) and isinstance(value, origin):
            return value
    raise ConfigError(f"{source}: {name} must be {_type_name(hint)}, not {value!r}")


def _type_name(hint: Any) -> str:
    return str(hint).replace("<class '", "").replace("'>", "").replace("typing.", "")


def describe(kind: type) -> str:
    """Every key of a stage config with its default and help text, for `--help`-style listings."""
    lines = []
    for f in dataclasses.fields(kind):
        default = "required" if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING else (
            f.default if f.default is not dataclasses.MISSING else f.default_factory())
        lines.append(f"  {f.name} ({default}): {f.metadata['help']}")
    return "\n".join(lines)
