"""The agent's settings as command-line flags, defined once for `sportlens ask`, `sportlens bench` and
`sportlens distill`: the same names, help and defaults (``AgentSettings``'), read back into ``AgentSettings``.
"""
from __future__ import annotations

import argparse

from sportlens.agent.loop import AgentSettings

SAMPLER_HELP = ('how frames are spread over the video and inside a tool call\'s range (tools/frames.py): "centred" '
                '(the default: the centre of each of n equal bins) or "framethinker" (FrameThinker\'s linspace: the '
                "first and last frame of the video, a range's own ends left out); serve, train and bench with one")


def add_agent_flags(parser: argparse.ArgumentParser, *, max_thought_chars: bool = False, constrain: bool = False,
                    sampler_note: str = "") -> None:
    """Add --max-turns, --initial-frames, --frames-per-call and --sampler to ``parser``, with AgentSettings' defaults.

    ``max_thought_chars`` adds --max-thought-chars (default None: the model's own bound) after --max-turns;
    ``constrain`` adds --constrain (default None: on in-process, off over HTTP) after --sampler. ``sampler_note``
    ends --sampler's help (what else the command spreads frames for).
    """
    defaults = AgentSettings()
    parser.add_argument("--max-turns", type=int, default=defaults.max_turns,
                        help="the model's turns before it must answer (default %(default)s)")
    if max_thought_chars:
        parser.add_argument("--max-thought-chars", type=int, default=None,
                            help="with --constrain: the longest thought a turn may write (a model that scans many "
                                 "frames in its thought needs more; default: what the checkpoint's manifest names, "
                                 f"else {defaults.max_thought_chars})")
    parser.add_argument("--initial-frames", type=int, default=defaults.initial_frames,
                        help="frames spread over the whole video that the model sees first (default %(default)s)")
    parser.add_argument("--frames-per-call", type=int, default=defaults.frames_per_call,
                        help="frames a choose_frames call returns (default %(default)s)")
    parser.add_argument("--sampler", default=defaults.sampler, help=SAMPLER_HELP + sampler_note)
    if constrain:
        parser.add_argument("--constrain", action=argparse.BooleanOptionalAction, default=None,
                            help="keep every turn inside the protocol with a regex (default: on in-process, off over "
                                 "HTTP)")


def agent_settings(args: argparse.Namespace, **more) -> AgentSettings:
    """The settings of ``add_agent_flags``' flags in ``args``, with ``more``: those a command decides itself
    (--constrain's default, the thought's bound, a temperature, ...). Raises ValueError for impossible values."""
    return AgentSettings(initial_frames=args.initial_frames, frames_per_call=args.frames_per_call,
                         max_turns=args.max_turns, sampler=args.sampler, **more)
