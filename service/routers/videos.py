"""POST /v1/videos (multipart upload, streamed to disk), GET /v1/videos/{id} and DELETE /v1/videos/{id}."""
from __future__ import annotations

from fastapi import APIRouter, HTTPException, Path, Request, Response

from sportlens.service.auth import Caller
from sportlens.service.deps import Videos
from sportlens.service.schemas import V1_PROBLEMS, Problem, VideoOut
from sportlens.service.storage import UploadRejected, VideoInUse

router = APIRouter(prefix="/v1/videos", tags=["videos"], responses=V1_PROBLEMS)
VideoId = Path(pattern=r"^[0-9a-f]{64}$", description="sha256 of the video file")

_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {"multipart/form-data": {"schema": {
            "type": "object", "required": ["file"],
            "properties": {"file": {"type": "string", "format": "binary", "description": "the video file"}},
        }}},
    }
}


@router.post("", status_code=201, response_model=VideoOut, openapi_extra=_UPLOAD_BODY,
             responses={400: {"model": Problem}, 413: {"model": Problem}, 415: {"model": Problem},
                        422: {"model": Problem}, 507: {"model": Problem, "description": "the video store is full"}})
async def upload_video(request: Request, owner: Caller, videos: Videos) -> VideoOut:
    """Upload a video as the multipart field ``file``. It is streamed to disk, probed (its content decides
    whether it is a video, not its name), and stored under the sha256 of its bytes, which is its id.
    413 past the upload limit or this key's storage quota; 507 past the service's quota or its free disk."""
    declared = request.headers.get("content-length", "")
    try:
        return await videos.receive(request.headers.get("content-type", ""), request.stream(), owner,
                                    int(declared) if declared.isdigit() else 0)
    except UploadRejected as rejected:
        raise HTTPException(rejected.status, rejected.detail) from None


@router.get("/{video_id}", response_model=VideoOut, responses={404: {"model": Problem}})
async def get_video(owner: Caller, videos: Videos, video_id: str = VideoId) -> VideoOut:
    """A stored video's record: size and probed info."""
    record = await videos.get(video_id, owner)
    if record is None:
        raise HTTPException(404, f"no video {video_id} for this key; upload it with POST /v1/videos")
    return record


@router.delete("/{video_id}", status_code=204, response_class=Response,
               responses={404: {"model": Problem}, 409: {"model": Problem}})
async def delete_video(owner: Caller, videos: Videos, video_id: str = VideoId) -> Response:
    """Delete this key's video. Other keys that uploaded the same bytes keep it; the file is removed when no key
    has it any more. 409 while a queued or running job of this key needs it (cancel the job, or wait)."""
    try:
        deleted = await videos.delete(video_id, owner)
    except VideoInUse as in_use:
        raise HTTPException(409, f"video {video_id} is in use by jobs {', '.join(in_use.job_ids)} that have not "
                                 f"finished; cancel them (DELETE /v1/jobs/{{id}}) or wait for them") from None
    if not deleted:
        raise HTTPException(404, f"no video {video_id} for this key; upload it with POST /v1/videos")
    return Response(status_code=204)
