"""service.records_out: the API shows the agent's records less the server's storage path and the raw model output."""
from __future__ import annotations

import dataclasses
from datetime import datetime, timezone

from builders import example_trajectory

from sportlens.agent.loop import AgentEvent
from sportlens.agent.records import Result, Step, Trajectory, VideoSummary
from sportlens.service.app import create_app
from sportlens.service.records_out import (
    AgentEventOut,
    ResultOut,
    StepOut,
    TrajectoryOut,
    VideoInfoOut,
    VideoSummaryOut,
)
from sportlens.service.schemas import JobEvent, JobOut, Progress, QuestionRequest
from sportlens.tools.video_info import VideoInfo

VIDEO_ID = "a" * 64


def test_each_public_model_has_its_records_fields_less_the_withheld_ones():
    assert set(VideoSummaryOut.model_fields) == {f.name for f in dataclasses.fields(VideoInfo)} - {"path"}
    assert set(VideoSummaryOut.model_fields) == set(VideoSummary.model_fields) - {"path"}
    assert set(VideoInfoOut.model_fields) == {"frames", "fps", "duration_s", "width", "height", "codec"}
    assert set(StepOut.model_fields) == set(Step.model_fields) - {"raw_output"}
    assert set(TrajectoryOut.model_fields) == set(Trajectory.model_fields)
    assert set(ResultOut.model_fields) == set(Result.model_fields)
    assert set(AgentEventOut.model_fields) == set(AgentEvent.model_fields)
    assert VideoInfoOut.model_fields["fps"].description == VideoSummary.model_fields["fps"].description


def test_a_job_and_its_events_show_the_result_without_path_or_raw_output():
    trajectory = example_trajectory("A", tool=True).model_copy(
        update={"video": example_trajectory("A").video.model_copy(update={"path": "/srv/data/videos/ab/secret.mp4"})})
    job = JobOut(id="0" * 32, status="complete", video_id=VIDEO_ID, progress=Progress(max_turns=5),
                 request=QuestionRequest(video_id=VIDEO_ID, question="Which foul?"),
                 created_at=datetime.now(timezone.utc), result=Result(trajectory=trajectory, sport="soccer"))
    shown = job.model_dump_json()
    assert "secret.mp4" not in shown and "raw_output" not in shown and '"path"' not in shown
    public = job.result.trajectory
    assert public.video.model_dump() == trajectory.video.model_dump(exclude={"path"})
    assert [step.model_dump() for step in public.steps] == [step.model_dump(exclude={"raw_output"})
                                                           for step in trajectory.steps]
    assert job.result.sport == "soccer" and public.answer == trajectory.answer
    # a stored result (JSON of the full record) reads the same way
    assert ResultOut.model_validate_json(Result(trajectory=trajectory, sport="soccer").model_dump_json()) == job.result
    event = JobEvent(kind="step", attempt=1, agent=AgentEvent(kind="step", turn=1, step=trajectory.steps[0]))
    assert "raw_output" not in event.model_dump_json() and event.agent.step.thought == trajectory.steps[0].thought


def test_the_openapi_document_describes_the_public_models():
    schemas = create_app().openapi()["components"]["schemas"]
    job_result = schemas["JobOut"]["properties"]["result"]["anyOf"][0]["$ref"]
    assert job_result == "#/components/schemas/ResultOut"
    assert "raw_output" not in schemas["StepOut"]["properties"]
    assert "path" not in schemas["VideoSummaryOut"]["properties"]
    assert schemas["VideoSummaryOut"]["properties"]["rotation"]["description"].startswith("counter-clockwise")
    assert not {"Result", "Trajectory", "Step", "VideoSummary"} & set(schemas)
