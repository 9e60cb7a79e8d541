"""SportSim's three sports: team colours, players per side, fouls with their penalties, restarts and tactics.

Each tactic is a formation: anchor positions (u, v) on the pitch, u toward the goal attacked, that a team's
players keep for the whole clip (``sportsim_simulation.py`` moves them round those anchors).
"""
from __future__ import annotations

from dataclasses import dataclass

SPORTS = ("soccer", "basketball", "tennis")
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
