"""tools.video: what a Video promises, checked on clips whose every frame shows its own index."""
from __future__ import annotations

import dataclasses
import random
import threading
import time
import typing
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import av
import numpy as np
import pytest

from sportlens.tools import decoding_threads, pyav_reader
from sportlens.tools import video as video_module
from sportlens.tools.file_checks import check_resolution
from sportlens.tools.frames import Frame, uniform_indices
from sportlens.tools.reader import Reader, ReaderCannot
from sportlens.tools.testclips import read_index, write_audio_only, write_index_clip, write_truncated
from sportlens.tools.video import (
    CorruptVideo,
    DecodeTimeout,
    NotAVideo,
    UnsupportedVideo,
    Video,
    VideoError,
    VideoInfo,
    VideoNotFound,
    probe,
)
from sportlens.tools.video_info import STREAM_FIELDS

Clip = Callable[[str], Path]
FRAMES = 150  # the length of the codec clips in conftest.CLIPS: 5 s at 30 fps

CODEC_CLIPS = [
    "h264_gop1.mp4",
    "h264_gop12.mp4",
    "h264_gop60_bframes.mp4",
    "h264_10bit.mp4",
    "h264.mkv",
    "hevc_open_gop.mp4",
    "vp9.webm",
    "av1.mkv",
    "mpeg4_bframes.mp4",
]
DECORD_CANNOT_OPEN = {"av1.mkv"}
# decord 0.6 hands back a later frame after seeking in these (see test_decord_returns_a_later_frame...).
DECORD_NOT_EXACT = {"hevc_open_gop.mp4", "mpeg4_bframes.mp4"}


def exactness_cases() -> list:
    return [
        pytest.param(name, reader, id=f"{name}-{reader}")
        for name in CODEC_CLIPS
        for reader in ("auto", "pyav", "decord")
        if not (reader == "decord" and name in DECORD_CANNOT_OPEN | DECORD_NOT_EXACT)
    ]


def shown_indices(frames: list[Frame]) -> list[int]:
    """The index each returned picture shows, read from its pixels."""
    return [read_index(frame.image) for frame in frames]


def assert_exact(frames: list[Frame], asked: list[int]) -> None:
    assert [frame.index for frame in frames] == asked
    assert shown_indices(frames) == asked


# --- frame exactness ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name,reader", exactness_cases())
def test_uniform_choose_frames_returns_exactly_the_requested_frames(clip: Clip, name: str, reader: str) -> None:
    with Video(clip(name), reader=reader) as video:
        frames = video.choose_frames(0, FRAMES - 1, 8)
    assert_exact(frames, uniform_indices(0, FRAMES - 1, 8))


@pytest.mark.parametrize("name,reader", exactness_cases())
def test_windowed_choose_frames_in_any_order_of_calls_returns_exactly_the_requested_frames(
    clip: Clip, name: str, reader: str
) -> None:
    # The agent's pattern: several windows on one open video, forwards, backwards, repeated.
    windows = [(40, 70), (10, 25), (100, FRAMES - 1), (60, 75), (40, 70), (0, 7)]
    with Video(clip(name), reader=reader) as video:
        for start, end in windows:
            assert_exact(video.choose_frames(start, end, 8), uniform_indices(start, end, 8))


@pytest.mark.parametrize("name,reader", exactness_cases())
def test_frames_at_returns_exactly_the_requested_frames_in_the_order_asked(clip: Clip, name: str, reader: str) -> None:
    rng = random.Random(name)
    requests = [
        rng.choices(range(FRAMES), k=20),  # random, unsorted, with repeats
        [29, 30, 31, 59, 60, 61, 89, 90],  # around keyframes
        [FRAMES - 1, 0, FRAMES - 1],
        [61],  # just after the previous request's decoder position
    ]
    with Video(clip(name), reader=reader) as video:
        for asked in requests:
            assert_exact(video.frames_at(asked), asked)


@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("name", ["h264_gop60_bframes.mp4", "hevc_open_gop.mp4", "mpeg4_bframes.mp4", "vp9.webm"])
def test_frames_are_exact_with_any_number_of_decoders(clip: Clip, name: str, threads: int) -> None:
    asked = [3, 60, 61, 62, 31, 149, 0, 90]
    with Video(clip(name), reader="pyav", threads=threads) as video:
        assert_exact(video.frames_at(asked), asked)
        assert_exact(video.choose_frames(40, 70, 8), uniform_indices(40, 70, 8))


def record_decoder_threads(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[int]]:
    """The frame indices each decoder thread is asked for, filled in as requests run."""
    decoded_on: dict[str, list[int]] = {}
    read = pyav_reader.Decoder.read

    def recording_read(decoder, indices, size, targets):
        decoded_on.setdefault(threading.current_thread().name, []).extend(indices)
        return read(decoder, indices, size, targets)

    monkeypatch.setattr(pyav_reader.Decoder, "read", recording_read)
    return decoded_on


def test_two_decoders_share_a_request_over_two_gops_even_when_the_second_holds_more_work(
    clip: Clip, monkeypatch: pytest.MonkeyPatch
) -> None:
    decoded_on = record_decoder_threads(monkeypatch)
    asked = [5, 10, 17, 23]  # keyframes every 12 frames: decoding 17 and 23 takes more packets than 5 and 10
    with Video(clip("h264_gop12.mp4"), reader="pyav", threads=2) as video:
        assert_exact(video.frames_at(asked), asked)
    assert sorted(decoded_on.values()) == [[5, 10], [17, 23]]


def test_two_decoders_balance_gops_of_growing_work_rather_than_split_them_into_runs(
    clip: Clip, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The agent's overview: one frame per GOP, each further from its keyframe than the last. Runs of
    neighbours would give one decoder GOPs 1–2 (the cheap ones) and the other GOPs 3–4."""
    decoded_on = record_decoder_threads(monkeypatch)
    asked = [1, 12 + 3, 24 + 7, 36 + 11]  # keyframes every 12 frames
    with Video(clip("h264_gop12.mp4"), reader="pyav", threads=2) as video:
        assert_exact(video.frames_at(asked), asked)
    assert sorted(decoded_on.values()) == [[1, 47], [15, 31]]


def test_frames_are_labelled_with_their_index_and_presentation_time(clip: Clip) -> None:
    with Video(clip("h264.mkv")) as video:  # Matroska keeps times in milliseconds
        frames = video.frames_at([0, 1, 45, FRAMES - 1])
    assert [frame.seconds for frame in frames] == pytest.approx([0, 1 / 30, 1.5, (FRAMES - 1) / 30], abs=1e-3)
    assert frames[2].label() == "frame 45 (1.5s):"


def test_frames_at_with_no_indices_returns_nothing(clip: Clip) -> None:
    with Video(clip("h264_gop12.mp4")) as video:
        assert video.frames_at([]) == []


# --- readers: auto prefers PyAV and falls back -------------------------------------------------------


def test_auto_reads_with_pyav(clip: Clip) -> None:
    with Video(clip("h264_gop12.mp4")) as video:
        assert video.info.reader == "pyav"


def test_auto_reads_files_that_decord_cannot_open(clip: Clip) -> None:
    with pytest.raises(UnsupportedVideo, match="decord cannot open it.*reader='pyav'"):
        Video(clip("av1.mkv"), reader="decord")
    with Video(clip("av1.mkv")) as video:
        assert video.info.reader == "pyav"
        assert_exact(video.choose_frames(0, FRAMES - 1, 8), uniform_indices(0, FRAMES - 1, 8))


class PyAVRefusesFake:
    """Stands in for the PyAV reader on a file it cannot handle (none of our test clips is one)."""

    def __init__(self, path: str, threads: int):
        raise ReaderCannot(UnsupportedVideo(f"{path}: PyAV cannot handle it"))


class PyAVLosesFramesFake(pyav_reader.PyAVReader):
    """The real PyAV reader, except that seeking never finds the frame asked for."""

    def read(self, indices: list[int], size: tuple[int, int]) -> list[Frame]:
        raise ReaderCannot(CorruptVideo(f"{self.path}: frame {indices[0]} could not be found"))


def test_auto_falls_back_to_decord_when_pyav_cannot_open_a_file(clip: Clip, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(video_module._READERS, "pyav", PyAVRefusesFake)
    with Video(clip("h264_gop12.mp4")) as video:
        assert video.info.reader == "decord"
        assert_exact(video.frames_at([5, 77]), [5, 77])


def test_auto_falls_back_to_decord_when_pyav_cannot_seek_in_a_file(clip: Clip, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(video_module._READERS, "pyav", PyAVLosesFramesFake)
    with Video(clip("h264_gop12.mp4")) as video:
        assert video.info.reader == "pyav"
        assert_exact(video.frames_at([5, 77]), [5, 77])
        assert video.info.reader == "decord"


def test_a_reader_named_explicitly_does_not_fall_back(clip: Clip, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(video_module._READERS, "pyav", PyAVRefusesFake)
    with pytest.raises(UnsupportedVideo, match="PyAV cannot handle it"):
        Video(clip("h264_gop12.mp4"), reader="pyav")


class LateSeekingContainerFake:
    """The real container, except that its first seek lands one GOP after the keyframe asked for, as a
    demuxer with a sloppy index can."""

    def __init__(self, real: av.container.InputContainer, gop: int):
        self.real, self.gop, self.seeks = real, gop, []

    def seek(self, offset: int, **kwargs: object) -> None:
        self.seeks.append(offset)
        late = self.gop * 512 if len(self.seeks) == 1 else 0  # 512 ticks a frame in these MP4s
        self.real.seek(offset + late, **kwargs)

    def __getattr__(self, name: str) -> object:
        return getattr(self.real, name)


def test_a_seek_that_lands_past_the_keyframe_is_retried_from_an_earlier_one(clip: Clip) -> None:
    with Video(clip("h264_gop12.mp4"), reader="pyav", threads=1) as video:
        decoder = video._reader._decoders[0]
        decoder._container = container = LateSeekingContainerFake(decoder._container, gop=12)
        assert_exact(video.frames_at([30]), [30])
    assert container.seeks == [24 * 512, 12 * 512]


@pytest.mark.parametrize("name", sorted(DECORD_NOT_EXACT))
def test_decord_returns_a_later_frame_after_seeking_in_clips_with_leading_b_frames(clip: Clip, name: str) -> None:
    """Why auto prefers PyAV: decord 0.6 is not exact on every codec. If this starts failing, decord
    was fixed: move these clips back into the decord exactness cases."""
    asked = [3, 60, 61, 62]
    with Video(clip(name), reader="decord") as video:
        assert shown_indices(video.frames_at(asked)) != asked


# --- resizing and rotation ---------------------------------------------------------------------------


@pytest.mark.parametrize("reader", ["pyav", "decord"])
@pytest.mark.parametrize(
    "name,shape",
    [
        ("h264_1280x720.mp4", (360, 640, 3)),
        ("h264_portrait_720x1280.mp4", (360, 202, 3)),  # 720×1280 scaled by 360/1280 is 202.5 wide
        ("h264_320x240.mp4", (240, 320, 3)),  # already inside 640×360: never enlarged
    ],
)
def test_frames_are_rgb_shrunk_to_fit_max_size_keeping_the_aspect_ratio(
    clip: Clip, reader: str, name: str, shape: tuple[int, int, int]
) -> None:
    with Video(clip(name), reader=reader) as video:
        frames = video.frames_at([3, 17])
    for frame in frames:
        assert frame.image.dtype == np.uint8
        assert frame.image.flags.c_contiguous
        assert frame.image.shape[0] == shape[0] and abs(frame.image.shape[1] - shape[1]) <= 1
    assert shown_indices(frames) == [3, 17]


def test_max_size_none_keeps_the_decoded_size(clip: Clip) -> None:
    with Video(clip("h264_1280x720.mp4"), max_size=None) as video:
        assert video.frames_at([0])[0].image.shape == (720, 1280, 3)


def test_a_small_max_size_shrinks_further(clip: Clip) -> None:
    with Video(clip("h264_1280x720.mp4"), max_size=(224, 224)) as video:
        frame = video.frames_at([4])[0]
    assert frame.image.shape == (126, 224, 3)
    assert read_index(frame.image) == 4


def test_the_index_code_reads_only_upright(clip: Clip) -> None:
    """What makes the rotation test below meaningful."""
    with Video(clip("h264_rotated_90.mp4"), max_size=None) as video:
        upright = video.frames_at([21])[0].image
    assert read_index(upright) == 21
    for turns in (1, 2, 3):
        with pytest.raises(ValueError, match="no frame-index code"):
            read_index(np.rot90(upright, turns))


@pytest.mark.parametrize("reader", ["pyav", "decord"])
@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_rotated_videos_come_out_upright_and_report_their_rotation(clip: Clip, reader: str, rotation: int) -> None:
    with Video(clip(f"h264_rotated_{rotation}.mp4"), reader=reader) as video:
        assert (video.info.rotation, video.info.width, video.info.height) == (rotation, 320, 180)
        frames = video.frames_at([2, 20])
    assert frames[0].image.shape == (180, 320, 3)
    assert shown_indices(frames) == [2, 20]  # the code reads only when upright


# --- info --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name,codec",
    [("h264_gop12.mp4", "h264"), ("hevc_open_gop.mp4", "hevc"), ("vp9.webm", "vp9"), ("av1.mkv", "av1"),
     ("mpeg4_bframes.mp4", "mpeg4")],
)
def test_info_describes_the_video(clip: Clip, name: str, codec: str) -> None:
    path = clip(name)
    with Video(path) as video:
        info = video.info
    assert info == VideoInfo(
        path=str(path), frames=FRAMES, fps=30.0, duration_s=pytest.approx(5.0, abs=1e-3),
        width=320, height=180, codec=codec, rotation=0, reader="pyav",
    )


def test_decord_reader_reports_the_same_info(clip: Clip) -> None:
    path = clip("h264_gop12.mp4")
    with Video(path, reader="decord") as video:
        assert video.info == VideoInfo(str(path), FRAMES, 30.0, pytest.approx(5.0), 320, 180, "h264", 0, "decord")


def test_a_reader_declares_the_stream_fields_of_video_info_typed_alike() -> None:
    """VideoInfo is the one definition of the video metadata; a Video fills it from its reader by field name."""
    assert STREAM_FIELDS == tuple(f.name for f in dataclasses.fields(VideoInfo) if f.name not in ("path", "reader"))
    declared, defined = typing.get_type_hints(Reader), typing.get_type_hints(VideoInfo)
    assert declared == {"name": str, **{field: defined[field] for field in STREAM_FIELDS}}


def test_probe_returns_the_info_of_the_file(clip: Clip) -> None:
    path = clip("vp9.webm")
    with Video(path) as video:
        assert probe(path) == video.info


def test_the_frame_count_comes_from_the_packets_not_the_header(clip: Clip) -> None:
    path = clip("vp9.webm")
    with av.open(str(path)) as container:
        assert container.streams.video[0].frames == 0  # WebM does not say
    assert probe(path).frames == FRAMES


# --- one open per Video ------------------------------------------------------------------------------


def test_repeated_calls_reuse_the_open_file(clip: Clip, monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[str] = []
    real_open = av.open

    def counting_open(*args: object, **kwargs: object) -> object:
        opened.append(str(args[0]))
        return real_open(*args, **kwargs)

    monkeypatch.setattr(av, "open", counting_open)
    with Video(clip("h264_gop12.mp4"), reader="pyav", threads=2) as video:
        assert len(opened) == 2  # one handle per decoder
        video.choose_frames(0, FRAMES - 1, 8)
        video.choose_frames(30, 60, 8)
        video.frames_at([3])
    assert len(opened) == 2


def test_a_closed_video_refuses_calls(clip: Clip) -> None:
    video = Video(clip("h264_gop12.mp4"))
    video.close()
    video.close()
    with pytest.raises(ValueError, match="closed"):
        video.frames_at([1])


# --- the deadline ------------------------------------------------------------------------------------


@pytest.fixture
def release() -> threading.Event:
    """Set at teardown, so the decoder threads the hanging fakes hold are let go."""
    event = threading.Event()
    yield event
    event.set()


def fake_reader_info(fake: object) -> None:
    fake.name, fake.frames, fake.fps, fake.duration_s = "pyav", FRAMES, 30.0, 5.0
    fake.width, fake.height, fake.codec, fake.rotation = 320, 180, "h264", 0


def test_a_decoder_that_hangs_raises_decode_timeout_at_the_deadline(
    clip: Clip, monkeypatch: pytest.MonkeyPatch, release: threading.Event
) -> None:
    class HangingDecoderFake:
        """A reader whose decode call never returns, as decord's does when it deadlocks in C (which no
        file triggers on demand)."""

        def __init__(self, path: str, threads: int):
            fake_reader_info(self)

        def read(self, indices: list[int], size: tuple[int, int]) -> list[Frame]:
            release.wait(30)
            return []

        def close(self) -> None:
            pass

    monkeypatch.setitem(video_module._READERS, "pyav", HangingDecoderFake)
    video = Video(clip("h264_gop12.mp4"), deadline_s=0.3)
    began = time.monotonic()
    with pytest.raises(DecodeTimeout, match=r"took longer than the 0.3 s deadline"):
        video.choose_frames(0, 40, 8)
    assert time.monotonic() - began < 1.3
    with pytest.raises(DecodeTimeout, match="open the file again"):  # unusable from now on, and says so at once
        video.frames_at([1])
    video.close()


def test_opening_that_hangs_raises_decode_timeout(
    clip: Clip, monkeypatch: pytest.MonkeyPatch, release: threading.Event
) -> None:
    class HangingOpenFake:
        """A reader whose constructor never returns, as decord's VideoReader can."""

        def __init__(self, path: str, threads: int):
            release.wait(30)

    monkeypatch.setitem(video_module._READERS, "pyav", HangingOpenFake)
    began = time.monotonic()
    with pytest.raises(DecodeTimeout, match="opening"):
        Video(clip("h264_gop12.mp4"), deadline_s=0.3)
    assert time.monotonic() - began < 1.3


def test_requests_beyond_the_decoding_slots_wait_their_turn(clip: Clip, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(decoding_threads, "slots", threading.BoundedSemaphore(2))
    decoding, most = [0], [0]
    lock = threading.Lock()
    read = pyav_reader.PyAVReader.read

    def counted(reader, indices, size):  # the real reader, watched
        with lock:
            decoding[0] += 1
            most[0] = max(most[0], decoding[0])
        try:
            time.sleep(0.05)
            return read(reader, indices, size)
        finally:
            with lock:
                decoding[0] -= 1

    monkeypatch.setattr(pyav_reader.PyAVReader, "read", counted)
    videos = [Video(clip("h264_gop12.mp4"), threads=1) for _ in range(6)]
    with ThreadPoolExecutor(6) as pool:
        got = list(pool.map(lambda video: video.choose_frames(0, 40, 4), videos))
    assert most[0] == 2 and all([frame.index for frame in frames] == uniform_indices(0, 40, 4) for frames in got)
    for video in videos:
        video.close()


def test_waiting_past_the_deadline_for_a_slot_is_a_clear_error_that_leaves_the_video_usable(
    clip: Clip, monkeypatch: pytest.MonkeyPatch
) -> None:
    slots = threading.BoundedSemaphore(1)
    monkeypatch.setattr(decoding_threads, "slots", slots)
    with Video(clip("h264_gop12.mp4"), deadline_s=0.3) as video:
        slots.acquire()  # another video holds the only slot
        began = time.monotonic()
        with pytest.raises(DecodeTimeout, match=r"waited 0.3 s for one of the \d+ decoding slots"):
            video.frames_at([5])
        assert time.monotonic() - began < 1.3
        slots.release()
        assert [frame.index for frame in video.frames_at([5])] == [5]


# --- bad input ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory: pytest.TempPathFactory, clip: Clip) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("bad")
    text = folder / "notes.mp4"
    text.write_text("these are match notes, not a video\n" * 20)
    empty = folder / "empty.mp4"
    empty.touch()
    zero = folder / "zero_frames.mkv"
    with av.open(str(zero), "w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 320, 180, "yuv420p"
        container.start_encoding()
    return {
        "text renamed .mp4": text,
        "empty": empty,
        "mp4 cut at 40% (index at the end)": write_truncated(clip("h264_gop12.mp4"), folder / "cut.mp4", keep=0.4),
        "mkv cut in the middle": write_truncated(clip("h264.mkv"), folder / "cut.mkv", keep=0.5),
        "audio only": write_audio_only(folder / "commentary.m4a"),
        "video stream without frames": zero,
        "16×8 pixels": write_index_clip(folder / "tiny.mkv", frames=2, size=(16, 8)),
        "8200×16 pixels": write_index_clip(folder / "wide.mkv", frames=1, size=(8200, 16)),
        "directory": folder,
    }


BAD_INPUTS = [
    ("text renamed .mp4", NotAVideo, "not a video file"),
    ("empty", NotAVideo, "empty"),
    ("directory", NotAVideo, "directory"),
    ("mp4 cut at 40% (index at the end)", CorruptVideo, "damaged.*get the complete file again"),
    ("mkv cut in the middle", CorruptVideo, "truncated.*get the complete file again"),
    ("audio only", UnsupportedVideo, "has no video frames"),
    ("video stream without frames", UnsupportedVideo, "has no video frames"),
    ("16×8 pixels", UnsupportedVideo, "16×8 pixels.*16 to 8192"),
    ("8200×16 pixels", UnsupportedVideo, "8200×16 pixels.*16 to 8192"),
]


@pytest.mark.parametrize("reader", ["auto", "pyav"])
@pytest.mark.parametrize("kind,error,message", BAD_INPUTS)
def test_bad_files_raise_one_clear_video_error(
    bad_files: dict[str, Path], reader: str, kind: str, error: type[VideoError], message: str
) -> None:
    path = bad_files[kind]
    with pytest.raises(error, match=message) as raised:
        Video(path, reader=reader)
    assert isinstance(raised.value, ValueError)
    assert str(path) in str(raised.value) and "\n" not in str(raised.value)


@pytest.mark.parametrize(
    "kind,error",
    [("text renamed .mp4", NotAVideo), ("mkv cut in the middle", CorruptVideo), ("audio only", UnsupportedVideo)],
)
def test_the_decord_reader_raises_the_same_kinds_of_error(
    bad_files: dict[str, Path], kind: str, error: type[VideoError]
) -> None:
    with pytest.raises(error):
        Video(bad_files[kind], reader="decord")


def test_a_missing_file_raises_video_not_found(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.mp4"
    with pytest.raises(VideoNotFound, match="no such file; check the path") as raised:
        Video(path)
    assert str(path) in str(raised.value)


@pytest.mark.parametrize(
    "width,height,ok",
    [(16, 16, True), (8192, 4320, True), (15, 100, False), (100, 15, False), (8193, 100, False), (100, 9000, False)],
)
def test_resolution_limits_are_16_to_8192_pixels_a_side(width: int, height: int, ok: bool) -> None:
    if ok:
        check_resolution("clip.mp4", width, height)
    else:
        with pytest.raises(UnsupportedVideo):
            check_resolution("clip.mp4", width, height)


@pytest.mark.parametrize(
    "start,end,n,message",
    [
        (50, 50, 1, r"start must be before end"),
        (60, 40, 8, r"start must be before end"),
        (-1, 40, 8, r"leaves the video.*frames 0 to 149"),
        (100, FRAMES, 8, r"leaves the video.*frames 0 to 149"),
        (10, 14, 8, r"holds 5 frames, fewer than the 8 asked for"),
        (10, 40, 0, r"fewer than the 0 asked for"),
    ],
)
def test_choose_frames_rejects_ranges_the_protocol_calls_format_errors(
    clip: Clip, start: int, end: int, n: int, message: str
) -> None:
    with Video(clip("h264_gop12.mp4")) as video:
        with pytest.raises(ValueError, match=message):
            video.choose_frames(start, end, n)


def test_frames_at_rejects_indices_outside_the_video(clip: Clip) -> None:
    with Video(clip("h264_gop12.mp4")) as video:
        with pytest.raises(ValueError, match=r"\[150, -2\] leave the video"):
            video.frames_at([3, 150, -2])
        with pytest.raises(TypeError):
            video.frames_at([2.5])


@pytest.mark.parametrize(
    "arguments,message",
    [
        (dict(reader="opencv"), "reader must be one of auto, pyav, decord"),
        (dict(max_size=(0, 360)), "max_size"),
        (dict(deadline_s=0), "deadline_s must be positive"),
        (dict(threads=0), "threads must be 1 or more"),
    ],
)
def test_bad_arguments_are_rejected(clip: Clip, arguments: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Video(clip("h264_gop12.mp4"), **arguments)
