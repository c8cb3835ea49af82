"""Segmenters that wrap others: running at the frame's aspect ratio, and test-time averaging
(mirror images, scales and turns)."""

from __future__ import annotations

import logging
from typing import Callable, Optional, Sequence

import cv2
import numpy as np

from portrait.options import TEST_TIME_MODES, SegmentOptions
from portrait.segment.base import DEFAULT_INPUT_SIZE, Segmenter

log = logging.getLogger(__name__)


def size_for_frame(frame_size: tuple[int, int], short_px: int, multiple: int = 32,
                   max_aspect: float = 3.0) -> tuple[int, int]:
    """Model input (w, h) with the frame's aspect ratio and a short side of ``short_px``.

    Both sides are multiples of ``multiple`` (the model's stride), so a 1280x720 frame at 192
    gives 352x192 and a 600x800 portrait gives 192x256.
    """
    width, height = frame_size
    aspect = min(max(width / max(height, 1), 1 / max_aspect), max_aspect)
    if aspect >= 1:
        return max(multiple, round(short_px * aspect / multiple) * multiple), short_px
    return short_px, max(multiple, round(short_px / aspect / multiple) * multiple)


class AspectSegmenter(Segmenter):
    """A fully convolutional model run at the frame's own aspect ratio (no stretching).

    One TFLite conversion per input size, made on first use (and cached on disk like any
    conversion); a frame size change picks or builds the matching one. The segmenters of the
    :data:`SIZES_KEPT` sizes used last stay loaded, and an older one is closed: each holds its
    interpreter (about 60 MB for the photo model), and a folder of photos of many shapes held
    one for every input size the aspect ratios round to (4.6 GB for 26 photos with ``--tta``'s
    three short sides). One coming back is loaded again from the disk cache (about 0.1 s).
    """

    SIZES_KEPT = 4  # landscape and portrait photos, and two more shapes, stay loaded

    def __init__(self, make: Callable[[tuple[int, int]], Segmenter], short_px: int,
                 first_frame_size: Optional[tuple[int, int]] = None):
        self._make = make
        self.short_px = short_px
        self._first_frame_size = first_frame_size
        self._by_size: dict[tuple[int, int], Segmenter] = {}  # the one used last is last
        self._frame_size: Optional[tuple[int, int]] = None
        self._current = self._segmenter_for(first_frame_size or (1280, 720))  # a 720p webcam
        self.letterbox = False
        self.runtime = self._current.runtime
        self.output_kind = self._current.output_kind
        self.input_norm = getattr(self._current, "input_norm", None)
        self._closed = False

    @property
    def input_size(self) -> tuple[int, int]:
        return self._current.input_size

    @property
    def first_frame_size(self) -> Optional[tuple[int, int]]:
        """The (w, h) of the frames it was made for, or None where they were not known."""
        return self._first_frame_size

    def _segmenter_for(self, frame_size: tuple[int, int]) -> Segmenter:
        size = size_for_frame(frame_size, self.short_px)
        segmenter = self._by_size.pop(size, None)
        if segmenter is None:
            segmenter = self._make(size)
            while len(self._by_size) >= self.SIZES_KEPT:  # the one used longest ago goes
                self._by_size.pop(next(iter(self._by_size))).close()
        self._by_size[size] = segmenter
        return segmenter

    @property
    def current(self) -> Segmenter:
        """The segmenter at the latest frame's size (the first frame's before any frame)."""
        return self._current

    def at_short_side(self, short_px: int) -> "AspectSegmenter":
        """The same model run at another short side (its own conversions, closed on its own)."""
        return AspectSegmenter(self._make, short_px, self._first_frame_size)

    def segment(self, frame_bgr: np.ndarray, out: Optional[np.ndarray] = None) -> np.ndarray:
        self._check_open()
        frame_size = (frame_bgr.shape[1], frame_bgr.shape[0])
        if frame_size != self._frame_size:
            self._current = self._segmenter_for(frame_size)
            self._frame_size = frame_size
        return self._current.segment(frame_bgr, out)

    def close(self) -> None:
        for segmenter in self._by_size.values():
            segmenter.close()
        self._by_size.clear()
        self._closed = True


def sized_for_frames(make: Callable[[Optional[tuple[int, int]]], Segmenter], short_px: Optional[int],
                     size: Optional[tuple[int, int]], options: SegmentOptions) -> Segmenter:
    """The one rule every runtime sizes a model by: a model that notes the short side it was
    trained for (``short_px``) runs at each frame's aspect (:class:`AspectSegmenter`), unless
    ``--input-size`` fixes its input; any other runs at ``size``. ``--letterbox`` pads a frame
    into a fixed input, so it means nothing to a model run at the frame's own aspect and is
    named in a warning there (it used to run such a model square, the person small).

    Args:
        make: builds the runtime's segmenter for one input size (w, h).
        short_px: the model's noted short side, or None.
        size: the input size otherwise (None where the runtime takes the model's own).
        options: the segment options (input size, letterbox, first frame size).
    """
    if short_px and not options.input_size:
        if options.letterbox:
            log.warning("--letterbox is ignored: this model runs at each frame's own aspect ratio "
                        "(short side %d px); --input-size WxH fixes its input", short_px)
        return AspectSegmenter(make, int(short_px), options.frame_size)
    return make(size)


def keras_run_size(model_input, short_px: Optional[int],
                   requested: Optional[tuple[int, int]]) -> Optional[tuple[int, int]]:
    """The input size the app runs a Keras model at, the one rule behind its conversion on the
    CPU (:mod:`portrait.segment.convert`), the export that stands in for it
    (:func:`portrait.segment.exported.fresh_companion`), the size ``export`` writes and the
    ``tf.function`` of ``--backend keras`` and the GPU (:mod:`portrait.segment.factory`): a fixed
    input at its own size; a dynamic one that notes its short side at each frame's aspect
    unless ``--input-size`` fixes it (as :func:`sized_for_frames` runs it); any other at
    ``--input-size``, else 256x256. ``--letterbox`` changes where a frame goes in the input,
    never the input's size, so it takes no part.

    Args:
        model_input: the model's input, (width, height) when fixed, else ``"dynamic"``.
        short_px: the short side noted in the model file, or None (read for a dynamic input).
        requested: ``--input-size``, or None.

    Returns:
        (width, height), or None for each frame's aspect with ``short_px``.
    """
    if isinstance(model_input, tuple):
        return tuple(model_input)
    if short_px and not requested:
        return None
    return tuple(requested) if requested else tuple(DEFAULT_INPUT_SIZE)


def current_runtime(segmenter: Segmenter) -> Segmenter:
    """The segmenter that runs the model: an :class:`AspectSegmenter`'s current one, or
    ``segmenter`` itself (what :func:`sized_for_frames` returned is either)."""
    return segmenter.current if isinstance(segmenter, AspectSegmenter) else segmenter


# Short sides of --tta scales, as shares of the model's own: a portrait that fills 5/6, all and
# 7/6 of the cells it was trained to fill (192 px gives 160, 192 and 224).
TEST_TIME_SCALES = (5 / 6, 1.0, 7 / 6)


def tta_short_sides(short_px: int, multiple: int = 32) -> tuple[int, ...]:
    """The short sides ``--tta scales`` runs a model at, largest first, each a multiple of the
    stride (192 gives (224, 192, 160); 160 gives (192, 160, 128))."""
    sides = {max(multiple, round(short_px * share / multiple) * multiple) for share in TEST_TIME_SCALES}
    return tuple(sorted(sides, reverse=True))


# Turns of --tta turns, in degrees anticlockwise: a portrait tilted a little either way, well inside
# the 15 degrees that training crops are turned by (AugmentOptions.rotation_deg).
TEST_TIME_TURNS_DEG = (8.0, -8.0)
# What fills a turned view where the turn leaves the frame: a mid grey, as training crops are filled
# with a grey level where they leave the photo (AugmentOptions.pad "constant").
TURN_FILL = 128


class TestTimeAverage(Segmenter):
    """Test-time augmentation: the mean of a model's probability over several views of a frame.

    Each view is the same model at one input size (``views``), run on the frame and on its
    mirror image (the result flipped back), and, for each angle in ``turns``, on both turned by
    that angle about their centre (the result turned back). The outputs are brought to the grid
    of ``views[0]``, the largest (bilinear), and averaged per pixel over the views that saw it:
    a turned view cuts off the frame's corners, which the others still see. A model errs
    differently on the mirror image, when the subject fills more or fewer of its cells, and
    when it is tilted; the mean keeps what they agree on. It costs ``2 * len(views) * (1 +
    len(turns))`` model passes. What it runs at and how (input size, runtime, letterbox, output
    kind, input scaling) is ``views[0]``'s.

    Args:
        views: segmenters of one model at different input sizes, the largest first; closed
            with this one.
        turns: angles in degrees (anticlockwise) to also run every view at; none by default.
    """

    __test__ = False  # not a pytest class, whatever its name

    def __init__(self, views: Sequence[Segmenter], turns: Sequence[float] = ()):
        if not views:
            raise ValueError("TestTimeAverage needs at least one view, got 0")
        self.views = list(views)
        self.turns = tuple(float(angle) for angle in turns)
        self.description = views[0].description
        self._closed = False

    input_size = property(lambda self: self.views[0].input_size)
    runtime = property(lambda self: self.views[0].runtime)
    letterbox = property(lambda self: self.views[0].letterbox)
    output_kind = property(lambda self: self.views[0].output_kind)
    input_norm = property(lambda self: self.views[0].input_norm)

    @property
    def passes(self) -> int:
        """Model passes per frame."""
        return 2 * len(self.views) * (1 + len(self.turns))

    def segment(self, frame_bgr: np.ndarray, out: Optional[np.ndarray] = None) -> np.ndarray:
        self._check_open()
        # Every segmenter returns ``out`` or a new array the caller owns (OutputReader), and
        # refuses an ``out`` of the wrong shape: the first view can be accumulated in place.
        result = self.views[0].segment(frame_bgr, out)
        flipped = cv2.flip(frame_bgr, 1)
        height, width = result.shape
        for index, view in enumerate(self.views):
            if index:
                result += _resized(view.segment(frame_bgr), width, height)
            result += _resized(cv2.flip(view.segment(flipped), 1), width, height)
        if not self.turns:
            result *= 1.0 / self.passes
            return result
        seen = np.full((height, width), 2.0 * len(self.views), np.float32)
        frame_size = (frame_bgr.shape[1], frame_bgr.shape[0])
        for angle in self.turns:
            turn = cv2.getRotationMatrix2D(((frame_size[0] - 1) / 2, (frame_size[1] - 1) / 2), angle, 1.0)
            for image, mirrored in ((frame_bgr, False), (flipped, True)):
                turned = cv2.warpAffine(image, turn, frame_size, flags=cv2.INTER_LINEAR,
                                        borderMode=cv2.BORDER_CONSTANT, borderValue=(TURN_FILL,) * 3)
                for view in self.views:
                    back, covered = turned_back(view.segment(turned), turn, frame_size, (width, height))
                    if mirrored:
                        back, covered = cv2.flip(back, 1), cv2.flip(covered, 1)
                    result += back
                    seen += covered
        result /= seen
        return result

    def close(self) -> None:
        for view in self.views:
            view.close()
        self._closed = True


def turned_back(probability: np.ndarray, turn: np.ndarray, frame_size: tuple[int, int],
                grid_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """A model's output on a turned frame, turned back onto a grid of the unturned frame.

    Args:
        probability: (h, w) output on the frame turned by ``turn``; it spans the whole frame.
        turn: the 2x3 matrix (``cv2.getRotationMatrix2D``) that turned the frame's pixels.
        frame_size: the frame's (width, height).
        grid_size: (width, height) of the grid to bring the output to.

    Returns:
        The output on that grid, zero where the turned frame did not reach, and how much of each
        grid pixel it covered (0..1, fractional at the turned frame's edge): the weight the
        output has there in an average.
    """
    frame_w, frame_h = frame_size
    grid_w, grid_h = grid_size

    def to_grid(w: int, h: int) -> np.ndarray:  # frame pixel centres to a w x h grid's
        sx, sy = w / frame_w, h / frame_h
        return np.array([[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5], [0, 0, 1]])

    height, width = probability.shape
    # A grid pixel of the unturned frame -> its frame point -> where the turn took that point
    # -> the output's pixel there.
    grid_to_output = to_grid(width, height) @ np.vstack([turn, [0, 0, 1]]) @ np.linalg.inv(
        to_grid(grid_w, grid_h))

    def warp(image: np.ndarray) -> np.ndarray:
        return cv2.warpAffine(image, grid_to_output[:2], (grid_w, grid_h),
                              flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=0)

    return warp(probability.astype(np.float32, copy=False)), warp(np.ones_like(probability, np.float32))


def _resized(probability: np.ndarray, width: int, height: int) -> np.ndarray:
    if probability.shape == (height, width):
        return probability
    return cv2.resize(probability, (width, height), interpolation=cv2.INTER_LINEAR)


def with_test_time(segmenter: Segmenter, mode: str) -> Segmenter:
    """Wrap ``segmenter`` for ``--tta mode`` (off, mirror, scales, turns); see
    :class:`TestTimeAverage`.

    ``scales`` and ``turns`` need a model run at the frame's aspect (an :class:`AspectSegmenter`)
    for their three sizes; any other runs at its one size (``turns`` still turns it), and its
    description says so.
    """
    if mode == "off":
        return segmenter
    if mode not in TEST_TIME_MODES:
        raise ValueError(f"--tta must be one of {', '.join(TEST_TIME_MODES)}, got {mode!r}")
    views = [segmenter]
    turns = TEST_TIME_TURNS_DEG if mode == "turns" else ()
    turned = (f", and turned by {' and '.join(f'{angle:+g}' for angle in turns)} degrees"
              if turns else "")
    if mode in ("scales", "turns") and isinstance(segmenter, AspectSegmenter):
        sides = tta_short_sides(segmenter.short_px)
        views = [segmenter if side == segmenter.short_px else segmenter.at_short_side(side)
                 for side in sides]
        what = (f"averaged over short sides {', '.join(str(side) for side in sorted(sides))} px, "
                f"each with its mirror image{turned} (--tta {mode})")
    elif mode in ("scales", "turns"):
        width, height = segmenter.input_size
        what = (f"averaged with its mirror image{turned} (--tta {mode}; a model run at a fixed "
                f"{width}x{height} has no other scale)")
    else:
        what = "averaged with its mirror image (--tta mirror)"
    wrapped = TestTimeAverage(views, turns)
    wrapped.description = f"{segmenter.description}, {what}"
    return wrapped
