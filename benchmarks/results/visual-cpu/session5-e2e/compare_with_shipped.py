"""The model `full_run --profile visual-cpu` trained from random weights in one run against the shipped model, on the
same test questions (both runs synthesise seed 0 identically, so the questions and clips are the same): accuracy per
question kind, frames, tool-call rate, and the paired split of questions only one of them got right (all, event
questions, each kind).

    python benchmarks/results/visual-cpu/session5-e2e/compare_with_shipped.py E2E_RESULTS [SHIPPED_RESULTS [LABEL LABEL]]

Run from the repository root; SHIPPED_RESULTS defaults to session 4's 400 test answers of the shipped model; the
labels name the two rows (session 6 compares the one run before and after its anneal phase with them).
"""
import json
import sys
from collections import defaultdict

from sportlens.benchmarks.evidence import sign_test_p

SHIPPED = "benchmarks/results/visual-cpu/session4-evidence/test-agent/results.jsonl"


def answers(path: str) -> dict[str, dict]:
    """item id → the agent run's record (with its result) of a `sportlens bench` results.jsonl."""
    rows = (json.loads(line) for line in open(path))
    return {r["item_id"]: r for r in rows if r.get("run", "agent") == "agent" and r.get("result")}


def correct(record: dict) -> bool:
    """Whether the agent's answer is the item's reference letter."""
    return record["result"]["trajectory"]["answer"] == record["reference"]


def summary(records: list[dict]) -> str:
    right = lambda rs: sum(map(correct, rs))
    event = [r for r in records if r["event"]]
    by_kind = defaultdict(list)
    for r in records:
        by_kind[r["task"]].append(r)
    tool = sum(any(s["action"] == "choose_frames" for s in r["result"]["trajectory"]["steps"]) for r in event)
    frames = sum(r["result"]["trajectory"]["frames_used"] for r in event) / len(event)
    kinds = " | ".join(f"{100 * right(by_kind[k]) / len(by_kind[k]):.1f}" for k in sorted(by_kind))
    return (f"{100 * right(records) / len(records):.1f} | {100 * right(event) / len(event):.1f} ({len(event)}) | "
            f"{kinds} | {frames:.2f} | {tool / len(event):.3f}")


def main() -> None:
    e2e, shipped = answers(sys.argv[1]), answers(sys.argv[2] if len(sys.argv) > 2 else SHIPPED)
    first, second = sys.argv[3:5] if len(sys.argv) > 4 else ("one run from random weights",
                                                               "shipped (four sessions of resumed runs)")
    common = sorted(set(e2e) & set(shipped))
    kinds = sorted({e2e[i]["task"] for i in common})
    print(f"{len(common)} test questions answered by both\n")
    print(f"| model | overall | event questions | {' | '.join(kinds)} | frames (event q.) | tool-call rate (event q.) |")
    print("|---" * (5 + len(kinds)) + "|")
    print(f"| {first} | {summary([e2e[i] for i in common])} |")
    print(f"| {second} | {summary([shipped[i] for i in common])} |")
    print()
    groups = {"all": common, "event questions": [i for i in common if e2e[i]["event"]]}
    groups |= {kind: [i for i in common if e2e[i]["task"] == kind] for kind in kinds}
    for name, ids in groups.items():
        only_e2e = sum(correct(e2e[i]) and not correct(shipped[i]) for i in ids)
        only_shipped = sum(correct(shipped[i]) and not correct(e2e[i]) for i in ids)
        print(f"paired, {name} ({len(ids)}): {only_e2e} questions only the first got right, {only_shipped} only the "
              f"second; exact sign test p = {sign_test_p(only_e2e, only_shipped):.3g}")


if __name__ == "__main__":
    main()
