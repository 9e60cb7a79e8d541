"""Per-kind accuracy of a checkpoint's next-token guesses on distilled conversations (teacher-forced), the probe
behind benchmarks/results/visual-cpu/README.md's "labels 6 % … counts 100 %" figures: which skills the model has, apart from how greedy decoding
compounds its errors.

    python -m sportlens.training.visual_probe CHECKPOINT RUN_DIR [N]

CHECKPOINT: a model folder (a trainer checkpoint works: the processor is read from RUN_DIR/base); N conversations of
RUN_DIR/distilled drawn with seed 1 (default 12). Kinds: frame labels in scan entries, mark counts, the tool call's
first number, "seen / not seen" in a scan of tool frames, what the question asks (carried in each entry), the colour,
shape and place words, the first word of the closing sentence's option, the answer letter, and everything else; look
drills (training/visual_drills.py) are counted apart, their kinds prefixed "drill ".
"""
import random
import sys
from pathlib import Path

import torch
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor

from sportlens.training.conversations import encode_for_training
from sportlens.training.distill import load_conversations
from sportlens.training.visual_drills import DRILL_SYSTEM

COLOURS = {"Ġred", "Ġblue", "Ġyellow", "Ġblack"}
SHAPES = {"Ġsquare", "Ġdiamond", "Ġplus", "Ġcircle", "Ġtriangle"}
PLACES = {"Ġleft", "Ġcentre", "Ġright"}


def kind(tokens: list[str], i: int) -> str:
    token, before = tokens[i], tokens[i - 2] if i >= 2 else ""
    if tokens[i - 1] == "Ġis" and before == "Ġanswer":  # "So the answer is <option>.": the option the question asks for
        return "conclusion"
    if token.isdigit() and tokens[i - 1] == "Ġ" and before in ("frame", "Ġframe"):
        return "label"
    if token.isdigit() and tokens[i - 1] == "Ġ" and before in ("Ġis", "Ġare"):
        return "count"
    if token.isdigit() and tokens[i - 1] == "Ġ[":
        return "call_start"
    if token in ("Ġthe", "Ġshows") and tokens[i - 1] == "," and i >= 3 and tokens[i - 3] == "Ġasked":
        return "seen?"  # a tool frame's entry: "asked team, the incident is not seen" or "asked team, shows red"
    if tokens[i - 1] == "Ġasked":  # what the question asks, carried in every entry
        return "asked"
    if token in COLOURS:
        return "colour"
    if token in SHAPES:
        return "shape"
    if token in PLACES and tokens[i - 1] in (",", "Ġshows"):  # "red circle, left", "shows left" (not a side answer)
        return "place"
    if len(token) == 2 and token[0] == ">" and token[1] in "ABCD":  # `<answer` `>B`
        return "letter"
    return "other"


def main() -> None:
    checkpoint, run = sys.argv[1], Path(sys.argv[2])
    count = int(sys.argv[3]) if len(sys.argv) > 3 else 12
    torch.set_num_threads(1)
    processor = AutoProcessor.from_pretrained(run / "base")
    model = AutoModelForImageTextToText.from_pretrained(checkpoint).eval()
    conversations = load_conversations(run / "distilled")
    random.seed(1)
    tally: dict[str, list[int]] = {}
    for messages, images in random.sample(conversations, count):
        drill = messages[0]["content"][0]["text"] == DRILL_SYSTEM
        batch = encode_for_training(processor, messages, [Image.open(path) for path in images])
        with torch.no_grad():
            guesses = model(**{k: v for k, v in batch.items() if k != "labels"}).logits[0].argmax(-1)
        ids, labels = batch["input_ids"][0], batch["labels"][0]
        tokens = processor.tokenizer.convert_ids_to_tokens(ids)
        for i in range(1, len(ids)):
            if labels[i] != -100:
                name = ("drill " if drill else "") + kind(tokens, i)
                right, total = tally.setdefault(name, [0, 0])
                tally[name] = [right + int(guesses[i - 1] == ids[i]), total + 1]
    print({k: (round(right / total, 2), total) for k, (right, total) in sorted(tally.items())})


if __name__ == "__main__":
    main()
