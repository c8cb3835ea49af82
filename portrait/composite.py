"""Compositing: the person over a new background (blur, colour, image, video or transparent).

Every background answers ``render(frame_bgr, alpha) -> frame`` and adapts when the frame size
changes; a video background also takes the frame's time, and plays at its own rate. Blending
is uint8 fixed point with saturating ``cv2.multiply(..., scale=1/255)``: at 720p/1080p on one
core about 2x faster than ``cv2.blendLinear`` (which needs two float32 weight planes) and 4x
faster than uint16 arithmetic in numpy; error at most 1 grey level, exact at alpha 0 and 255.
Only the matte's bounding box is blended; elsewhere the background is copied (where alpha is 0
the blend is the background exactly), which halves the blend's cost when the person fills part
of a webcam frame.
"""

from __future__ import annotations

import logging
import math
import re
from collections import OrderedDict
from pathlib import Path
from typing import Callable, Optional

import cv2
import numpy as np

from portrait.capture.alpha import opaque_note, video_alpha
from portrait.capture.gif import gif_may_be_transparent
from portrait.capture.images import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, is_image_file, read_image
from portrait.capture.looping import LoopingVideo, PlayClock
from portrait.capture.scaled import (ScaledVideo, cover_picture, described_size, display_array,
                                      display_size, shown_size, upright)
from portrait.errors import InputError
from portrait.options import CompositeOptions
from portrait.scratch import box_mean, buffer, check_frame_alpha, outside

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = set(IMAGE_EXTENSIONS)
VIDEO_SUFFIXES = {*VIDEO_EXTENSIONS, ".gif"}  # a GIF background plays
_COLOUR = re.compile(r"#([0-9a-fA-F]{2})([0-9a-fA-F]{2})([0-9a-fA-F]{2})")
_NO_WEIGHT = np.float32(1e-3)  # keeps the normalised blur finite deep inside the person
DEFAULT_BLUR_PX = 21  # the default blur of a frame whose short side is 720 px or less
_DEFAULT_BLUR_SHORT_SIDE = 720  # px: larger frames get a proportionally larger default blur


def default_blur_px(size: tuple[int, int]) -> int:
    """The blur when none is given, for a frame of ``size`` (w, h): 21 px up to 720p, then in
    proportion to the short side (the smaller of w and h), so the default looks alike at every
    size: 32 px at 1080p, 58 px for a 3000x2000 photo."""
    short_side = min(size)
    return max(DEFAULT_BLUR_PX, round(DEFAULT_BLUR_PX * short_side / _DEFAULT_BLUR_SHORT_SIDE))


def blur_px_for(blur_px: Optional[int], frame_bgr: np.ndarray) -> int:
    """``blur_px`` as given, or (None) :func:`default_blur_px` for the frame's size."""
    if blur_px is not None:
        return blur_px
    return default_blur_px((frame_bgr.shape[1], frame_bgr.shape[0]))


def _describe_blur(blur_px: Optional[int]) -> str:
    if blur_px is not None:
        return f"{blur_px} px"
    return f"by frame size ({DEFAULT_BLUR_PX} px up to {_DEFAULT_BLUR_SHORT_SIDE}p)"


def composite(frame_bgr: np.ndarray, alpha: np.ndarray, background_bgr: np.ndarray,
              out: Optional[np.ndarray] = None, *, workspace: Optional[dict] = None,
              bounded: bool = True) -> np.ndarray:
    """Blend ``frame * alpha + background * (1 - alpha)``.

    Args:
        frame_bgr: BGR uint8 (H, W, 3), the person.
        alpha: uint8 (H, W), 255 = person.
        background_bgr: BGR uint8 (H, W, 3).
        out: optional uint8 (H, W, 3) destination.
        workspace: optional dict for the two scratch buffers, reused between calls.
        bounded: blend only within the bounding box of ``alpha > 0`` and copy the background
            elsewhere (the same result, bit for bit, at a fraction of the cost when the person
            fills part of the frame); False blends the whole frame.

    Returns:
        BGR uint8 (H, W, 3) (``out`` when given).

    Raises:
        ValueError: a wrong dtype or shape (actual vs expected).
    """
    check_frame_alpha(frame_bgr, alpha)
    if background_bgr.dtype != np.uint8 or background_bgr.shape != frame_bgr.shape:
        raise ValueError(f"unexpected background: {background_bgr.dtype} {background_bgr.shape}"
                         f" != uint8 {frame_bgr.shape}")
    if out is None:
        out = np.empty_like(frame_bgr)
    elif out.dtype != np.uint8 or out.shape != frame_bgr.shape:
        raise ValueError(f"unexpected out: {out.dtype} {out.shape} != uint8 {frame_bgr.shape}")
    height, width = alpha.shape
    x, y, w, h = cv2.boundingRect(alpha) if bounded else (0, 0, width, height)
    if w == 0:
        np.copyto(out, background_bgr)
        return out
    # where alpha is 0 the blend is the background exactly
    for strip in outside(x, y, x + w, y + h):
        out[strip] = background_bgr[strip]
    box = np.s_[y:y + h, x:x + w]
    ws = {} if workspace is None else workspace
    person = buffer(ws, "person", frame_bgr.shape, np.uint8)[:h, :w]
    rest = buffer(ws, "rest", frame_bgr.shape, np.uint8)[:h, :w]
    cv2.cvtColor(alpha[box], cv2.COLOR_GRAY2BGR, dst=person)
    cv2.bitwise_not(person, dst=rest)
    # each product is rounded to uint8 on its own, so the sum is within 1 of the exact blend
    cv2.multiply(frame_bgr[box], person, dst=person, scale=1 / 255)
    cv2.multiply(background_bgr[box], rest, dst=rest, scale=1 / 255)
    cv2.add(person, rest, dst=out[box])
    return out


def _halve(image: np.ndarray, times: int, workspace: Optional[dict] = None,
           name: str = "half") -> np.ndarray:
    """``image`` halved ``times`` times (into ``workspace``'s buffers, when given)."""
    # An exact 2x INTER_LINEAR step averages 2x2 blocks: INTER_AREA quality at a quarter the cost.
    for step in range(times):
        size = (max(1, image.shape[1] // 2), max(1, image.shape[0] // 2))
        dst = None if workspace is None else buffer(workspace, f"{name}{step}",
                                                    size[::-1] + image.shape[2:], image.dtype)
        image = cv2.resize(image, size, dst=dst, interpolation=cv2.INTER_LINEAR)
    return image


def blur_background(frame_bgr: np.ndarray, alpha: np.ndarray, blur_px: int,
                    out: Optional[np.ndarray] = None, *,
                    workspace: Optional[dict] = None) -> np.ndarray:
    """The frame's background, blurred, with the person's colours kept out (no halo).

    Normalised convolution at reduced resolution: ``blur(frame * w) / blur(w)`` with background
    weight ``w = 1 - dilate(alpha)``, so pixels near the person are filled from background
    pixels only. The dilation drops mixed edge pixels, whose colour is part person.

    Args:
        frame_bgr: BGR uint8 (H, W, 3); alpha: uint8 (H, W), 255 = person.
        blur_px: blur radius in full-resolution pixels; < 1 returns a copy of the frame.
        out: optional uint8 (H, W, 3) destination.
        workspace: optional dict for the scratch buffers, reused between calls.

    Returns:
        BGR uint8 (H, W, 3). Under the person (where alpha is ~255) the value is unspecified.
    """
    check_frame_alpha(frame_bgr, alpha)
    height, width = frame_bgr.shape[:2]
    if out is None:
        out = np.empty_like(frame_bgr)
    if blur_px < 1:
        np.copyto(out, frame_bgr)
        return out
    ws = {} if workspace is None else workspace
    halvings = 2 if blur_px >= 12 else 1 if blur_px >= 6 else 0
    small = _halve(frame_bgr, halvings, ws, "blur_frame")
    low = small.shape[:2]

    def scratch(name: str, channels: int = 3, dtype=np.float32) -> np.ndarray:
        return buffer(ws, f"blur_{name}", low + ((channels,) if channels > 1 else ()), dtype)

    frame_low = scratch("frame")
    frame_low[...] = small
    alpha_low = cv2.dilate(_halve(alpha, halvings, ws, "blur_alpha"), np.ones((3, 3), np.uint8),
                           dst=scratch("alpha", 1, np.uint8))
    weight = scratch("weight", 1)
    weight[...] = alpha_low
    weight *= np.float32(-1 / 255)
    weight += np.float32(1)  # background weight: 1 - alpha
    ksize = 2 * max(1, round(blur_px / (1 << halvings))) + 1
    # The weights spread to 3 channels for OpenCV's multiply and divide: the same values as
    # numpy's broadcasting of one channel, which cost about 0.5 ms more a 720p frame.
    per_channel = cv2.cvtColor(weight, cv2.COLOR_GRAY2BGR, dst=scratch("per_channel"))
    weighted = cv2.multiply(frame_low, per_channel, dst=scratch("weighted"))
    numerator = cv2.stackBlur(weighted, (ksize, ksize), dst=scratch("numerator"))
    denominator = cv2.stackBlur(weight, (ksize, ksize), dst=scratch("denominator", 1))
    # where no background is near, fall back to the frame
    numerator += np.multiply(_NO_WEIGHT, frame_low, out=weighted)
    denominator += _NO_WEIGHT
    cv2.divide(numerator, cv2.cvtColor(denominator, cv2.COLOR_GRAY2BGR, dst=per_channel),
               dst=numerator)
    numerator += np.float32(0.5)  # round, not truncate
    background_low = scratch("background", 3, np.uint8)
    background_low[...] = numerator  # truncates, as astype
    return cv2.resize(background_low, (width, height), dst=out, interpolation=cv2.INTER_LINEAR)


# Past this many times the output's pixels, cover() makes only the part of an image in view.
_COVER_WHOLE_AT_MOST = 4
_SHORT_MAX = 32767  # OpenCV's remapping (warpAffine) may hold source coordinates as shorts


def cover(image_bgr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Scale ``image_bgr`` to cover ``size`` (w, h) keeping its aspect ratio, then centre-crop.

    An image whose scaled whole would be over 4 times the output (a frame of a panorama's
    proportions) gets only the part in view made, so the memory is about the output's: scaling
    a 600x800 photo whole to cover a 20000x200 panorama made it 20000x26667 (1.6 GB), and a
    70000x60 one was killed for memory. Enlarged, each output pixel is sampled where the whole
    scaled image has it (bilinear, within a grey level of the whole's); shrunk, the part in view
    and a margin are area-averaged (its view may lie up to half a pixel from the whole's). Any
    other image is scaled whole, as before.
    """
    width, height = size
    src_h, src_w = image_bgr.shape[:2]
    scale = max(width / src_w, height / src_h)
    scaled_w, scaled_h = max(width, round(src_w * scale)), max(height, round(src_h * scale))
    shrink = scaled_w < src_w
    # The view in the whole image scaled: from (left, top), as big as the output.
    left, top = (scaled_w - width) // 2, (scaled_h - height) // 2
    if scaled_w * scaled_h <= _COVER_WHOLE_AT_MOST * width * height:
        scaled = cv2.resize(image_bgr, (scaled_w, scaled_h),
                            interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
        return np.ascontiguousarray(scaled[top:top + height, left:left + width])
    fx, fy = scaled_w / src_w, scaled_h / src_h
    if not shrink and max(src_w, src_h) <= _SHORT_MAX:
        # Output pixel (x, y) is the whole's (left + x, top + y), which cv2.resize samples at
        # ((left + x + 0.5) / fx - 0.5, ...) in the image.
        to_image = np.float64([[1 / fx, 0, (left + 0.5) / fx - 0.5],
                               [0, 1 / fy, (top + 0.5) / fy - 0.5]])
        return cv2.warpAffine(image_bgr, to_image, (width, height),
                              flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                              borderMode=cv2.BORDER_REPLICATE)

    def in_view(start: int, length: int, factor: float, src: int) -> tuple[int, int]:
        """The image's pixels [first, last) that the whole's pixels [start, start + length) of
        an axis scaled by ``factor`` are made from, with what the interpolation reaches."""
        margin = math.ceil(1 / factor) + 1
        return (max(0, math.floor(start / factor) - margin),
                min(src, math.ceil((start + length) / factor) + margin))

    x0, x1 = in_view(left, width, fx, src_w)
    y0, y1 = in_view(top, height, fy, src_h)
    # dsize None with fx, fy: the part is scaled by exactly the whole image's factors.
    scaled = cv2.resize(image_bgr[y0:y1, x0:x1], None, fx=fx, fy=fy,
                        interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    x = min(max(0, round(left - x0 * fx)), scaled.shape[1] - width)
    y = min(max(0, round(top - y0 * fy)), scaled.shape[0] - height)
    return scaled[y:y + height, x:x + width].copy()  # not a view that keeps the margin alive


class Background:
    """Base: subclasses give ``_background_for(frame, alpha)``; ``render`` blends over it."""

    description = "background"

    def __init__(self):
        self._workspace: dict = {}

    def _background_for(self, frame_bgr: np.ndarray, alpha: np.ndarray,
                        time_s: Optional[float] = None, live: bool = False,
                        mirrored: bool = False) -> np.ndarray:
        raise NotImplementedError

    def render(self, frame_bgr: np.ndarray, alpha: np.ndarray,
               out: Optional[np.ndarray] = None,
               light_wrap: Optional[Callable[[np.ndarray, np.ndarray, np.ndarray], object]] = None,
               foreground: Optional[Callable[[np.ndarray, np.ndarray], np.ndarray]] = None,
               *, time_s: Optional[float] = None, live: bool = False,
               mirrored: bool = False) -> np.ndarray:
        """Composite the person (``alpha``, 255 = person) over this background.

        ``foreground(frame, alpha)``, when given (a
        :class:`portrait.foreground.ForegroundEstimator`), gives the person's colours to blend
        in place of the frame's; the background is still made from the frame.
        ``light_wrap(composite, alpha, background)``, when given (a
        :class:`portrait.lightwrap.LightWrap`), then works on the composite in place.

        ``time_s`` is the frame's time in seconds (``Frame.pts_s``), ``None`` for a monotonic
        clock: a video background shows the frame due that long after its first render.
        ``live``: a live stream, where a video background shows the newest frame its reader
        has ready rather than wait for the one due (which a file run does, so that every run
        gives the same output).

        ``mirrored``: the result is to be flipped left to right afterwards (``--mirror``). A
        picture (an image, a video, a colour) is then laid in flipped, so that it reads the
        right way round in the mirrored output, as a call app's own background does; the
        person, and the room where it shows (blurred), mirror as a mirror shows them.

        Returns BGR uint8 (H, W, 3), a new array unless ``out`` is given; raises ValueError on
        a wrong frame or alpha.
        """
        check_frame_alpha(frame_bgr, alpha)
        background = self._background_for(frame_bgr, alpha, time_s, live, mirrored)
        person = frame_bgr if foreground is None else foreground(frame_bgr, alpha)
        result = composite(person, alpha, background, out, workspace=self._workspace)
        if light_wrap is not None:
            light_wrap(result, alpha, background)
        return result

    def close(self) -> None:
        """Release what the background holds; safe to call twice."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _PerSize(Background):
    """A background that depends only on the frame size: built once per size, kept for a few."""

    def __init__(self, build: Callable[[tuple[int, int]], np.ndarray], size: tuple[int, int]):
        super().__init__()
        self._build = build
        self._cache: OrderedDict = OrderedDict()
        self._get(size)

    def _get(self, size: tuple[int, int], mirrored: bool = False):
        key = (size, mirrored)
        if key not in self._cache:
            self._cache[key] = (_flipped(self._get(size)) if mirrored else self._build(size))
            while len(self._cache) > 4:
                self._cache.popitem(last=False)
        return self._cache[key]

    def _background_for(self, frame_bgr, alpha, time_s=None, live=False, mirrored=False):
        return self._get((frame_bgr.shape[1], frame_bgr.shape[0]), mirrored)


class BlurBackground(Background):
    """The frame's own background, blurred by ``blur_px``, without a halo around the person."""

    def __init__(self, blur_px: Optional[int] = None):
        super().__init__()
        self.blur_px = None if blur_px is None else int(blur_px)  # None: default_blur_px
        self.description = f"blur {_describe_blur(self.blur_px)}"

    def _background_for(self, frame_bgr, alpha, time_s=None, live=False, mirrored=False):
        # The room: it mirrors with the person, as the frame does.
        out = buffer(self._workspace, "blurred", frame_bgr.shape, np.uint8)
        return blur_background(frame_bgr, alpha, blur_px_for(self.blur_px, frame_bgr), out=out,
                               workspace=self._workspace)


class ColourBackground(_PerSize):
    """A solid colour, given as ``#rrggbb``."""

    def __init__(self, colour: str, size: tuple[int, int]):
        self.bgr = parse_colour(colour)
        self.description = f"colour {colour}"
        super().__init__(lambda s: np.full((s[1], s[0], 3), self.bgr, np.uint8), size)


class ImageBackground(_PerSize):
    """An image file scaled to cover the frame and centre-cropped, never stretched.

    What is kept for frames of other sizes is the image at most twice the size that covers the
    first frame (a 62 MP photo behind a 720p call kept 186 MB before).

    An image with transparency (a PNG, WebP or TIFF with alpha) is laid over the frame's own
    background blurred by ``blur_px`` (as ``BlurBackground`` makes it; the attribute may change
    between frames): where it is transparent the room shows, blurred. An opaque image costs no
    blur."""

    def __init__(self, path: str, size: tuple[int, int],
                 blur_px: Optional[int] = CompositeOptions.blur_px):
        # With the checks a photo gets: EXIF orientation, truncation, the pixel limit.
        image = read_image(path, what="background image", keep_alpha=True)
        self.transparent = image.shape[2] == 4
        self.blur_px = None if blur_px is None else int(blur_px)  # None: default_blur_px
        self.description = f"image {path} ({image.shape[1]}x{image.shape[0]})"
        if self.transparent:
            self.description += " over the blurred frame"
            # Premultiplied, so that scaling does not bring in the colour of transparent pixels.
            image = _premultiply(image)
        image = _at_most_twice_cover(image, size)
        build = (lambda s: _overlay_parts(cover(image, s))) if self.transparent else (
            lambda s: cover(image, s))
        super().__init__(build, size)

    def _background_for(self, frame_bgr, alpha, time_s=None, live=False, mirrored=False):
        made = self._get((frame_bgr.shape[1], frame_bgr.shape[0]), mirrored)
        if not self.transparent:
            return made
        return _over_blurred(made, frame_bgr, alpha, self.blur_px, self._workspace)


def _over_blurred(overlay: tuple[np.ndarray, np.ndarray], frame_bgr: np.ndarray,
                  alpha: np.ndarray, blur_px: Optional[int], workspace: dict) -> np.ndarray:
    """``overlay`` (:func:`_overlay_parts` of an image at the frame's size) laid over the
    frame's own background blurred by ``blur_px`` (:func:`blur_background`; None:
    :func:`default_blur_px`), in ``workspace``."""
    colour, see_through = overlay
    out = buffer(workspace, "blurred", frame_bgr.shape, np.uint8)
    blur_background(frame_bgr, alpha, blur_px_for(blur_px, frame_bgr), out=out,
                    workspace=workspace)
    # over: image + blurred * (1 - image alpha), image colours premultiplied
    cv2.multiply(out, see_through, dst=out, scale=1 / 255)
    return cv2.add(out, colour, dst=out)


def _flipped(made, workspace: Optional[dict] = None):
    """A picture made for the frame (BGR, or the two parts :func:`_overlay_parts` gives of a
    transparent one) flipped left to right: new arrays, or ``workspace``'s buffers."""
    if isinstance(made, tuple):
        return tuple(_flipped_part(part, workspace, f"flipped{i}") for i, part in enumerate(made))
    return _flipped_part(made, workspace, "flipped0")


def _flipped_part(part: np.ndarray, workspace: Optional[dict], name: str) -> np.ndarray:
    out = None if workspace is None else buffer(workspace, name, part.shape, part.dtype)
    return cv2.flip(part, 1, dst=out)


def _premultiply(image_bgra: np.ndarray, band_rows: int = 256) -> np.ndarray:
    """Multiply the colours of BGRA uint8 ``image_bgra`` by its alpha (rounded), in place, a
    band of rows at a time (a 62 MP image needs no second copy); returns it."""
    for top in range(0, image_bgra.shape[0], band_rows):
        band = image_bgra[top:top + band_rows]
        # (a, a, a, 255): the alpha itself is multiplied by 255/255, kept exactly
        factor = cv2.cvtColor(np.ascontiguousarray(band[:, :, 3]), cv2.COLOR_GRAY2BGRA)
        cv2.multiply(band, factor, dst=band, scale=1 / 255)
    return image_bgra


def _overlay_parts(premultiplied_bgra: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(premultiplied BGR, ``255 - alpha`` as 3 channels): what laying it over takes."""
    see_through = cv2.cvtColor(cv2.bitwise_not(premultiplied_bgra[:, :, 3]), cv2.COLOR_GRAY2BGR)
    return np.ascontiguousarray(premultiplied_bgra[:, :, :3]), see_through


def _at_most_twice_cover(image_bgr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``image_bgr`` shrunk (area-averaged) to twice the scale that covers ``size``, if larger."""
    src_h, src_w = image_bgr.shape[:2]
    scale = 2.0 * max(size[0] / src_w, size[1] / src_h)
    if scale >= 1.0:
        return image_bgr
    return cv2.resize(image_bgr, (max(1, round(src_w * scale)), max(1, round(src_h * scale))),
                      interpolation=cv2.INTER_AREA)


class VideoBackground(Background):
    """A video file, looping, at its own rate: each render shows the frame due at its time
    (``time_s``, the stream's time, else a monotonic clock) since the first render, which shows
    the first frame; frames are skipped or shown again as the output's rate needs. Scaled to
    cover like an image.

    Decoding and scaling run ahead in a thread of their own (:class:`LoopingVideo`), off the
    compositing path. A file that can no longer be read at a loop (deleted, cut short) is said
    once in the log, and its last frame stays.

    A GIF that can show transparency (:func:`gif_may_be_transparent`: its first frame, or a
    later one, as FFmpeg composes it) plays with it: each of its frames that has a transparent
    pixel is laid over the frame's own background blurred by ``blur_px``, as a transparent
    :class:`ImageBackground` is, and each opaque one is shown as it is (no blur). So does a
    video with an alpha channel (:func:`portrait.capture.alpha.video_alpha`: VP8/VP9 in WebM,
    ProRes 4444, PNG or QuickTime Animation in a MOV); where this FFmpeg cannot decode its
    alpha (no libvpx for VP8/VP9 alpha), one warning says so and it plays opaque. Any other
    video is opaque."""

    def __init__(self, path: str, size: tuple[int, int],
                 blur_px: Optional[int] = CompositeOptions.blur_px):
        super().__init__()
        self.path = path
        self.blur_px = None if blur_px is None else int(blur_px)  # None: default_blur_px
        alpha = video_alpha(path)
        if alpha.has_alpha and not alpha.decodable:
            log.warning("%s", opaque_note(path, alpha))
        self.transparent = gif_may_be_transparent(path) or alpha.decodable
        try:
            # Each frame is prepared as (made for the size, as decoded): a frame prepared for
            # another size is made again from the decoded one, not from a crop of it.
            self._video: Optional[LoopingVideo] = LoopingVideo(
                path, size, lambda image, at: (self._made(image, at), image),
                reader=ScaledVideo)
        except InputError as error:  # the file's own reason, named as the background
            raise InputError(str(error).replace("video '", "background video '", 1)) from None
        self._clock = PlayClock()
        self._last, self._decoded = self._video.first  # shown by the first render
        # The frame that the workspace's flipped buffers hold flipped: a mirrored output flips
        # each new frame once, not at each render that shows it again.
        self._flipped_of, self._flipped = None, None
        # As an image's: its size, here as shown with the stored one where they differ.
        stored = (self._decoded.width, self._decoded.height)
        self.description = (f"video {path} ({described_size(stored, shown_size(self._decoded))})"
                            + (" over the blurred frame" if self.transparent else ""))

    def _made(self, picture, size: tuple[int, int]):
        """A decoded frame (an ``av.VideoFrame``) made for ``size``: covering it, converted at
        that size (:func:`cover_picture`); a frame of a GIF that may be transparent or of a
        video with alpha, where it has a transparent pixel, as the parts that
        :func:`_over_blurred` takes, upright, scaled premultiplied (as a transparent image is)."""
        if self.transparent:
            bgra = _transparent_bgra(picture)
            if bgra is not None:
                return _overlay_parts(cover(_premultiply(upright(bgra, picture.rotation)), size))
        return cover_picture(picture, size)

    def _background_for(self, frame_bgr, alpha, time_s=None, live=False, mirrored=False):
        if self._video is None:
            raise ValueError("unexpected render on a closed VideoBackground")
        size = (frame_bgr.shape[1], frame_bgr.shape[0])
        self._video.size = size  # frames prepared from now on
        prepared = self._video.frame_at(self._clock.advance(time_s), wait=not live)
        if prepared is not None:
            self._last, self._decoded = prepared
        overlay = isinstance(self._last, tuple)  # a frame with transparency: (colour, see-through)
        if (self._last[0] if overlay else self._last).shape != frame_bgr.shape:
            self._last = self._made(self._decoded, size)  # prepared for another size
            overlay = isinstance(self._last, tuple)
        made = self._last
        if mirrored:
            if self._flipped_of is not self._last:
                self._flipped = _flipped(self._last, self._workspace)
                self._flipped_of = self._last
            made = self._flipped
        if overlay:
            return _over_blurred(made, frame_bgr, alpha, self.blur_px, self._workspace)
        return made

    def close(self) -> None:
        if self._video is not None:
            self._video.close()
            self._video = None


def _transparent_bgra(picture) -> Optional[np.ndarray]:
    """A decoded frame's BGRA uint8 (straight alpha, as FFmpeg composes a GIF and as videos
    with alpha keep it), a copy of its own, where a pixel of it is transparent; ``None`` where
    it is opaque. The alpha is looked at in the frame's own buffer: its alpha plane where it
    has an 8-bit one (:func:`_alpha_plane`: VP8/VP9's alpha as libvpx gives it), so that an
    opaque frame is not converted at its full size (:func:`cover_picture` converts it at the
    size shown: 5.0 ms of CPU for a 4K VP9 frame shown at 720p, where 12.8 went before), or
    the BGRA frame itself (a GIF's frames), which is copied only for a frame that has
    transparency. A frame with transparency is converted whole: it is premultiplied before it
    is scaled, which scaling its straight alpha first (FFmpeg's) does not match: colours
    under transparent pixels would bleed into its edges. At the frame's :func:`display_size`
    (pixels that are not square, shown wider or narrower)."""
    plane = _alpha_plane(picture)
    if plane is not None and plane.min() == 255:
        return None
    bgra = display_array(picture, "bgra")  # the decoder's buffer where it is BGRA: not ours
    if plane is None and bgra[:, :, 3].min() == 255:
        return None
    own = picture.format.name != "bgra" or display_size(picture) != (picture.width,
                                                                     picture.height)
    return bgra if own else bgra.copy()  # converted (or scaled): ours


def _alpha_plane(picture) -> Optional[np.ndarray]:
    """A decoded frame's alpha plane as it lies in the decoder's buffer (a view: not ours),
    where its pixel format keeps an 8-bit alpha in a plane of its own (``yuva420p``); ``None``
    where it keeps none (packed BGRA, or a deeper alpha as ProRes 4444's)."""
    components = picture.format.components
    alpha = [c for c in components if c.is_alpha]
    if (len(alpha) != 1 or alpha[0].bits != 8
            or any(c.plane == alpha[0].plane for c in components if not c.is_alpha)):
        return None  # packed: the alpha shares its plane with the colours
    plane = picture.planes[alpha[0].plane]
    return np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)[:, :plane.width]


class TransparentBackground(Background):
    """No background: BGRA output with the alpha matte as the 4th channel (straight alpha)."""

    description = "transparent"

    def render(self, frame_bgr, alpha, out=None, light_wrap=None, foreground=None, *,
               time_s=None, live=False, mirrored=False):
        """BGRA uint8 (H, W, 4): the frame's colours (or ``foreground(frame, alpha)``'s) with
        ``alpha`` as its alpha channel, and where alpha is 0 none of them
        (:func:`hide_the_room`).

        ``light_wrap`` is ignored: there is no background to take light from; so are the
        frame's time, ``live`` and ``mirrored`` (no picture to keep the right way round)."""
        check_frame_alpha(frame_bgr, alpha)
        if foreground is not None:
            frame_bgr = foreground(frame_bgr, alpha)
        shape = frame_bgr.shape[:2] + (4,)
        if out is None:
            out = np.empty(shape, np.uint8)
        elif out.dtype != np.uint8 or out.shape != shape:
            raise ValueError(f"unexpected out: {out.dtype} {out.shape} != uint8 {shape}")
        cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2BGRA, dst=out)
        out[:, :, 3] = alpha
        hide_the_room(out)
        return out


HIDDEN_REACH_PX = 8
"""How far from what a cut-out shows :func:`hide_the_room` carries its colours into what it
hides (a resize that ignores alpha mixes only so far); it works at 1/4 of the size, in cells of
4 px, so the reach is this and a cell or two."""
_HIDDEN_SCALE = 4


def hide_the_room(bgra: np.ndarray) -> None:
    """In place: where ``bgra``'s alpha is 0, none of the frame's colours, which would keep the
    room the cut-out removed for anyone who drops its alpha channel (as many tools do).

    There it takes the alpha-weighted mean colour of the pixels it shows within about
    :data:`HIDDEN_REACH_PX` (so that a tool that scales it without weighting by alpha brings in
    no dark fringe), and black beyond. Nothing a correct viewer shows changes: those pixels are
    fully transparent. At 1/4 of the size: about 6 ms for a 1280x720 frame, 37 ms for a
    3000x2000 photo (on the 2-core development machine)."""
    hidden = cv2.compare(bgra[:, :, 3], 0, cv2.CMP_EQ)
    if not cv2.countNonZero(hidden):
        return
    height, width = hidden.shape
    cells = (max(1, width // _HIDDEN_SCALE), max(1, height // _HIDDEN_SCALE))
    premultiplied = cv2.resize(cv2.cvtColor(bgra, cv2.COLOR_RGBA2mRGBA), cells,
                               interpolation=cv2.INTER_AREA)
    radius = max(1, round(HIDDEN_REACH_PX / _HIDDEN_SCALE))
    mean = box_mean(premultiplied, radius)  # of colour x alpha and of alpha, float32
    fill = cv2.cvtColor(cv2.convertScaleAbs(mean), cv2.COLOR_mRGBA2RGBA)  # mean alpha 0: black
    fill[:, :, 3] = 0
    cv2.copyTo(cv2.resize(fill, (width, height), interpolation=cv2.INTER_LINEAR), hidden, bgra)


def parse_colour(text: str) -> tuple[int, int, int]:
    """``#rrggbb`` to a (b, g, r) tuple; raises InputError naming the text and the expected form."""
    match = _COLOUR.fullmatch(text.strip())
    if match is None:
        raise InputError(f"bad background colour '{text}': expected #rrggbb, e.g. #00ff00")
    red, green, blue = (int(part, 16) for part in match.groups())
    return blue, green, red


def make_background(options: CompositeOptions, size: tuple[int, int] = (1280, 720)) -> Background:
    """Build the background that ``options.background`` names.

    Args:
        options: ``background`` is ``blur``, ``transparent``, ``#rrggbb`` or an image or video
            file path; ``blur_px`` the blur strength (None: :func:`default_blur_px` of each
            frame).
        size: the expected frame size (w, h); backgrounds adapt if frames come at another size.

    Returns:
        A ``Background`` (context manager; ``render(frame, alpha)``; ``close()``).

    Raises:
        InputError: a bad colour, a missing file, or a file that is not a readable image/video.
    """
    spec = options.background.strip()
    keyword = spec.lower()
    if keyword == "blur":
        background = BlurBackground(options.blur_px)
    elif keyword == "transparent":
        background = TransparentBackground()
    elif spec.startswith("#"):
        background = ColourBackground(spec, size)
    else:
        path = Path(spec)
        if not path.is_file():
            raise InputError(f"cannot read background '{spec}': file not found; use blur,"
                             " transparent, #rrggbb, an image or video file, or a folder of them")
        suffix = path.suffix.lower()
        if suffix in VIDEO_SUFFIXES:
            background = VideoBackground(spec, size, options.blur_px)
        elif is_image_file(path):
            background = ImageBackground(spec, size, options.blur_px)
        else:
            background = VideoBackground(spec, size, options.blur_px)
    log.info("background: %s", background.description)
    return background
