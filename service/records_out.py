"""What the REST API shows of the agent's records: the same records, less what stays on the server.

A job's result keeps all that a client reads (the page replays the trajectory's frames and steps), and withholds
the video's ``path`` (where the server stores the file) and each step's ``raw_output`` (the model's text with its
special tokens). The models are built from agent/records.py field by field (names, types, defaults,
descriptions), so a field added to a record appears here unless it is withheld. They read a record's attributes
(``JobOut(result=result)`` takes an agent ``Result``) or its JSON, and drop what they do not name.
"""
from __future__ import annotations

from copy import copy
from typing import Any

from pydantic import BaseModel, ConfigDict, create_model

from sportlens.agent.loop import AgentEvent
from sportlens.agent.records import Result, Step, Trajectory, VideoSummary


def public(record: type[BaseModel], name: str, *, withhold: tuple[str, ...] = (),
           types: dict[str, Any] | None = None, doc: str | None = None) -> type[BaseModel]:
    """``record``'s fields less ``withhold``, with ``types`` replacing some fields' types (the public nested models)."""
    types = types or {}
    fields = {field: (types.get(field, info.annotation), copy(info))
              for field, info in record.model_fields.items() if field not in withhold}
    return create_model(name, __config__=ConfigDict(from_attributes=True), __doc__=doc or record.__doc__,
                        __module__=__name__, **fields)


VideoSummaryOut = public(VideoSummary, "VideoSummaryOut", withhold=("path",),
                         doc="The video the trajectory is about, as probed (where the server keeps it is withheld).")
# An upload's record has always shown these six fields, and the video store keeps records in that shape.
VideoInfoOut = public(VideoSummary, "VideoInfoOut", withhold=("path", "rotation", "reader"),
                      doc="What probing the upload found (the file's content decides, never its name or declared "
                          "type).")
StepOut = public(Step, "StepOut", withhold=("raw_output",),
                 doc="One assistant turn: what it thought, what it did, what it was shown in return, and what it cost "
                     "(its raw text is withheld).")
TrajectoryOut = public(Trajectory, "TrajectoryOut", types={"video": VideoSummaryOut, "steps": list[StepOut]})
ResultOut = public(Result, "ResultOut", types={"trajectory": TrajectoryOut})
AgentEventOut = public(AgentEvent, "AgentEventOut", types={"step": StepOut | None})
