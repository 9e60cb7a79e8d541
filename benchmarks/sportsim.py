"""SportSim: deterministic synthetic broadcast clips of soccer, basketball and doubles tennis, with exact ground truth.

A clip is a top-down view of two teams of numbered players, a ball, a referee and a scoreboard with the game
clock. A few events happen, sparse in time (each lasts ``EVENT_SECONDS``): a score, a foul or violation with
its penalty (the referee holds up a card when there is one), the ball going out of bounds, a turnover. While an
event lasts, play stops or the ball sits where it went, a banner names the event, and a yellow ring marks the
player it is about; the scoreboard keeps the consequences (score, fouls) afterwards. Each team keeps one tactic
for the whole clip (formations, pressing, zone against man marking), visible in its players' positions.

Questions follow SportR's hierarchy (infraction? → which foul → which penalty → explanation → evidence box →
offensive / defensive tactic) and DeepSport's four dimensions, closed and open, each with its answer, event
window, reference explanation and split (by video). Everything is a function of (seed, clip index, settings):
the same call writes the same clips and the same questions.

8 frames spread over a 60-s clip are 7.5 s apart; an event lasts 1.5 s, so they show it one time in five.
"""
from __future__ import annotations

import json
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from sportlens.agent.records import QAItem
from sportlens.benchmarks import sportsim_render as render


GENERATOR_VERSION = "sportsim-1"
SPORTS = ("soccer", "basketball", "tennis")
EVENT_SECONDS = 1.5
SPLIT_PATTERN = ("test", "train", "train", "val", "train", "train", "train", "test", "train", "val")
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
TEAM_PAIRS = (
    (("Red", (215, 40, 40)), ("Blue", (40, 90, 225))),
    (("Orange", (245, 140, 20)), ("Purple", (130, 50, 170))),
    (("White", (240, 240, 240)), ("Black", (25, 25, 25))),
)


@dataclass(frozen=True)
class Foul:
    name: str
    penalty: str
    card: str | None
    rule: str  # why the penalty follows, for the reference explanation


@dataclass(frozen=True)
class SportRules:
    players: int  # per team
    goal_word: str
    points: tuple[int, ...]
    restarts: tuple[str, ...]  # what can follow the ball going out; the first is what does
    fouls: tuple[Foul, ...]
    offence: dict[str, list[tuple[float, float]]]  # tactic -> anchor (u, v) per attacker, u toward the goal attacked
    defence: dict[str, list[tuple[float, float]] | None]  # None: man-to-man, each defender shadows an attacker
    clock_counts_down: bool


RULES: dict[str, SportRules] = {
    "soccer": SportRules(
        players=7, goal_word="GOAL", points=(1,), restarts=("throw-in", "goal kick", "corner kick"),
        fouls=(
            Foul("tripping", "direct free kick", None, "tripping an opponent is punished with a direct free kick"),
            Foul("reckless tackle", "yellow card and direct free kick", "yellow",
                 "a reckless tackle is cautioned with a yellow card and gives a direct free kick"),
            Foul("violent conduct", "red card and direct free kick", "red",
                 "violent conduct is a sending-off offence: red card and a direct free kick"),
            Foul("handball in the penalty area", "penalty kick", None,
                 "a direct free-kick offence inside the offender's own penalty area gives a penalty kick"),
            Foul("dangerous play", "indirect free kick", None,
                 "playing in a dangerous manner without contact gives an indirect free kick"),
        ),
        offence={
            "wide wing play": [(0.05, 0.5), (0.3, 0.3), (0.3, 0.7), (0.55, 0.08), (0.55, 0.92), (0.75, 0.3), (0.75, 0.7)],
            "narrow central play": [(0.05, 0.5), (0.3, 0.4), (0.3, 0.6), (0.52, 0.43), (0.52, 0.57), (0.72, 0.45), (0.72, 0.55)],
            "long balls to three strikers": [(0.05, 0.5), (0.22, 0.3), (0.22, 0.7), (0.3, 0.5), (0.85, 0.2), (0.85, 0.5), (0.85, 0.8)],
        },
        defence={
            "high press": [(0.95, 0.5), (0.4, 0.2), (0.4, 0.4), (0.4, 0.6), (0.4, 0.8), (0.28, 0.35), (0.28, 0.65)],
            "low block": [(0.95, 0.5), (0.86, 0.2), (0.86, 0.4), (0.86, 0.6), (0.86, 0.8), (0.76, 0.35), (0.76, 0.65)],
            "man-to-man marking": None,
        },
        clock_counts_down=False,
    ),
    "basketball": SportRules(
        players=5, goal_word="BASKET", points=(2, 3), restarts=("inbound pass", "jump ball", "free throws"),
        fouls=(
            Foul("shooting foul", "two free throws", None, "a foul on a player in the act of shooting gives free throws"),
            Foul("blocking foul", "side inbound to the fouled team", None,
                 "a defender who blocks without a legal guarding position gives the ball to the other team"),
            Foul("charging", "possession to the defending team", None,
                 "charging is an offensive foul: the ball goes to the defence"),
            Foul("technical foul", "one free throw and possession", None,
                 "unsportsmanlike behaviour is a technical foul: one free throw and the ball"),
            Foul("travelling", "turnover: ball to the other team", None,
                 "travelling is a violation: the ball goes to the other team"),
        ),
        offence={
            "five-out spacing": [(0.78, 0.1), (0.78, 0.9), (0.66, 0.28), (0.66, 0.72), (0.6, 0.5)],
            "post-up (four out, one in)": [(0.78, 0.1), (0.78, 0.9), (0.62, 0.3), (0.62, 0.7), (0.92, 0.5)],
            "isolation": [(0.92, 0.06), (0.92, 0.94), (0.74, 0.06), (0.74, 0.94), (0.6, 0.5)],
        },
        defence={
            "man-to-man defence": None,
            "2-3 zone": [(0.8, 0.35), (0.8, 0.65), (0.92, 0.18), (0.94, 0.5), (0.92, 0.82)],
            "full-court press": [(0.3, 0.3), (0.3, 0.7), (0.45, 0.5), (0.56, 0.2), (0.56, 0.8)],
        },
        clock_counts_down=True,
    ),
    "tennis": SportRules(
        players=2, goal_word="POINT", points=(1,), restarts=("point to the other team", "let: replay the point", "fault"),
        fouls=(
            Foul("foot fault", "fault: second serve", None, "stepping on the baseline while serving is a fault"),
            Foul("double fault", "point awarded to the receivers", None, "two faults in a row lose the point"),
            Foul("touching the net", "point awarded to the opponents", None,
                 "a player who touches the net while the ball is in play loses the point"),
            Foul("racket abuse", "code violation: warning", None, "a first code violation earns a warning"),
            Foul("ball abuse after a warning", "point penalty", None, "a second code violation costs a point"),
        ),
        offence={
            "both at the net": [(0.42, 0.3), (0.42, 0.7)],
            "one up, one back": [(0.42, 0.3), (0.08, 0.7)],
            "both on the baseline": [(0.08, 0.3), (0.08, 0.7)],
        },
        defence={
            "both at the net": [(0.58, 0.3), (0.58, 0.7)],
            "one up, one back": [(0.58, 0.3), (0.92, 0.7)],
            "both on the baseline": [(0.92, 0.3), (0.92, 0.7)],
        },
        clock_counts_down=False,
    ),
}


@dataclass(frozen=True)
class SimSettings:
    """How SportSim clips look. The defaults make broadcast-like 60-s clips; tests use short, slow ones.

    ``seconds`` of 30–180 make realistic clips; short ones are refused when the four events would not fit.
    """

    seconds: float = 60.0
    fps: int = 12
    size: tuple[int, int] = (640, 360)
    gop_seconds: float = 2.0
    crf: int = 23

    def __post_init__(self) -> None:
        if self.seconds < 6:
            raise ValueError("clips must last at least 6 s (events need room)")
        if not 4 <= self.fps <= 60:
            raise ValueError("fps must be 4 to 60")
        if self.size[0] < 320 or self.size[1] < 180:
            raise ValueError("size must be at least 320×180 so the cues stay readable")
        if self.frames < 8 * self.event_frames:  # four events, each with room around it
            raise ValueError(f"{self.seconds:g} s at {self.fps} fps is too short for four events of "
                             f"{self.event_frames} frames; make it longer")

    @property
    def frames(self) -> int:
        return int(round(self.seconds * self.fps))

    @property
    def event_frames(self) -> int:
        """An event's length in frames: EVENT_SECONDS, but never fewer than a tool call's 8 frames."""
        return max(8, int(round(EVENT_SECONDS * self.fps)))


@dataclass
class Event:
    kind: str  # "foul", "score", "out", "turnover"
    start: int
    end: int  # inclusive
    team: int  # the team the event is about (fouler, scorer, last touch, ball winner): 0 or 1
    player: int  # index in that team
    detail: dict = field(default_factory=dict)


@dataclass
class Scene:
    """Everything random about one clip, drawn from its own seed."""

    index: int
    sport: str
    teams: tuple[tuple[str, tuple[int, int, int]], tuple[str, tuple[int, int, int]]]
    numbers: tuple[list[int], list[int]]
    offence: str
    defence: str
    events: list[Event]
    clock_start_s: int
    phases: np.ndarray  # (2, players, 4): jitter phases
    passes: list[int]  # holder index of the team in possession at each pass slot
    split: str


def make_scene(seed: int, index: int, sport: str, settings: SimSettings) -> Scene:
    """The random choices for clip ``index`` of a dataset drawn with ``seed``."""
    rng = np.random.default_rng([seed, index])
    rules = RULES[sport]
    teams = TEAM_PAIRS[int(rng.integers(len(TEAM_PAIRS)))]
    if rng.random() < 0.5:
        teams = (teams[1], teams[0])
    numbers = tuple(sorted(int(n) for n in rng.choice(np.arange(2, 30), rules.players, replace=False)) for _ in range(2))
    offence = str(rng.choice(list(rules.offence)))
    defence = str(rng.choice(list(rules.defence)))
    kinds = ["out", "turnover"] + (["foul"] if rng.random() < 0.8 else []) + (["score"] if rng.random() < 0.75 else [])
    rng.shuffle(kinds)
    total, width = settings.frames, settings.event_frames
    margin = max(int(0.04 * total), 1)
    slot = (total - 2 * margin) / len(kinds)
    events = []
    for position, kind in enumerate(kinds):
        lo = margin + int(position * slot)
        hi = margin + int((position + 1) * slot) - width - 1
        start = int(rng.integers(lo, max(lo + 1, hi)))
        team = 0 if kind in ("score",) else int(rng.integers(2))
        if kind == "turnover":
            team = 1
        player = int(rng.integers(1 if sport == "soccer" else 0, rules.players))
        detail: dict = {}
        if kind == "foul":
            detail["foul"] = int(rng.integers(len(rules.fouls)))
            detail["victim"] = int(rng.integers(1 if sport == "soccer" else 0, rules.players))
        if kind == "score":
            detail["points"] = int(rng.choice(rules.points))
        events.append(Event(kind, start, start + width - 1, team, player, detail))
    return Scene(
        index=index,
        sport=sport,
        teams=teams,
        numbers=numbers,
        offence=offence,
        defence=defence,
        events=events,
        clock_start_s=int(rng.integers(5, 40)) * 60 + int(rng.integers(60)),
        phases=rng.uniform(0, 2 * np.pi, (2, rules.players, 4)),
        passes=[int(p) for p in rng.integers(0, rules.players, total // max(settings.fps, 1) + 4)],
        split=SPLIT_PATTERN[index % len(SPLIT_PATTERN)],
    )


# ---------------------------------------------------------------------------------------------------
# Simulation: where everything is at frame t


class Simulation:
    """Positions, ball, scoreboard and banner of every frame of one scene."""

    def __init__(self, scene: Scene, settings: SimSettings):
        self.scene, self.settings, self.rules = scene, settings, RULES[scene.sport]
        self.box = render.field_box(*settings.size)
        self.events = sorted(scene.events, key=lambda e: e.start)

    def clock(self, t: int) -> str:
        seconds = self.settings.seconds
        elapsed = t / self.settings.fps
        value = self.scene.clock_start_s + (seconds - elapsed if self.rules.clock_counts_down else elapsed)
        value = int(value)
        return f"{value // 60:02d}:{value % 60:02d}"

    def _xy(self, u: float, v: float) -> tuple[float, float]:
        x0, y0, x1, y1 = self.box
        return x0 + u * (x1 - x0), y0 + v * (y1 - y0)

    def players_at(self, t: int) -> list[list[tuple[float, float]]]:
        """(x, y) of every player of both teams; frozen during a foul, so the evidence holds still."""
        for event in self.events:
            if event.kind == "foul" and event.start <= t <= event.end:
                t = event.start
                break
        seconds = t / self.settings.fps
        jitter = 0.035
        attack = self.rules.offence[self.scene.offence]
        positions: list[list[tuple[float, float]]] = [[], []]
        for i, (u, v) in enumerate(attack):
            ph = self.scene.phases[0, i]
            positions[0].append((u + jitter * np.sin(0.9 * seconds + ph[0]), v + jitter * np.sin(0.7 * seconds + ph[1])))
        defence = self.rules.defence[self.scene.defence]
        for i in range(self.rules.players):
            ph = self.scene.phases[1, i]
            if defence is None:  # shadow attacker i, goal side
                au, av_ = positions[0][i]
                u = au + 0.045 if i > 0 or self.scene.sport != "soccer" else 0.95
                v = av_ + 0.02 * np.sin(1.3 * seconds + ph[2])
            else:
                u0, v0 = defence[i]
                u = u0 + jitter * np.sin(0.8 * seconds + ph[2])
                v = v0 + jitter * np.sin(0.6 * seconds + ph[3])
            positions[1].append((u, v))
        return [[self._xy(min(max(u, 0.01), 0.99), min(max(v, 0.02), 0.98)) for u, v in team] for team in positions]

    def possession(self, t: int) -> int:
        team = 0
        for event in self.events:
            if event.start > t:
                break
            if event.kind in ("out", "turnover", "foul"):
                team = 1 - event.team if event.kind in ("out", "foul") else event.team
        return team

    def state(self, t: int) -> dict:
        """Score and foul counts after what happened up to frame t (an event counts from its first frame)."""
        score, fouls = [0, 0], [0, 0]
        for event in self.events:
            if event.start <= t:
                if event.kind == "score":
                    score[event.team] += event.detail["points"]
                elif event.kind == "foul":
                    fouls[event.team] += 1
        return {"score": score, "fouls": fouls}

    def active(self, t: int) -> Event | None:
        for event in self.events:
            if event.start <= t <= event.end:
                return event
        return None

    def label(self, team: int, player: int) -> str:
        return f"{self.scene.teams[team][0]} #{self.scene.numbers[team][player]}"

    def banner(self, event: Event, t: int) -> tuple[str, str]:
        name = self.label(event.team, event.player).upper()
        other = self.scene.teams[1 - event.team][0].upper()
        if event.kind == "foul":
            foul = self.rules.fouls[event.detail["foul"]]
            return f"FOUL {name}: {foul.name.upper()}", foul.penalty.upper()
        if event.kind == "score":
            state = self.state(t)["score"]
            return f"{self.rules.goal_word}! {name}", f"{event.detail['points']} PT  NOW {state[0]}-{state[1]}"
        if event.kind == "out":
            return f"OUT OF BOUNDS, LAST TOUCH {name}", f"{self.rules.restarts[0].upper()} {other}"
        return f"TURNOVER: {name} WINS THE BALL", f"POSSESSION {self.scene.teams[event.team][0].upper()}"

    def ball_at(self, t: int, players: list[list[tuple[float, float]]]) -> tuple[float, float]:
        event = self.active(t)
        x0, y0, x1, y1 = self.box
        if event is not None and event.kind == "score":
            return self._goal_point(event.team)
        if event is not None and event.kind == "out":
            px, _ = players[event.team][event.player]
            return px, y0 - 6 if event.player % 2 else y1 + 6
        team = self.possession(t)
        slot_frames = self.settings.fps
        k = t // slot_frames
        frac = min(1.0, (t % slot_frames) / max(1, slot_frames // 2))
        a = players[team][self.scene.passes[k % len(self.scene.passes)]]
        b = players[team][self.scene.passes[(k + 1) % len(self.scene.passes)]]
        return a[0] + frac * (b[0] - a[0]) + 8, a[1] + frac * (b[1] - a[1])

    def _goal_point(self, team: int) -> tuple[float, float]:
        x0, y0, x1, y1 = self.box
        cy = (y0 + y1) / 2
        if self.scene.sport == "tennis":  # the winning shot lands deep in the other half
            return (x1 - 30, cy + 40) if team == 0 else (x0 + 30, cy + 40)
        if self.scene.sport == "basketball":
            return (x1 - 14, cy) if team == 0 else (x0 + 14, cy)
        return (x1 + 4, cy) if team == 0 else (x0 - 4, cy)

    def referee_at(self, t: int, players) -> tuple[float, float]:
        event = self.active(t)
        if event is not None and event.kind == "foul":
            px, py = players[event.team][event.player]
            return px + 26, py + (26 if py < 150 else -6)
        x0, y0, x1, y1 = self.box
        seconds = t / self.settings.fps
        return (x0 + x1) / 2 + 80 * np.sin(0.2 * seconds), y0 + 14 + 4 * np.sin(seconds)

    def frame(self, t: int) -> np.ndarray:
        players = self.players_at(t)
        event = self.active(t)
        state = self.state(t)
        (name_a, colour_a), (name_b, colour_b) = self.scene.teams
        scoreboard = (f"{name_a.upper()} {state['score'][0]} - {state['score'][1]} {name_b.upper()}   "
                      f"{self.clock(t)}   FOULS {state['fouls'][0]}-{state['fouls'][1]}")
        card = None
        if event is not None and event.kind == "foul":
            card = self.rules.fouls[event.detail["foul"]].card
        sprites = [
            (colour, self.scene.numbers[team][i], x, y)
            for team, colour in ((0, colour_a), (1, colour_b))
            for i, (x, y) in enumerate(players[team])
        ]
        return render.draw_frame(
            self.scene.sport,
            self.settings.size,
            players=sprites,
            ball=self.ball_at(t, players),
            referee=self.referee_at(t, players),
            scoreboard=scoreboard,
            highlight=players[event.team][event.player] if event is not None else None,
            card=card,
            banner=self.banner(event, t) if event is not None else None,
        )

    def player_box(self, event: Event) -> list[int]:
        """Pixels [x0, y0, x1, y1] of the ringed player during ``event`` (frozen for a foul)."""
        x, y = self.players_at(event.start)[event.team][event.player]
        r = render.PLAYER_RADIUS + render.RING
        return [int(round(x - r)), int(round(y - r)), int(round(x + r)), int(round(y + r))]


# ---------------------------------------------------------------------------------------------------
# Questions


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


# ---------------------------------------------------------------------------------------------------
# Writing clips and the dataset


def clip_name(sport: str, index: int) -> str:
    return f"{sport}_{index:05d}.mp4"


def write_clip(sim: Simulation, path: Path, *, threads: int = 1) -> Path:
    """Encode every frame of a simulation with PyAV as H.264 (yuv420p, CRF ``settings.crf``)."""
    settings = sim.settings
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream(
            "libx264", rate=Fraction(settings.fps), options={"preset": "veryfast", "crf": str(settings.crf)}
        )
        stream.width, stream.height = settings.size
        stream.pix_fmt = "yuv420p"
        stream.codec_context.gop_size = max(1, int(settings.gop_seconds * settings.fps))
        stream.codec_context.thread_count = threads
        for t in range(settings.frames):
            frame = av.VideoFrame.from_ndarray(sim.frame(t), format="rgb24")
            frame.pts = t
            frame.time_base = Fraction(1, settings.fps)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def _one_clip(seed: int, index: int, sport: str, settings: SimSettings, out: Path) -> tuple[list[dict], dict]:
    scene = make_scene(seed, index, sport, settings)
    sim = Simulation(scene, settings)
    name = clip_name(sport, index)
    write_clip(sim, out / "clips" / name)
    items = [item.model_dump(mode="json", exclude_none=True) for item in questions(sim, f"clips/{name}", seed)]
    meta = {
        "video": f"clips/{name}", "sport": sport, "split": scene.split, "teams": [t[0] for t in scene.teams],
        "numbers": scene.numbers, "offence": scene.offence, "defence": scene.defence,
        "events": [asdict(e) for e in sim.events],
    }
    return items, meta


def generate(
    out: str | os.PathLike[str],
    *,
    n: int,
    seed: int = 0,
    sports: tuple[str, ...] = SPORTS,
    settings: SimSettings = SimSettings(),
    workers: int | None = None,
    progress: bool = False,
) -> Path:
    """Write ``n`` clips under ``out/clips`` and their questions to ``out/qa.jsonl``; returns the JSONL path.

    Clip i is of sport ``sports[i % len(sports)]`` and of split ``SPLIT_PATTERN[i % 10]`` (60/20/20
    train/val/test by video). ``workers`` processes encode clips in parallel (default: the CPU count).
    ``out/scenes.jsonl`` keeps every clip's full ground truth (teams, tactics, events with frame windows).
    """
    unknown = [s for s in sports if s not in RULES]
    if unknown:
        raise ValueError(f"unknown sport(s) {', '.join(unknown)}; SportSim draws {', '.join(SPORTS)}")
    if n < 1:
        raise ValueError("n must be at least 1")
    out = Path(out)
    (out / "clips").mkdir(parents=True, exist_ok=True)
    jobs = [(seed, i, sports[i % len(sports)], settings, out) for i in range(n)]
    workers = max(1, min(workers or os.cpu_count() or 1, n))
    if workers == 1:
        results = map(_one_clip, *zip(*jobs))
    else:
        pool = ProcessPoolExecutor(workers)
        results = pool.map(_one_clip, *zip(*jobs))
    if progress:
        from tqdm import tqdm

        results = tqdm(results, total=n, desc="clips", unit="clip")
    try:
        done = list(results)
    finally:
        if workers > 1:
            pool.shutdown()
    qa = out / "qa.jsonl"
    with open(qa, "w") as items_file, open(out / "scenes.jsonl", "w") as scenes_file:
        for items, meta in done:
            for item in items:
                items_file.write(json.dumps(item) + "\n")
            scenes_file.write(json.dumps(meta) + "\n")
    (out / "sportsim.json").write_text(json.dumps({
        "generator": GENERATOR_VERSION, "n": n, "seed": seed, "sports": list(sports),
        "settings": asdict(settings),
    }, indent=2) + "\n")
    return qa
