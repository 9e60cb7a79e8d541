"""agent.records: the trajectory's video record is the tools' VideoInfo, field for field, not a second spelling."""
from __future__ import annotations

import dataclasses
import typing

import pytest
from pydantic import ValidationError

from sportlens.agent.records import VideoSummary
from sportlens.tools.video_info import VideoInfo

INFO = VideoInfo(path="clip.mp4", frames=90, fps=30.0, duration_s=3.0, width=320, height=180, codec="h264",
                 rotation=90, reader="pyav")


def test_video_summary_has_video_info_fields_in_order_with_their_types_and_descriptions():
    fields = dataclasses.fields(VideoInfo)
    assert list(VideoSummary.model_fields) == [f.name for f in fields]
    types = typing.get_type_hints(VideoInfo)
    assert {name: field.annotation for name, field in VideoSummary.model_fields.items()} == types
    assert all(field.is_required() for field in VideoSummary.model_fields.values())
    assert [VideoSummary.model_fields[f.name].description for f in fields] == [f.metadata["description"] for f in fields]


def test_video_summary_reads_a_video_info_and_refuses_unknown_fields():
    summary = VideoSummary.model_validate(INFO, from_attributes=True)
    assert summary.model_dump() == dataclasses.asdict(INFO)
    with pytest.raises(ValidationError, match="extra"):
        VideoSummary.model_validate({**dataclasses.asdict(INFO), "bitrate": 1})
