"""Split conformal prediction sets around the agent's answers, with a guarantee that holds.

Calibration turns labelled results into one nonconformity score each; the quantile
q̂ = the ⌈(n+1)(1−α)⌉-th smallest score (∞ when that exceeds n) then gives sets that hold the true answer
with probability ≥ 1−α on exchangeable data. Methods:

- ``lac`` (closed questions): s = 1 − p(true option); set = {y : 1 − p(y) ≤ q̂}.
- ``aps`` (closed, randomised as in Romano et al. 2020): s = total probability of the options ranked above
  the true one + u·p(true), u uniform in [0, 1); set = {y : s(y) ≤ q̂}. Without u the last-ranked option always
  scores exactly 1, ties pile up at 1 and the sets over-cover far beyond 1−α. u is drawn from a hash of the
  question, so a result always gets the same set.
- ``sample`` (open): M sampled answers grouped by normalised match; an answer's score is 1 − its group's
  share of the samples; a question's score is the best score of a correct sample, +∞ when none is correct,
  so only α ≥ (n_∞+1)/(n+1) is reachable.

Option probabilities are the softmax of the teacher-forced log-probabilities the loop records
(``Trajectory.option_logprobs``). Mondrian calibration keeps one q̂ per group (sport × task by default)
where the group has at least ``MIN_GROUP_POINTS`` points, the pooled q̂ elsewhere.
"""
from __future__ import annotations

import hashlib
import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from sportlens.agent.loop import AgentSettings
from sportlens.agent.records import Result

Method = Literal["lac", "aps", "sample"]
METHODS: tuple[str, ...] = ("lac", "aps", "sample")
POOLED = "pooled"
# With n calibration points split conformal covers between 1−α and 1−α + 1/(n+1): a group of fewer than 50 points
# may over-cover by more than 2 points (a group of 8 at α = 0.2 covers 7/9 → 0.875 rounded up to its rank), so
# such a group is served the pooled q̂, which is valid and tighter.
MIN_GROUP_POINTS = 50


class CalibrationError(ValueError):
    """Calibration cannot be done or applied as asked; the message names the cause."""


def check_alpha(alpha: float) -> None:
    if not 0 < alpha < 1:
        raise CalibrationError(f"alpha must lie strictly between 0 and 1, not {alpha}")


def conformal_quantile(scores: Sequence[float], alpha: float) -> float:
    """The ⌈(n+1)(1−α)⌉-th smallest score; ∞ when that rank exceeds n (too few points for this α)."""
    check_alpha(alpha)
    n = len(scores)
    rank = math.ceil((n + 1) * (1 - alpha) - 1e-9)  # the tolerance keeps (n+1)(1−α) = 90.0000001 at 90
    return math.inf if rank > n else sorted(scores)[rank - 1]


def min_points(alpha: float) -> int:
    """The fewest calibration points for which q̂ is finite at this α."""
    return math.ceil(1 / alpha - 1e-9) - 1


def smallest_reachable_alpha(scores: Sequence[float]) -> float:
    """(n_∞+1)/(n+1): below this α, q̂ is infinite because n_∞ of the n scores are (no correct answer sampled)."""
    infinite = sum(1 for score in scores if math.isinf(score))
    return (infinite + 1) / (len(scores) + 1)


def softmax(logprobs: dict[str, float]) -> dict[str, float]:
    top = max(logprobs.values())
    weights = {key: math.exp(value - top) for key, value in logprobs.items()}
    total = sum(weights.values())
    return {key: weight / total for key, weight in weights.items()}


def _ranked(probabilities: dict[str, float]) -> list[str]:
    return sorted(probabilities, key=lambda key: (-probabilities[key], key))  # ties broken by letter


def aps_scores(probabilities: dict[str, float], u: float) -> dict[str, float]:
    """Each option's randomised APS score: the probability ranked above it, high to low, plus u times its own."""
    scores, above = {}, 0.0
    for key in _ranked(probabilities):
        scores[key] = above + u * probabilities[key]
        above += probabilities[key]
    return scores


def tie_breaker(result: Result) -> float:
    """The u of randomised APS: uniform in [0, 1), fixed by the question and the video."""
    identity = f"{result.item_id}|{result.trajectory.question}|{result.trajectory.video.path}".encode()
    return int.from_bytes(hashlib.sha256(identity).digest()[:8], "big") / 2**64


def option_scores(result: Result, method: Method) -> dict[str, float]:
    """Every option's nonconformity for a closed-question result with recorded option scores."""
    if not result.trajectory.option_logprobs:
        raise CalibrationError(
            f"result {_name(result)} has no option scores; the {method} method needs closed questions run with "
            "score_options"
        )
    probabilities = softmax(result.trajectory.option_logprobs)
    if method == "lac":
        return {key: 1 - p for key, p in probabilities.items()}
    if method == "aps":
        return aps_scores(probabilities, tie_breaker(result))
    raise CalibrationError(f"method {method!r} does not score options; use lac or aps")


def normalise_answer(text: str) -> str:
    """Lower case, punctuation and articles dropped, spaces collapsed: "The Red team." == "red team"."""
    words = re.sub(r"[^\w\s]", " ", text.lower()).split()
    return " ".join(word for word in words if word not in {"a", "an", "the"})


def sample_groups(samples: Sequence[str]) -> dict[str, float]:
    """Each normalised answer among the samples and its nonconformity, 1 − its share of the samples."""
    counts = Counter(normalise_answer(sample) for sample in samples)
    return {answer: 1 - count / len(samples) for answer, count in counts.items()}


def calibration_score(result: Result, method: Method) -> float:
    """One labelled result's nonconformity score under ``method``."""
    if result.label is None:
        raise CalibrationError(f"result {_name(result)} has no label to calibrate against")
    trajectory = result.trajectory
    if method == "sample":
        if not trajectory.answer_samples:
            raise CalibrationError(
                f"result {_name(result)} has no answer samples; the sample method needs runs with answer_samples > 0"
            )
        groups = sample_groups(trajectory.answer_samples)
        return groups.get(normalise_answer(result.label), math.inf)
    scores = option_scores(result, method)
    if result.label not in scores:
        raise CalibrationError(f"result {_name(result)}: label {result.label!r} is not one of its options")
    return scores[result.label]


def group_key(result: Result, by: Sequence[str]) -> str:
    """The Mondrian group of a result, e.g. "soccer|foul_type" for by = (sport, task)."""
    return "|".join(str(getattr(result, field) or "-") for field in by)


class CalibrationArtifact(BaseModel):
    """What calibration produced, enough to build sets later and to refuse the wrong model.

    ``scores`` keeps every calibration score by group, so ``at_alpha`` can serve another α without the data.
    """

    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="strings")
    method: Method
    alpha: float
    by: list[str]
    pooled_quantile: float
    n: int
    quantiles: dict[str, float]
    counts: dict[str, int]
    infinite_scores: int
    smallest_reachable_alpha: float
    min_group_points: int = MIN_GROUP_POINTS
    scores: dict[str, list[float]]
    data_sha256: str
    model: str
    model_sha256: str | None = None

    def at_alpha(self, alpha: float) -> CalibrationArtifact:
        """The same calibration at another α (the scores are kept, so any reachable α can be served)."""
        if alpha == self.alpha:
            return self
        return _with_quantiles(
            alpha=alpha,
            by=self.by,
            scores=self.scores,
            min_group_points=self.min_group_points,
            method=self.method,
            data_sha256=self.data_sha256,
            model=self.model,
            model_sha256=self.model_sha256,
        )

    def quantile_for(self, result: Result) -> tuple[float, str]:
        """q̂ for this result's group when that group was calibrated on its own, else the pooled q̂."""
        key = group_key(result, self.by)
        if key in self.quantiles:
            return self.quantiles[key], key
        return self.pooled_quantile, POOLED

    def check_model(self, model: str, model_sha256: str | None = None) -> None:
        if model != self.model or (model_sha256 and self.model_sha256 and model_sha256 != self.model_sha256):
            raise CalibrationError(
                f"this calibration was made for model {self.model!r}"
                + (f" (sha256 {self.model_sha256[:12]})" if self.model_sha256 else "")
                + f", not {model!r}: calibrate again on results of this model"
            )

    def save(self, path: Path) -> None:
        path.write_text(self.model_dump_json(indent=2))

    @classmethod
    def load(cls, path: Path) -> CalibrationArtifact:
        try:
            return cls.model_validate_json(Path(path).read_text())
        except FileNotFoundError as error:
            raise CalibrationError(f"no calibration artifact at {path}") from error
        except ValidationError as error:
            problem = error.errors()[0]
            where = ".".join(str(part) for part in problem["loc"]) or "the file"
            raise CalibrationError(f"{path} is not a calibration artifact ({where}: {problem['msg']})") from error


def calibrate(
    results: Sequence[Result],
    *,
    alpha: float,
    method: Method,
    by: Sequence[str] = ("sport", "task"),
    min_group_points: int = MIN_GROUP_POINTS,
    model_sha256: str | None = None,
) -> CalibrationArtifact:
    """Split-conformal calibration over labelled results of one model; groups under min_group_points use the pool."""
    check_alpha(alpha)
    if min_group_points < 1:
        raise CalibrationError(f"a Mondrian group needs at least 1 point, not {min_group_points}")
    if method not in METHODS:
        raise CalibrationError(f"unknown method {method!r}; use one of {', '.join(METHODS)}")
    if not results:
        raise CalibrationError("the calibration set is empty")
    models = {result.trajectory.model for result in results}
    if len(models) > 1:
        raise CalibrationError(f"the calibration results come from several models: {', '.join(sorted(models))}")
    grouped: dict[str, list[float]] = {}
    for result in results:
        grouped.setdefault(group_key(result, by), []).append(calibration_score(result, method))
    return _with_quantiles(
        method=method,
        alpha=alpha,
        by=list(by),
        scores={key: sorted(values) for key, values in grouped.items()},
        min_group_points=min_group_points,
        data_sha256=results_sha256(results),
        model=models.pop(),
        model_sha256=model_sha256,
    )


def _with_quantiles(
    *, alpha: float, scores: dict[str, list[float]], by: list[str], min_group_points: int, **fields
) -> CalibrationArtifact:
    """The artifact at ``alpha``: the pooled q̂ (refused when infinite) and a finite q̂ for each big enough group."""
    check_alpha(alpha)
    pooled_scores = [score for values in scores.values() for score in values]
    n = len(pooled_scores)
    infinite = sum(1 for score in pooled_scores if math.isinf(score))
    reachable = smallest_reachable_alpha(pooled_scores)
    pooled = conformal_quantile(pooled_scores, alpha)
    if math.isinf(pooled):
        needed = f"at least {min_points(alpha)} points" if n < min_points(alpha) else f"α ≥ {reachable:.3f}"
        raise CalibrationError(
            f"{n} calibration points ({infinite} with no correct answer) are too few for α = {alpha}: "
            f"q̂ would be infinite; this needs {needed}"
        )
    quantiles = {
        key: conformal_quantile(values, alpha) for key, values in scores.items() if len(values) >= min_group_points
    } if by else {}
    return CalibrationArtifact(
        alpha=alpha,
        by=by,
        pooled_quantile=pooled,
        n=n,
        quantiles={key: q for key, q in quantiles.items() if not math.isinf(q)},
        counts={key: len(values) for key, values in scores.items()},
        infinite_scores=infinite,
        smallest_reachable_alpha=reachable,
        min_group_points=min_group_points,
        scores=scores,
        **fields,
    )


def prediction_set(result: Result, quantile: float, method: Method) -> list[str]:
    """The answers whose nonconformity is at most q̂."""
    trajectory = result.trajectory
    if method == "sample":
        if not trajectory.answer_samples:
            raise CalibrationError(f"result {_name(result)} has no answer samples to build a set from")
        return sorted(answer for answer, score in sample_groups(trajectory.answer_samples).items() if score <= quantile)
    return sorted(key for key, score in option_scores(result, method).items() if score <= quantile)


def apply_calibration(result: Result, artifact: CalibrationArtifact, *, selective: bool = False) -> Result:
    """The result with its prediction set; ``abstain`` when the caller wants selective answers and the set is not one answer."""
    artifact.check_model(result.trajectory.model)
    quantile, group = artifact.quantile_for(result)
    answers = prediction_set(result, quantile, artifact.method)
    return result.model_copy(
        update={
            "prediction_set": answers,
            "alpha": artifact.alpha,
            "coverage_target": 1 - artifact.alpha,
            "calibration_group": group,
            "set_size": len(answers),
            "abstain": selective and len(answers) != 1,
        }
    )


def results_sha256(results: Sequence[Result]) -> str:
    digest = hashlib.sha256()
    for result in results:
        digest.update(result.model_dump_json().encode())
    return digest.hexdigest()


def model_sha256(model_dir: Path) -> str:
    """A checkpoint's identity: the hash of its config and weight files."""
    digest = hashlib.sha256()
    for path in sorted(Path(model_dir).glob("*")):
        if path.name == "config.json" or path.suffix == ".safetensors":
            digest.update(path.name.encode())
            with path.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()


def _name(result: Result) -> str:
    return result.item_id or repr(result.trajectory.question[:40])


def calibrated_settings(settings: AgentSettings, artifact: CalibrationArtifact | None, *, closed: bool,
                        samples: int) -> AgentSettings:
    """The loop's settings with what a calibration needs from each answer: every option's score after the answer
    (lac, aps; closed questions only) or ``samples`` more sampled answers (sample). Without an artifact, unchanged.

    `sportlens ask`, `sportlens bench` and the service's jobs answer with a calibration; this is the one place that
    says what it asks of the loop.
    """
    if artifact is None:
        return settings
    if artifact.method == "sample":
        return replace(settings, answer_samples=samples)
    return replace(settings, score_options=closed)
