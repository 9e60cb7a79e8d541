"""`sportlens ask`, `bench` and `distill` take the agent's settings as the same flags, with AgentSettings' defaults."""
import argparse

import pytest

from sportlens.agent.loop import AgentSettings
from sportlens.agent.settings_flags import add_agent_flags, agent_settings


def test_the_flags_default_to_the_agents_settings_and_read_back_into_them():
    parser = argparse.ArgumentParser()
    add_agent_flags(parser, max_thought_chars=True, constrain=True)
    args = parser.parse_args([])
    assert agent_settings(args) == AgentSettings()
    assert args.constrain is None and args.max_thought_chars is None  # each command decides these itself
    args = parser.parse_args(["--max-turns", "3", "--initial-frames", "4", "--frames-per-call", "6",
                              "--sampler", "framethinker", "--no-constrain"])
    assert agent_settings(args, temperature=0.5, constrain=args.constrain) == AgentSettings(
        max_turns=3, initial_frames=4, frames_per_call=6, sampler="framethinker", temperature=0.5, constrain=False)
    with pytest.raises(ValueError, match="sampler must be one of"):
        agent_settings(parser.parse_args(["--sampler", "random"]))


def test_a_command_adds_the_thought_bound_and_constrain_only_when_it_asks_for_them():
    parser = argparse.ArgumentParser()
    add_agent_flags(parser)
    assert [action.dest for action in parser._actions] == ["help", "max_turns", "initial_frames", "frames_per_call",
                                                           "sampler"]
