"""Auto-framing: the output keeps its size and shows a crop that keeps the person centred.

Per frame:

1. :func:`person_box`: the person's bounding box from the matte, thresholded about 80 columns
   wide (1/16 of 720p), over connected components, so a stray speck far from the person doesn't
   drag the crop (components of at least a quarter of the largest one's area count, so two
   people are framed together);
2. :func:`target_crop`: the crop that frames it, at the frame's aspect ratio, zoomed in at most
   ``max_zoom``; someone cut off by the bottom of the frame (a webcam) is framed head and
   shoulders by their width, with headroom above;
3. :func:`step`: the zoom frames the median of the sizes :func:`target_crop` wanted over the last
   ``zoom_window_s`` (5 s), so an arm raised, a wave or a stretch shorter than half of it leaves
   the zoom alone (in someone's first seconds, or a shot's after a cut, the part of the window
   before them counts as their first size, so it does there too); someone who comes closer
   (the matte's area 30 % above its median, where arms reach 15 % on the ASL clips) is framed
   at once; a dead zone keeps the aim still while the person moves a little, then a critically
   damped spring (:func:`spring_step`) glides the crop to the aim; nobody in the frame: the
   crop holds for ``hold_s``, then eases back to the whole frame;
4. :class:`AutoFramer`: ``update(alpha, time_s)`` runs 1-3, ``apply(image)`` shows the crop
   with one ``cv2.warpAffine`` (sub-pixel, so a glide doesn't step) into the caller's buffer;
   while the whole frame is shown it passes images through untouched.

Time is the frames' own (``time_s``, a video's or a camera's timestamps): a live run that drops
frames glides in ``glide_s``, holds ``hold_s`` and takes the median over ``zoom_window_s`` as one
that keeps them all, not longer by the frames it dropped.

The state is a frozen dataclass passed in and returned, the functions are pure; the class holds
the state for the pipeline, and its ``enabled`` switch glides in and out.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, replace
from typing import Optional

import cv2
import numpy as np

from portrait.options import FramingOptions

__all__ = ["FramingOptions", "FramingState", "AutoFramer", "person_box", "person_extent",
           "person_outside", "target_crop", "clamp_crop", "spring_step", "step", "crop_matrix", "whole_frame"]

Crop = tuple[float, float, float]  # centre x, centre y, height in frame pixels; width = height*W/H
Box = tuple[int, int, int, int]  # x, y, width, height in frame pixels

_THUMB_WIDTH = 80  # person_box works on about this many columns (1/16 of 720p)
_SETTLE_PX = 0.2  # closer than this to the aim (and slow): snap to it, so a still crop is constant
_SETTLE_PX_S = 2.0
_GROWN = 1.3  # an area this many times the window's median: someone came closer (arms: <= 1.15)
# A sum of 150 steps of 1/30 s can fall short of 5 s by 1e-15 s: the size wanted 5 s ago leaves
# the window all the same, which holds 150 frames at 30 fps, not 151.
_WINDOW_SLACK_S = 1e-6


@dataclass(frozen=True)
class FramingState:
    """What carries from frame to frame.

    Attributes:
        crop: the crop shown now.
        velocity: its rate of change, per second.
        aim: where the crop glides to (moves only past the dead zone).
        empty_s: how long nobody has been in the frame.
        time_s: the framing's own clock: the sum of the steps since the start.
        times: the ``time_s`` of each frame with someone in it over the last ``zoom_window_s``,
            the latest last: the window is a span of time, however many frames a live run
            dropped in it.
        heights: the crop heights wanted at those times.
        areas: the person's areas (:func:`person_extent`) at those times.
        since_s: the time of the first of ``times`` since they were last emptied (someone
            appeared, a cut): while less than a window ago, the part of the window before it
            counts as that first frame's size and area.
    """

    crop: Crop
    velocity: Crop
    aim: Crop
    empty_s: float = 0.0
    time_s: float = 0.0
    times: tuple[float, ...] = ()
    heights: tuple[float, ...] = ()
    areas: tuple[float, ...] = ()
    since_s: float = 0.0

    @classmethod
    def whole(cls, size: tuple[int, int]) -> "FramingState":
        """At rest on the whole frame of ``size`` (w, h)."""
        crop = whole_frame(size)
        return cls(crop, (0.0, 0.0, 0.0), crop)


def whole_frame(size: tuple[int, int]) -> Crop:
    """The crop that shows all of a frame of ``size`` (w, h)."""
    width, height = size
    return (width / 2, height / 2, float(height))


def person_box(alpha: np.ndarray, min_area: float = FramingOptions.min_area) -> Optional[Box]:
    """The bounding box of the person (or people) in a matte, or None when nobody is there.

    Args:
        alpha: uint8 (H, W), 255 = person.
        min_area: the largest region must cover at least this fraction of the frame.

    Returns:
        (x, y, width, height) in frame pixels, to the precision of the thumbnail (about 80
        columns: 16 px at 720p, well inside the dead zone).
    """
    extent = person_extent(alpha, min_area)
    return None if extent is None else extent[0]


def person_extent(alpha: np.ndarray,
                  min_area: float = FramingOptions.min_area) -> Optional[tuple[Box, float]]:
    """:func:`person_box`, and how much of the frame the person covers.

    An arm raised or stretched out adds little to the area (at most 15 % above its median on the
    14 ASL clips) while it widens the box a lot; someone who comes closer adds a lot to both.

    Returns:
        (box, area): the box as :func:`person_box` gives it, and the fraction of the thumbnail's
        pixels the person (or people) cover; None when nobody is there.
    """
    if alpha.dtype != np.uint8 or alpha.ndim != 2:
        raise ValueError(f"unexpected alpha: {alpha.dtype} {alpha.shape} != uint8 (H, W)")
    height, width = alpha.shape
    step_px = max(1, width // _THUMB_WIDTH)
    thumb_w, thumb_h = max(1, width // step_px), max(1, height // step_px)
    thumb = cv2.resize(alpha, (thumb_w, thumb_h), interpolation=cv2.INTER_NEAREST)
    mask = cv2.compare(thumb, 191, cv2.CMP_GT)  # sure pixels: a half-taken chair drops out
    count, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if count <= 1:
        return None
    stats = stats[1:]
    areas = stats[:, cv2.CC_STAT_AREA]
    largest = int(areas.max())
    if largest < min_area * thumb_w * thumb_h:
        return None
    kept = areas * 4 >= largest
    people = stats[kept]
    x0 = int(people[:, cv2.CC_STAT_LEFT].min())
    y0 = int(people[:, cv2.CC_STAT_TOP].min())
    x1 = int((people[:, cv2.CC_STAT_LEFT] + people[:, cv2.CC_STAT_WIDTH]).max())
    y1 = int((people[:, cv2.CC_STAT_TOP] + people[:, cv2.CC_STAT_HEIGHT]).max())
    scale_x, scale_y = width / thumb_w, height / thumb_h
    left, top = round(x0 * scale_x), round(y0 * scale_y)
    box = (left, top, round(x1 * scale_x) - left, round(y1 * scale_y) - top)
    return box, float(areas[kept].sum()) / (thumb_w * thumb_h)


def person_outside(mask: np.ndarray, crop: Crop, size: tuple[int, int],
                   below: bool = True) -> float:
    """The share of the person's pixels that ``crop`` leaves out (0 where nobody is there).

    Args:
        mask: the person's pixels, any non-zero value (e.g. ``matte > 127``), (h, w): the whole
            frame at any resolution (a thumbnail: the crop is scaled to it).
        crop: in the frame's pixels; a pixel is inside when its centre is (edges included).
        size: the frame size (w, h).
        below: False: only what the crop leaves out to its sides and above it (the crop taken
            down to the frame's bottom edge): someone cut off by the frame's bottom (a webcam)
            is framed head and shoulders, the rest of them below the crop on purpose.

    Returns:
        Pixels outside the crop over all the person's pixels, 0 to 1.
    """
    if mask.ndim != 2:
        raise ValueError(f"unexpected mask: {mask.shape} != (H, W)")
    total = int(np.count_nonzero(mask))
    if total == 0:
        return 0.0
    rows, cols = mask.shape
    scale_x, scale_y = cols / size[0], rows / size[1]
    centre_x, centre_y, crop_h = crop
    half_w, half_h = crop_h * size[0] / size[1] / 2, crop_h / 2
    # pixel i (centre i + 0.5) is inside [low, high]: i from ceil(low - 0.5) to floor(high - 0.5)
    col0 = max(0, math.ceil((centre_x - half_w) * scale_x - 0.5))
    col1 = min(cols, math.floor((centre_x + half_w) * scale_x - 0.5) + 1)
    row0 = max(0, math.ceil((centre_y - half_h) * scale_y - 0.5))
    row1 = min(rows, math.floor((centre_y + half_h) * scale_y - 0.5) + 1) if below else rows
    inside = int(np.count_nonzero(mask[row0:max(row0, row1), col0:max(col0, col1)]))
    return (total - inside) / total


def clamp_crop(crop: Crop, size: tuple[int, int], max_zoom: float) -> Crop:
    """``crop`` with its zoom within [1, max_zoom] and moved to lie inside the frame."""
    width, height = size
    crop_h = min(float(height), max(height / max_zoom, crop[2]))
    half_w, half_h = crop_h * width / height / 2, crop_h / 2
    return (min(width - half_w, max(half_w, crop[0])),
            min(height - half_h, max(half_h, crop[1])), crop_h)


def target_crop(box: Box, size: tuple[int, int], options: FramingOptions,
                crop_h: Optional[float] = None) -> Crop:
    """The crop that frames ``box``: it fills ``options.fill`` of the crop, centred.

    A box that reaches the bottom of the frame is a person cut off by it (a webcam): their
    height says nothing, so the crop is sized by their width and placed with ``headroom`` above
    the top of the box.

    Args:
        crop_h: the crop's height when given (:func:`step`'s median of recent sizes), placed as
            above; None: the height that frames ``box``.
    """
    width, height = size
    x, y, box_w, box_h = box
    cut_off = y + box_h >= height * 0.98
    if crop_h is None:
        crop_h = max(box_w * height / width, 0.0 if cut_off else float(box_h)) / options.fill
    crop_h = min(float(height), max(height / options.max_zoom, crop_h))
    centre_y = y - options.headroom * crop_h + crop_h / 2 if cut_off else y + box_h / 2
    return clamp_crop((x + box_w / 2, centre_y, crop_h), size, options.max_zoom)


def spring_step(position: Crop, velocity: Crop, target: Crop, dt_s: float,
                glide_s: float) -> tuple[Crop, Crop]:
    """Advance a critically damped spring by ``dt_s`` toward ``target``, exactly.

    ``x(t) = target + (c1 + c2 t) e^(-w t)`` with ``c1 = x0 - target``, ``c2 = v0 + w c1`` and
    ``w = 6 / glide_s`` (a step settles to 2 % in about ``glide_s``): no overshoot from rest,
    stable at any frame rate.

    Returns:
        (position, velocity) after the step, per component.
    """
    omega = 6.0 / glide_s
    decay = math.exp(-omega * dt_s)
    new_position, new_velocity = [], []
    for x, v, goal in zip(position, velocity, target):
        c1 = x - goal
        c2 = v + omega * c1
        new_position.append(goal + (c1 + c2 * dt_s) * decay)
        new_velocity.append((v - omega * c2 * dt_s) * decay)
    return tuple(new_position), tuple(new_velocity)


def _past_dead_zone(aim: Crop, wanted: Crop, size: tuple[int, int],
                    options: FramingOptions) -> Crop:
    # measured in the output (the aim's crop), so zooming in doesn't widen it on screen
    zone_h = options.dead_zone * aim[2]
    zone_w = zone_h * size[0] / size[1]
    centre_x = wanted[0] if abs(wanted[0] - aim[0]) > zone_w else aim[0]
    centre_y = wanted[1] if abs(wanted[1] - aim[1]) > zone_h else aim[1]
    crop_h = wanted[2] if abs(wanted[2] - aim[2]) > options.zoom_dead_zone * aim[2] else aim[2]
    return clamp_crop((centre_x, centre_y, crop_h), size, options.max_zoom)


def step(state: FramingState, box: Optional[Box], size: tuple[int, int],
         options: FramingOptions, dt_s: float, enabled: bool = True,
         area: float = 0.0) -> FramingState:
    """One frame of auto-framing: move the aim (median zoom, dead zone, hold) and glide the crop
    toward it.

    Args:
        state: the state after the last frame (``FramingState.whole(size)`` at the start).
        box: :func:`person_box` of this frame's matte; None when nobody is there.
        size: the frame size (w, h).
        options: zoom limit, fill, dead zones, glide and hold times.
        dt_s: the time since the last frame.
        enabled: False glides back to the whole frame.
        area: :func:`person_extent`'s area of the person: one 30 % above the median of the
            window is someone who came closer, framed at once, not after half the window.

    Returns:
        The new state; its ``crop`` is what to show.
    """
    if not dt_s > 0:
        raise ValueError(f"dt_s = {dt_s}: expected the time since the last frame, above 0 s")
    full = whole_frame(size)
    time_s = state.time_s + dt_s
    aim, empty_s = state.aim, state.empty_s
    times, heights, areas, since_s = state.times, state.heights, state.areas, state.since_s
    if not enabled:
        aim, empty_s, times, heights, areas = full, 0.0, (), (), ()
    elif box is None:
        empty_s += dt_s
        if empty_s >= options.hold_s:
            aim, times, heights, areas = full, (), (), ()  # whoever comes next is sized afresh
    else:
        empty_s = 0.0
        first = bisect.bisect_right(times, time_s - options.zoom_window_s + _WINDOW_SLACK_S)
        if first == len(times):  # nobody in the window: it starts afresh with this frame
            since_s = time_s
        times = times[first:] + (time_s,)
        heights = heights[first:] + (target_crop(box, size, options)[2],)
        areas = areas[first:] + (area,)
        # the median: a size wanted for less than half the window (an arm raised) never wins;
        # a body grown by far more than an arm adds (someone came closer) is framed at once
        missing = _missing_frames(options.zoom_window_s - (time_s - since_s), dt_s)
        grown = area > _GROWN * _median_with(areas, areas[0], missing)
        crop_h = heights[-1] if grown else _median_with(heights, heights[0], missing)
        wanted = target_crop(box, size, options, crop_h=crop_h)
        aim = _past_dead_zone(aim, wanted, size, options)
    crop, velocity = spring_step(state.crop, state.velocity, aim, dt_s, options.glide_s)
    crop = clamp_crop(crop, size, options.max_zoom)
    if (max(abs(c - a) for c, a in zip(crop, aim)) < _SETTLE_PX
            and max(abs(v) for v in velocity) < _SETTLE_PX_S):
        crop, velocity = aim, (0.0, 0.0, 0.0)
    return FramingState(crop, velocity, aim, empty_s, time_s, times, heights, areas, since_s)


def _median_with(values: tuple[float, ...], extra: float, count: int) -> float:
    """The median of ``values`` and ``count`` more of ``extra`` (as ``statistics.median`` of
    them all), without making the ``count`` copies (a camera's frames a millisecond apart would
    make thousands)."""
    ordered = sorted(values)
    at = bisect.bisect_left(ordered, extra)
    total = len(ordered) + count

    def nth(index: int) -> float:  # the index-th of them all, in order
        if index < at:
            return ordered[index]
        return extra if index < at + count else ordered[index - count]

    middle = total // 2
    return nth(middle) if total % 2 else (nth(middle - 1) + nth(middle)) / 2


def _missing_frames(missing_s: float, dt_s: float) -> int:
    """How many frames ``dt_s`` apart the window lacks before its first one, ``missing_s``
    before it was taken (0 once the window has its seconds of frames): someone who just
    appeared (or a cut) has a window as full as anyone's, its missing part their first size,
    so an arm raised in their first seconds is outvoted as it is later."""
    return max(0, round(missing_s / dt_s) - 1)


def crop_matrix(crop: Crop, size: tuple[int, int]) -> np.ndarray:
    """The 2x3 affine matrix (float32) that maps ``crop`` of the frame onto the whole output."""
    width, height = size
    centre_x, centre_y, crop_h = crop
    scale = height / crop_h
    return np.array([[scale, 0.0, width / 2 - scale * centre_x],
                     [0.0, scale, height / 2 - scale * centre_y]], np.float32)


class AutoFramer:
    """Auto-framing for a stream: ``update(alpha)`` picks the crop, ``apply(image)`` shows it.

    ``image, alpha = framer(image, alpha, time_s)`` does both for a frame and its matte.

    Args:
        options: see :class:`FramingOptions`; ``options.enabled`` is the initial ``enabled``.
        fps: the frame rate that times a step where the frames' times don't (a frame given no
            ``time_s``, the first one, one whose time is not after the last one's); None frames
            each call on its own (photos): straight to the target, no glide, no dead zone.

    Attributes:
        enabled: switch it at any time; off glides back to the whole frame.
        state: the :class:`FramingState` after the last frame (None before the first).

    Raises:
        ValueError: a frame rate that is not above 0 (:class:`FramingOptions` checks its own
            values when built).
    """

    def __init__(self, options: FramingOptions = FramingOptions(), fps: Optional[float] = 30.0):
        if fps is not None and not fps > 0:
            raise ValueError(f"frame rate {fps} must be > 0 (or None for photos)")
        self.options = options
        self.enabled = options.enabled
        self.dt_s = None if fps is None else 1.0 / fps
        self.state: Optional[FramingState] = None
        self._size: Optional[tuple[int, int]] = None
        self._cut = False  # the next frame is another shot's (cut())
        self._time_s: Optional[float] = None  # the last frame's time_s

    def reset(self) -> None:
        """Back to the whole frame at once (new source or scene)."""
        self.state = None
        self._cut = False
        self._time_s = None

    def cut(self) -> None:
        """The source cut to another shot (a looped clip starting again): the next frame, while
        framing is on, is framed where its person is at once, as a film's cut is, not glided to
        from the last shot's crop (nor zoomed in again from the whole frame, as after
        :meth:`reset`, which would show at every loop)."""
        self._cut = True

    @property
    def zoom(self) -> float:
        """The zoom of the crop shown last (1 = the whole frame)."""
        if self.state is None or self._size is None:
            return 1.0
        return self._size[1] / self.state.crop[2]

    @property
    def whole(self) -> bool:
        """True while the whole frame is shown (``apply`` passes images through)."""
        return self.state is None or self.state.crop == whole_frame(self._size)

    def update(self, alpha: np.ndarray, time_s: Optional[float] = None) -> Crop:
        """Find the person in this frame's matte and move the crop on to this frame; returns it.

        Args:
            alpha: uint8 (H, W), 255 = person.
            time_s: the frame's time in seconds (``capture.Frame.pts_s``); the crop moves on by
                the time since the last frame's, so frames a live run dropped take their time
                with them. None: by one frame at ``fps``.

        Raises:
            ValueError: an alpha that is not uint8 (H, W), a time that is not a finite number.
        """
        if alpha.dtype != np.uint8 or alpha.ndim != 2:
            raise ValueError(f"unexpected alpha: {alpha.dtype} {alpha.shape} != uint8 (H, W)")
        dt_s = self._since_last_s(time_s)
        size = (alpha.shape[1], alpha.shape[0])
        cut, self._cut = self._cut, False
        if self.state is None or self._size != size:
            self.state, self._size = FramingState.whole(size), size
        full = whole_frame(size)
        if not self.enabled and self.state.crop == full and self.state.aim == full:
            return full  # off and at rest: nothing to compute
        extent = person_extent(alpha, self.options.min_area) if self.enabled else None
        box, area = (None, 0.0) if extent is None else extent
        if cut and box is None:  # nobody in the new shot's first frame: its sizes start afresh
            self.state = replace(self.state, times=(), heights=(), areas=())
        if dt_s is None or (cut and box is not None):
            crop = full if box is None else target_crop(box, size, self.options)
            self.state = FramingState(crop, (0.0, 0.0, 0.0), crop)
        else:
            self.state = step(self.state, box, size, self.options, dt_s, self.enabled, area)
        return self.state.crop

    def _since_last_s(self, time_s: Optional[float]) -> Optional[float]:
        """The step to this frame: the time since the last frame where both have one and it
        moved on, else 1/fps (the first frame, a frame without a time, a time that stood still
        or went back: another source's clock); None for photos."""
        if time_s is not None and not math.isfinite(time_s):
            raise ValueError(f"time_s = {time_s}: expected the frame's time in seconds, a finite "
                             "number (or None)")
        last_s, self._time_s = self._time_s, time_s
        if self.dt_s is None or time_s is None or last_s is None or not time_s > last_s:
            return self.dt_s
        return time_s - last_s

    def apply(self, image: np.ndarray, out: Optional[np.ndarray] = None) -> np.ndarray:
        """Show the current crop of ``image`` (a frame, a composite, a matte) at its full size.

        Args:
            image: (H, W) or (H, W, C) uint8 of the size the last ``update`` saw.
            out: optional destination of the same shape; a new array otherwise.

        Returns:
            ``image`` itself while the whole frame is shown, else the framed image: one
            bilinear ``cv2.warpAffine`` (sub-pixel, so a glide never steps).
        """
        if self.whole:
            return image
        size = self._size
        if image.shape[:2] != (size[1], size[0]):
            raise ValueError(f"unexpected image: {image.shape[:2]} != {(size[1], size[0])}, "
                             "the size of the matte given to update()")
        return cv2.warpAffine(image, crop_matrix(self.state.crop, size), size, dst=out,
                              flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

    def __call__(self, image: Optional[np.ndarray], alpha: np.ndarray,
                 time_s: Optional[float] = None) -> tuple[Optional[np.ndarray], np.ndarray]:
        """Frame one frame and its matte: ``update(alpha, time_s)``, then ``apply`` to both.

        Args:
            image: BGR uint8 (H, W, 3), or None when only the matte is wanted.
            alpha: uint8 (H, W), 255 = person.
            time_s: the frame's time in seconds, as :meth:`update` takes it.

        Returns:
            (image, alpha), framed: the inputs themselves while the whole frame is shown.
        """
        if image is not None and image.shape[:2] != alpha.shape:
            raise ValueError(f"unexpected image: {image.shape} != {alpha.shape} + (3,)")
        self.update(alpha, time_s)
        return (None if image is None else self.apply(image)), self.apply(alpha)
