"""The evidence table: rows compared on the questions all of them answered, event types, and the verdict."""
from builders import make_result

from sportlens.benchmarks.evidence import Comparison, Row, build, markdown, sign_test_p
from sportlens.benchmarks.runner import RESULTS_FILE, BenchRecord
from sportlens.benchmarks.scoring import Score

TASKS = ["foul_type", "scorer", "restart", "offensive_tactic"]  # three event questions, one about the whole clip
KIND = {"foul_type": "foul", "scorer": "score", "restart": "out", "offensive_tactic": "tactic"}


def write_row(folder, run, right, *, frames, skip=()):
    """Results for questions 0..7 (task by index); ``right`` lists the ones answered correctly."""
    folder.mkdir(parents=True)
    lines = []
    for index in range(8):
        if index in skip:
            continue
        result = make_result(index=index)
        trajectory = result.trajectory.model_copy(update={"frames_used": frames})
        task = TASKS[index % 4]
        lines.append(BenchRecord(
            run=run, item_id=f"q{index}", sport="soccer", task=task, dimension="fine-grained recognition",
            answer_type="choice", event=task != "offensive_tactic", reference="A",
            result=result.model_copy(update={"trajectory": trajectory}),
            score=Score(correct=index in right, method="match"),
        ).model_dump_json())
    (folder / RESULTS_FILE).write_text("\n".join(lines) + "\n")
    return folder


def test_rows_are_compared_on_common_questions_and_the_verdict_follows_the_numbers(tmp_path):
    rows = [
        Row("no-tool", "uniform-16", write_row(tmp_path / "n", "uniform16", {0, 3}, frames=16), "uniform16"),
        Row("base", "untrained", write_row(tmp_path / "b", "agent", {3}, frames=8, skip={7})),
        Row("trained", "trained", write_row(tmp_path / "t", "agent", {0, 1, 2, 4, 5}, frames=12)),
    ]
    table = build(rows, event_type=lambda r: KIND[r.task], comparisons=[Comparison("trained", "base", "no-tool")],
                  dimensions=["fine-grained recognition", "live commentary & reporting"])
    assert table["questions"] == 7 and table["event_questions"] == 6  # q7 is missing from the untrained row
    trained = table["rows"]["trained"]
    assert trained["event_accuracy"]["accuracy"] == round(100 * 5 / 6, 2)
    assert trained["by_event_type"]["foul"] == {"accuracy": 100.0, "scored": 2, "n": 2}
    assert trained["by_dimension"]["live commentary & reporting"]["n"] == 0
    assert trained["avg_frames_event"] == 12
    (verdict,) = table["verdicts"]
    assert verdict["met"] and verdict["beats_untrained"] and verdict["beats_no_tool"] and verdict["fewer_frames"]
    assert verdict["paired_with_no_tool"] == {"agent_only_right": 4, "no_tool_only_right": 0,
                                              "sign_test_p": 0.125}
    text = markdown(table, "T")
    assert "| trained | 71.4 (7) | – |" in text and "**trained: criterion met**" in text
    assert "exact sign test p = 0.125." in text


def test_too_many_frames_fails_the_verdict(tmp_path):
    rows = [
        Row("no-tool", "uniform-16", write_row(tmp_path / "n", "uniform16", set(), frames=16), "uniform16"),
        Row("base", "untrained", write_row(tmp_path / "b", "agent", set(), frames=8)),
        Row("trained", "trained", write_row(tmp_path / "t", "agent", {0, 1}, frames=16)),
    ]
    (verdict,) = build(rows, event_type=lambda r: KIND[r.task],
                       comparisons=[Comparison("trained", "base", "no-tool")])["verdicts"]
    assert verdict["beats_untrained"] and verdict["beats_no_tool"] and not verdict["fewer_frames"] and not verdict["met"]


def test_sign_test():
    assert sign_test_p(0, 0) == 1.0
    assert round(sign_test_p(9, 1), 4) == 0.0215
    assert sign_test_p(3, 3) == 1.0
    assert 1e-34 < sign_test_p(156, 11) < 1e-32  # stated to 3 figures in a table, not rounded to "p = 0"


def test_the_command_line_builds_the_table_from_bench_folders_and_refuses_a_row_without_results(tmp_path, capsys):
    from sportlens.benchmarks.evidence import main

    write_row(tmp_path / "n", "uniform16", {0, 3}, frames=16)
    write_row(tmp_path / "b", "agent", {3}, frames=8)
    write_row(tmp_path / "t", "agent", {0, 1, 2, 4, 5}, frames=12)
    assert main(["--row", f"no-tool=uniform-16={tmp_path / 'n'}=uniform16", "--row", f"base=untrained={tmp_path / 'b'}",
                 "--row", f"trained=trained={tmp_path / 't'}", "--compare", "trained,base,no-tool",
                 "--out", str(tmp_path / "out")]) == 0
    text = (tmp_path / "out" / "evidence.md").read_text()
    assert "**trained: criterion met**" in text and (tmp_path / "out" / "evidence.png").is_file()
    assert main(["--row", f"x=X={tmp_path / 'missing'}", "--out", str(tmp_path / "o2")]) == 2
    assert "--row" in capsys.readouterr().err
