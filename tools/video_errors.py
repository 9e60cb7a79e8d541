"""The errors a Video raises: each names the file and says what to do about it, and all are ``ValueError``s."""
from __future__ import annotations


class VideoError(ValueError):
    """A video that cannot be used; the message names the file and says what to do about it."""


class VideoNotFound(VideoError):
    """No file at the path, or it cannot be read."""


class NotAVideo(VideoError):
    """The file is not a media container at all (a text file renamed .mp4, an empty file)."""


class CorruptVideo(VideoError):
    """A media container that is damaged: cut short, or its frames fail to decode."""


class UnsupportedVideo(VideoError):
    """A readable file that this tool will not handle: no video frames, or an absurd resolution."""


class DecodeTimeout(VideoError):
    """Decoding took longer than the deadline; the decoder was abandoned and the Video is unusable."""
