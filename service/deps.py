"""Shared objects as FastAPI dependencies: the job store and the video store, built once in the app's lifespan."""
from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from sportlens.service.jobs import JobStore
from sportlens.service.storage import VideoStore


def _jobs(request: Request) -> JobStore:
    return request.app.state.jobs


def _videos(request: Request) -> VideoStore:
    return request.app.state.videos


Jobs = Annotated[JobStore, Depends(_jobs)]
Videos = Annotated[VideoStore, Depends(_videos)]
