"""Luma planes the way the DCC 2018 reference made them: ``ffmpeg -i FILE -s WxH -pix_fmt yuv420p``.

Through PyAV (FFmpeg's own libraries): the file is decoded by FFmpeg's decoder (a JPEG by its MJPEG
decoder, to full-range YCbCr; a PNG to RGB) and converted by libswscale to limited-range (MPEG) yuv420p
with the command line's default bicubic scaler, at W×H = the image size cropped down to multiples of 16
(``get_metrics.py`` does that so that VQMT's MS-SSIM can run; on Kodak nothing is cropped, so nothing is
scaled). Only the Y plane is returned: VQMT reads luma only.

``vqmt_reading`` reproduces how VQMT then read that plane. ``get_metrics.py`` passes the width where VQMT
expects the height and the height where it expects the width, so VQMT reads the W×H plane (H rows of W)
as W rows of H samples: the same bytes, rows scrambled. ``swapped=False`` gives the correct reading.
"""

from __future__ import annotations

import io

import av
import numpy as np
from av.video.reformatter import ColorRange, Interpolation

from learning.errors import LearningError

_FORMATS = {b"\xff\xd8": "jpeg_pipe", b"\x89P": "png_pipe"}


def reference_size(size: tuple[int, int]) -> tuple[int, int]:
    """(W, H) cropped down to multiples of 16, as ``get_metrics.py`` computes ``size_x``, ``size_y``."""
    w, h = size
    return w - w % 16, h - h % 16


def ffmpeg_luma(data: bytes, size: tuple[int, int] | None = None) -> np.ndarray:
    """The uint8 Y plane (H×W) of ``ffmpeg -i FILE [-s WxH] -pix_fmt yuv420p`` for a JPEG or PNG file."""
    fmt = _FORMATS.get(data[:2])
    if fmt is None:
        raise LearningError("ffmpeg_luma: expected JPEG or PNG bytes")
    try:
        with av.open(io.BytesIO(data), format=fmt) as container:
            frame = next(container.decode(video=0))
    except (av.error.FFmpegError, StopIteration) as exc:
        raise LearningError(f"ffmpeg_luma: FFmpeg could not decode the file ({exc})") from exc
    w, h = size or (frame.width, frame.height)
    if w % 2 or h % 2:
        raise LearningError(f"ffmpeg_luma: yuv420p needs even sides, got {w}×{h}")
    out = frame.reformat(width=w, height=h, format="yuv420p", interpolation=Interpolation.BICUBIC,
                         src_color_range=ColorRange.JPEG, dst_color_range=ColorRange.MPEG)
    return np.ascontiguousarray(out.to_ndarray()[:h, :w])


def vqmt_reading(plane: np.ndarray, swapped: bool = True) -> np.ndarray:
    """The luma as VQMT saw it: ``swapped`` (the reference's call) re-reads H rows of W as W rows of H."""
    h, w = plane.shape
    return plane.reshape(w, h) if swapped else plane
