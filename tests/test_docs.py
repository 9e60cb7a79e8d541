"""docs/records.md stays current with the code: each record's table names exactly the fields the model has."""
import re
from pathlib import Path

import pytest

from sportlens.agent.conformal import CalibrationArtifact
from sportlens.agent.records import QAItem, Result, Trajectory

RECORDS = Path(__file__).resolve().parents[1] / "docs" / "records.md"


def documented_fields(heading: str) -> set[str]:
    """The backticked names in the first column of the table under the section whose heading starts so."""
    section = next(part for part in RECORDS.read_text().split("\n## ") if part.startswith(heading))
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    return {name for row in rows for name in re.findall(r"`([a-z_0-9]+)`", row.split("|")[1])}


@pytest.mark.parametrize("heading, model", [("QA item", QAItem), ("Trajectory", Trajectory), ("Result", Result),
                                            ("CalibrationArtifact", CalibrationArtifact)])
def test_each_record_table_names_every_field_and_only_those(heading, model):
    assert documented_fields(heading) == set(model.model_fields)
