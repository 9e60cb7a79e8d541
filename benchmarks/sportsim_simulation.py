"""A SportSim clip as a simulation: its random scene (``make_scene``: teams, tactics, events, split) and where
everything is at frame t (``Simulation``: players, ball, referee, scoreboard, banner), drawn by sportsim_render.

8 frames spread over a 60-s clip are 7.5 s apart; an event lasts 1.5 s, so they show it one time in five.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sportlens.benchmarks import sportsim_render as render
from sportlens.benchmarks.sportsim_rules import RULES, TEAM_PAIRS

EVENT_SECONDS = 1.5
SPLIT_PATTERN = ("test", "train", "train", "val", "train", "train", "train", "test", "train", "val")


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
