"""SportSim's questions about one clip, following SportR's hierarchy and DeepSport's four dimensions.

Each question comes with its answer, event window, reference explanation and the clip's split, all read off the
simulation, so the ground truth is exact.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from sportlens.agent.records import QAItem
from sportlens.benchmarks.sportsim_simulation import Simulation

DIMENSIONS = {
    "fine": "fine-grained recognition",
    "rule": "rule & procedural logic",
    "coach": "assessment & coaching",
    "live": "live commentary & reporting",
}
# The kind of event each question asks about; "tactic" questions are about the whole clip, not one event.
EVENT_OF_TASK = {
    "infraction": "foul", "foul_type": "foul", "fouling_player": "foul", "penalty": "foul", "explanation": "foul",
    "evidence_box": "foul", "scorer": "score", "score_time": "score", "restart": "out", "commentary": "turnover",
    "offensive_tactic": "tactic", "defensive_tactic": "tactic",
}


def _choice(rng: np.random.Generator, right: str, wrong: list[str], k: int = 4) -> tuple[list[str], str]:
    """Lettered options holding ``right`` and up to k-1 distinct wrong ones, shuffled; returns (options, letter)."""
    pool = [w for w in dict.fromkeys(wrong) if w != right]
    picked = [pool[i] for i in rng.permutation(len(pool))[: k - 1]] + [right]
    order = rng.permutation(len(picked))
    texts = [picked[i] for i in order]
    letters = "ABCDEFGH"
    return [f"{letters[i]}) {text}" for i, text in enumerate(texts)], letters[texts.index(right)]


def questions(sim: Simulation, video: str, seed: int) -> list[QAItem]:
    """The questions about one clip, with answers, windows and reference explanations."""
    scene, rules = sim.scene, sim.rules
    rng = np.random.default_rng([seed, scene.index, 1])
    last = sim.settings.frames - 1
    stem = Path(video).stem
    items: list[QAItem] = []

    def add(task, question, answer, answer_type, dimension, window, explanation, options=None, level=None, box=None):
        items.append(QAItem(
            id=f"{stem}-{task}", video=video, question=question, options=options, answer=answer,
            answer_type=answer_type, sport=scene.sport, task=task, level=level, dimension=DIMENSIONS[dimension],
            event_window=window, box=box, explanation=explanation, split=scene.split,
        ))

    by_kind = {event.kind: event for event in sim.events}
    foul = by_kind.get("foul")
    others = [sim.label(t, p) for t in (0, 1) for p in range(rules.players)]
    if foul is None:
        add("infraction", "Does any player commit a foul or violation in this clip? Answer yes or no.", "no",
            "yes_no", "rule", [0, last], "Play is never stopped for a foul: no foul banner and no card appear, and "
            "the fouls count on the scoreboard stays the same.", level=1)
    else:
        window = [foul.start, foul.end]
        kind = rules.fouls[foul.detail["foul"]]
        who, victim = sim.label(foul.team, foul.player), sim.label(1 - foul.team, foul.detail["victim"])
        card = f" and the referee shows a {kind.card} card" if kind.card else ""
        explanation = (f"{who} commits {kind.name} against {victim} at {sim.clock(foul.start)}; {kind.rule}. "
                       f"Play stops, the referee signals {kind.penalty}{card}.")
        add("infraction", "Does any player commit a foul or violation in this clip? Answer yes or no.", "yes",
            "yes_no", "rule", window, explanation, level=1)
        options, letter = _choice(rng, kind.name, [f.name for f in rules.fouls])
        add("foul_type", "Which foul or violation is committed in this clip?", letter, "choice", "fine", window,
            explanation, options=options, level=2)
        options, letter = _choice(rng, who, others)
        add("fouling_player", "Which player commits the foul or violation?", letter, "choice", "fine", window,
            explanation, options=options, level=2)
        options, letter = _choice(rng, kind.penalty, [f.penalty for f in rules.fouls])
        add("penalty", "What penalty does the referee give for the foul or violation?", letter, "choice", "rule",
            window, explanation, options=options, level=3)
        add("explanation", "Explain the referee's decision: who commits which foul or violation, and why it earns "
            "its penalty.", explanation, "open", "coach", window, explanation, level=4)
        box = sim.player_box(foul)
        add("evidence_box", "While play is stopped for the foul, where is the player who committed it? Give the "
            "bounding box [x0, y0, x1, y1] in pixels of the frame.", json.dumps(box), "box", "fine", window,
            f"{who} is ringed in yellow while play is stopped; {kind.name}.", level=5, box=box)
    (name_a, _), (name_b, _) = scene.teams
    positions = "positions its players as the scene shows for the whole clip"
    options, letter = _choice(rng, scene.offence, list(rules.offence))
    add("offensive_tactic", f"Which offensive tactic does {name_a} use?", letter, "choice", "coach", [0, last],
        f"{name_a} {positions}: {scene.offence}.", options=options, level=6)
    options, letter = _choice(rng, scene.defence, list(rules.defence))
    add("defensive_tactic", f"Which defensive tactic does {name_b} use?", letter, "choice", "coach", [0, last],
        f"{name_b} {positions}: {scene.defence}.", options=options, level=6)
    score = by_kind.get("score")
    if score is not None:
        window = [score.start, score.end]
        who = sim.label(score.team, score.player)
        explanation = f"{who} scores {score.detail['points']} at {sim.clock(score.start)}; the banner and scoreboard show it."
        options, letter = _choice(rng, who, others)
        add("scorer", "Who scores in this clip?", letter, "choice", "live", window, explanation, options=options)
        step = sim.settings.fps * 7
        times = [sim.clock(min(max(score.start + d * step, 0), last)) for d in (-3, -2, -1, 1, 2, 3)]
        options, letter = _choice(rng, sim.clock(score.start), times)
        add("score_time", "At what time on the game clock is the score made?", letter, "choice", "live", window,
            explanation, options=options)
    out = by_kind["out"]
    restart, other = rules.restarts[0], scene.teams[1 - out.team][0]
    right = f"{restart} to {other}"
    wrong = [f"{r} to {team}" for r in rules.restarts for team in (name_a, name_b)]
    options, letter = _choice(rng, right, wrong)
    add("restart", "The ball goes out of bounds once. What restart follows, and for which team?", letter, "choice",
        "rule", [out.start, out.end], f"{sim.label(out.team, out.player)} touches it last, so the {restart} goes to "
        f"{other}.", options=options)
    turnover = by_kind["turnover"]
    who = sim.label(turnover.team, turnover.player)
    loser = scene.teams[1 - turnover.team][0]
    add("commentary", "Commentate the turnover in this clip: who wins the ball, from which team, and at what time?",
        f"{who} wins the ball from {loser} at {sim.clock(turnover.start)}; {scene.teams[turnover.team][0]} now has "
        "possession.", "open", "live", [turnover.start, turnover.end],
        f"The banner names {who}, ringed in yellow, winning the ball from {loser}.")
    return items
