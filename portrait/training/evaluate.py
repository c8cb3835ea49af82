"""Score models through the app's own matte path: ``python -m portrait.evaluate``.

Each image goes exactly where ``python app.py --image X --matte`` sends it: the segmenter, then
the guided-filter refiner at full resolution (the app's, :class:`RefineOptions`), giving
a uint8 alpha matte. The matte is thresholded at 127 (alpha > 127 = person) and compared with
the mask (>= 128 = person). Scores are per image, then averaged over images: ``miou`` is the
mean person IoU. ``ms_per_image`` is the median time of the segmenter call (model inference,
including its resize in and out), ``ms_refine`` the median refinement time.

stdout carries one JSON line and nothing else; logs, the progress bar and the side-by-side
table of ``--compare`` go to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import heapq
import json
import logging
import os
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence, get_args

import cv2
import numpy as np

from portrait.capture import read_image
from portrait.cli import (
    OneLineParser,
    import_tensorflow_quietly,
    configure_logging,
    field_number,
    given,
    model_size,
    named_ignored,
    options_by_flag,
    threads_all_cores,
    typed_options,
)
from portrait.errors import (InputError, StopRequested, run_command, stop_name,
                             stop_on_termination_signals)
from portrait.option_checks import POSITIVE, CheckedOptions, bounded
from portrait.options import (
    PHOTO_MIN_ISLAND,
    TEST_TIME_MODES,
    Backend,
    Device,
    InputNorm,
    PipelineOptions,
    RefineOptions,
    SegmentOptions,
    SubjectOptions,
)
from portrait.pipeline import FrameProcessor, Packet
from portrait.refine import Refiner
from portrait.segment import create_segmenter, resolve_model_path
from portrait.sink import IMAGE_WRITE_EXTENSIONS, write_image
from portrait.sink.paths import _file_ids, _refuse_input, lies_in
from portrait.training.video_metrics import ALPHA_THRESHOLD, STRAY_FRAME_THRESHOLD
from portrait.words import counted

# portrait.training.metrics and portrait.training.data load TensorFlow when imported, so they are imported inside
# the functions that use them: a usage error or a missing file answers at once, and main() can
# hide TensorFlow's start-up chatter.

log = logging.getLogger("portrait.training.evaluate")  # not "__main__" under python -m

MASK_THRESHOLD = 128  # mask >= 128 is person (masks are 0/255; anti-aliased ones split evenly)
SHEET_ROW_PX = 200
# Matte farther than this share of the image's long side from every labelled person is "far":
# the margin subject selection uses to tell a region apart from the person.
FAR_MARGIN = SubjectOptions().margin
# The app's refinement for photos (``--image``): the guided filter, then small islands cleared.
PHOTO_REFINE = RefineOptions(min_island=PHOTO_MIN_ISLAND, confine=0.0)  # the --image path


@dataclass(frozen=True)
class ImageScore:
    """One model's scores on one image, with its stage times in milliseconds."""

    stem: str
    iou: float
    dice: float
    pixel_accuracy: float
    boundary_f: float
    far: float
    iou_edge_2px: float
    iou_edge_5px: float
    segment_ms: float
    refine_ms: float


def score_alpha(truth: np.ndarray, alpha: np.ndarray) -> dict[str, float]:
    """Score an alpha matte against a mask.

    Args:
        truth: bool (H, W) person mask.
        alpha: uint8 (H, W) alpha matte, 255 = person; person where alpha > 127.

    Returns:
        ``iou``, ``dice``, ``pixel_accuracy``, ``boundary_f`` (2 px tolerance) and ``far`` (the
        share of the image that is person farther than ``FAR_MARGIN`` of its long side from every
        labelled person: a chair or a curtain taken for one), ``iou_edge_2px`` and
        ``iou_edge_5px`` (the IoU if every wrong pixel within 2 or 5 px of the labelled outline
        were right: how much of what is missed is where the line is drawn).

    Raises:
        ValueError: shapes or dtypes that differ from the above.
    """
    from portrait.training import metrics

    if truth.dtype != bool or alpha.dtype != np.uint8 or truth.shape != alpha.shape or alpha.ndim != 2:
        raise ValueError(
            f"unexpected truth/alpha: {truth.dtype} {truth.shape} / {alpha.dtype} {alpha.shape} "
            "!= bool (H, W) / uint8 (H, W)"
        )
    pred = alpha > ALPHA_THRESHOLD
    # What the model misses by drawing the line a pixel or two off, not by what it decides.
    edge_2px, edge_5px = metrics.iou_edges_right(truth, pred, (2, 5))
    return {
        "iou": metrics.iou(truth, pred),
        "dice": metrics.dice(truth, pred),
        "pixel_accuracy": metrics.pixel_accuracy(truth, pred),
        "boundary_f": metrics.boundary_f(truth, pred),
        "far": metrics.far_fraction(truth, pred, FAR_MARGIN * max(truth.shape)),
        "iou_edge_2px": edge_2px,
        "iou_edge_5px": edge_5px,
    }


def read_pair(image_path: str | Path, mask_path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read an image as the app does (BGR uint8) and its mask as a bool person mask.

    A mask of another size than the image is resized to it (nearest neighbour).

    Raises:
        InputError: an unreadable image or mask.
    """
    image = read_image(image_path)
    return image, read_mask(mask_path, image.shape[:2]) >= MASK_THRESHOLD


def check_mask_scale(mask: np.ndarray, mask_path: str | Path) -> np.ndarray:
    """Check a mask as its file holds it (read with ``cv2.IMREAD_UNCHANGED``) and return it as
    uint8 grey (H, W). Refuses the masks that OpenCV's and TensorFlow's grey reads turn silently
    into wrong labels and scores: a 16-bit one (0 and 255 in 16 bits read as 0: nobody), one
    drawn in colour (pure red reads as 76, a soft label of 0.3), one written as 0 and 1 (marks
    nobody), one of a single grey level drawn through its transparency (a selection saved as a
    cut-out: black everywhere, marks nobody). Grey saved as RGB or RGBA (equal colour channels;
    alpha ignored) is grey.

    Raises:
        InputError: a mask that is not 8-bit, whose colour channels differ, that is one grey
            level with an alpha that is not, or whose largest value is 1.
    """
    if mask.dtype != np.uint8:
        raise InputError(f"mask '{mask_path}' is {8 * mask.dtype.itemsize}-bit; masks are 8-bit, "
                         "0 (background) to 255 (person): save it as an 8-bit PNG")
    if mask.ndim == 3:
        colour = mask[..., :3]
        differ = (colour != colour[..., :1]).any(axis=-1)
        if differ.any():
            y, x = (int(v) for v in np.unravel_index(np.argmax(differ), differ.shape))
            blue, green, red = (int(v) for v in colour[y, x])
            raise InputError(f"mask '{mask_path}' is in colour (red, green, blue = {red}, {green}, "
                             f"{blue} at x={x}, y={y}); masks are grey, 0 (background) to 255 "
                             "(person): save it as a grey PNG")
        if mask.shape[-1] == 4 and colour.min() == colour.max() and mask[..., 3].min() < 255:
            # One grey level, drawn through its transparency (a selection saved as a cut-out):
            # the grey reads ignore the alpha and would mark everyone or nobody.
            raise InputError(f"mask '{mask_path}' is one grey level ({int(colour.max())}) drawn "
                             "through its transparency; masks are grey, 0 (background) to 255 "
                             "(person): save its alpha channel as a grey PNG")
        mask = mask[..., 0]
    if mask.size and int(mask.max()) == 1:
        raise InputError(f"mask '{mask_path}' holds 0 and 1; masks are 0 (background) to 255 "
                         "(person): multiply it by 255")
    return mask


def stretch_note(image_shape: tuple[int, ...], mask_shape: tuple[int, ...]) -> str:
    """What resizing a mask of ``mask_shape`` to its photo's ``image_shape`` (H, W, ...) does
    beyond scaling: ", stretching it (...)" where their aspect ratios differ by over 1 %, else ""."""
    (height, width), (mask_height, mask_width) = image_shape[:2], mask_shape[:2]
    if abs(width * mask_height - height * mask_width) > 0.01 * width * mask_height:
        return ", stretching it (check that they belong together)"
    return ""


def read_unchanged(path: str | Path) -> Optional[np.ndarray]:
    """An image file as it holds it (``cv2.IMREAD_UNCHANGED``: bit depth, channels, no EXIF
    orientation), or None where it cannot be read or decoded.

    The bytes are read in Python and decoded from memory: OpenCV's own file functions take a
    path as UTF-8 text and crash the process (a segmentation fault) on a file name that is not
    UTF-8, such as a Latin-1 name on Linux.
    """
    try:
        data = np.fromfile(os.fspath(path), np.uint8)
    except (OSError, ValueError):
        return None
    if not data.size:
        return None
    try:
        return cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    except cv2.error:
        return None


def read_mask(mask_path: str | Path, shape: tuple[int, int]) -> np.ndarray:
    """Read a mask as uint8 grey (0..255) of ``shape`` (H, W), resized (nearest) if it differs.

    Raises:
        InputError: an unreadable mask, or one that is not 8-bit grey 0..255
            (:func:`check_mask_scale`).
    """
    mask = read_unchanged(mask_path)
    if mask is None:
        raise InputError(f"cannot read mask '{mask_path}': missing or not an image; check the file")
    mask = check_mask_scale(mask, mask_path)
    height, width = shape
    if mask.shape != (height, width):
        log.warning("mask '%s' is %dx%d, its image %dx%d: resizing the mask%s", mask_path,
                    mask.shape[1], mask.shape[0], width, height, stretch_note(shape, mask.shape))
        mask = cv2.resize(mask, (width, height), interpolation=cv2.INTER_NEAREST)
    return mask


class ModelScorer:
    """One model on the app's matte path (segmenter → refiner → alpha), scoring images.

    Args:
        segment: which model and how it runs (as the app's model options).
        refine: the refinement stage; the app's default unless told otherwise.

    Raises:
        ModelError, DeviceError: from :func:`portrait.segment.create_segmenter`.
    """

    def __init__(self, segment: SegmentOptions, refine: RefineOptions = PHOTO_REFINE):
        self.model = segment.model
        self.tta = segment.tta
        self.refine = refine
        self.segmenter = create_segmenter(segment)
        self.description = self.segmenter.description
        # Literally the app's image mode: no smoother, no mask reuse, matte output.
        self.processor = FrameProcessor(self.segmenter, None, Refiner(refine), None, matte=True,
                                        options=PipelineOptions(reuse_still=False))
        self.scores: list[ImageScore] = []

    def alpha(self, image: np.ndarray) -> tuple[np.ndarray, dict[str, float]]:
        """Return the app's alpha matte for ``image`` and the stage times in ms.

        Does what ``FrameProcessor.process`` does, keeping the packet to read its timings.
        """
        packet = Packet(image=image, index=0, time_s=time.perf_counter())
        self.processor.segment(packet)
        self.processor.finish(packet)
        return packet.output, packet.ms

    def score(self, stem: str, image: np.ndarray, truth: np.ndarray) -> tuple[ImageScore, np.ndarray]:
        """Run one image, score it, remember the score; returns (score, alpha)."""
        alpha, ms = self.alpha(image)
        score = ImageScore(stem=stem, **score_alpha(truth, alpha),
                           segment_ms=ms["segment"], refine_ms=ms["refine"])
        self.scores.append(score)
        return score, alpha

    def summary(self) -> dict:
        """The JSON summary: means of the scores, medians of the times, and what ran."""
        return summarize(self.scores, model=self.model, tta=self.tta,
                         description=self.description, refine=self.refine.enabled)

    def close(self) -> None:
        """Release the model. Safe to call twice."""
        self.segmenter.close()

    def __enter__(self) -> "ModelScorer":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def summarize(scores: Sequence[ImageScore], **extra) -> dict:
    """Average per-image scores and take median times.

    Args:
        scores: per-image scores of one model (not empty).
        extra: further keys for the summary (model, description, ...).

    Returns:
        ``n``, ``miou``, ``dice``, ``pixel_accuracy``, ``boundary_f``, ``far_mean`` (means over
        images), ``far_share`` (the share of images with ``far`` above 0.2 %, the webcam measure's
        bar), ``miou_edge_2px`` and ``miou_edge_5px`` (means of the IoU with the errors along
        the outline counted right), ``ms_per_image`` and ``ms_refine`` (medians), then ``extra``.

    Raises:
        ValueError: no scores.
    """
    if not scores:
        raise ValueError("no scores to summarise: 0 images != at least 1")

    def mean(values) -> float:
        return round(float(np.mean(np.asarray(list(values), np.float64))), 5)

    return {
        "n": len(scores),
        "miou": mean(s.iou for s in scores),
        "dice": mean(s.dice for s in scores),
        "pixel_accuracy": mean(s.pixel_accuracy for s in scores),
        "boundary_f": mean(s.boundary_f for s in scores),
        "far_mean": mean(s.far for s in scores),
        "far_share": mean(s.far > STRAY_FRAME_THRESHOLD for s in scores),
        "miou_edge_2px": mean(s.iou_edge_2px for s in scores),
        "miou_edge_5px": mean(s.iou_edge_5px for s in scores),
        "ms_per_image": round(statistics.median(s.segment_ms for s in scores), 3),
        "ms_refine": round(statistics.median(s.refine_ms for s in scores), 3),
        **extra,
    }


def paired_difference(first: Sequence[ImageScore], other: Sequence[ImageScore]) -> dict:
    """How ``other`` compares with ``first`` image by image (the same images, in the same order).

    A difference of means between two models on a few dozen images is mostly noise; the standard
    error of the per-image difference says how much of it to believe.

    Returns:
        ``miou_diff`` (mean of other − first IoU per image), ``miou_diff_se`` (its standard
        error; None for a single image), ``images_higher`` and ``images_lower`` (how many images
        ``other`` scores higher or lower on).

    Raises:
        ValueError: the two lists are not scores of the same images.
    """
    stems, other_stems = [s.stem for s in first], [s.stem for s in other]
    if not stems or stems != other_stems:
        raise ValueError(f"paired scores need the same images in the same order, at least one: "
                         f"{counted(len(other_stems), 'image')} from {other_stems[:3]} != "
                         f"{counted(len(stems), 'image')} from {stems[:3]}")
    diff = np.array([b.iou - a.iou for a, b in zip(first, other)], np.float64)
    se = float(diff.std(ddof=1) / np.sqrt(diff.size)) if diff.size > 1 else None
    return {
        "miou_diff": round(float(diff.mean()), 5),
        "miou_diff_se": None if se is None else round(se, 5),
        "images_higher": int(np.sum(diff > 0)),
        "images_lower": int(np.sum(diff < 0)),
    }


# ---------------------------------------------------------------- contact sheet


@dataclass(order=True)
class _Worst:
    """A heap entry: the negated IoU first, so the heap top is the best of the worst kept."""

    neg_iou: float
    order: int
    stem: str = field(compare=False)
    image: np.ndarray = field(compare=False)
    truth: np.ndarray = field(compare=False)
    alphas: list = field(compare=False)
    ious: list = field(compare=False)


class WorstImages:
    """Keeps the ``count`` images with the lowest IoU of the first model, and their mattes."""

    def __init__(self, count: int):
        self.count = count
        self._heap: list[_Worst] = []
        self._seen = 0

    def offer(self, stem: str, image: np.ndarray, truth: np.ndarray,
              alphas: Sequence[np.ndarray], ious: Sequence[float]) -> None:
        """Consider one image; ``alphas``/``ious`` are per model, the first one ranks."""
        if self.count <= 0:
            return
        self._seen += 1
        entry = _Worst(-ious[0], self._seen, stem, image, truth, [a.copy() for a in alphas], list(ious))
        if len(self._heap) < self.count:
            heapq.heappush(self._heap, entry)
        elif entry > self._heap[0]:
            heapq.heapreplace(self._heap, entry)

    def rows(self) -> list[_Worst]:
        """The kept images, worst first."""
        return sorted(self._heap, reverse=True)


def _thumbnail(image: np.ndarray, height_px: int) -> np.ndarray:
    height, width = image.shape[:2]
    size = (max(1, round(width * height_px / height)), height_px)
    shrinking = height_px <= height
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def prediction_view(alpha: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """The matte in grey, with its errors tinted: red = false person, blue = missed person.

    Args:
        alpha: uint8 (H, W) matte.
        truth: bool (H, W) mask.

    Returns:
        BGR uint8 (H, W, 3).
    """
    view = cv2.cvtColor(alpha, cv2.COLOR_GRAY2BGR)
    pred = alpha > ALPHA_THRESHOLD
    false_person, missed = pred & ~truth, truth & ~pred
    view[false_person] = (view[false_person] // 2 + np.array([0, 0, 127], np.uint8))
    view[missed] = (view[missed] // 2 + np.array([127, 0, 0], np.uint8))
    return view


def _label(tile: np.ndarray, text: str) -> None:
    """Draw ``text`` in the top-left corner on a dark box, in place."""
    # OpenCV's fonts draw ASCII only, and a stem from a file name that is not UTF-8 (its bytes
    # as surrogates) crashed the process: '?' stands for any other character.
    text = text.encode("ascii", "replace").decode("ascii")
    font, scale, thickness = cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1
    (width, height), baseline = cv2.getTextSize(text, font, scale, thickness)
    cv2.rectangle(tile, (0, 0), (width + 6, height + baseline + 6), (0, 0, 0), cv2.FILLED)
    cv2.putText(tile, text, (3, height + 3), font, scale, (255, 255, 255), thickness, cv2.LINE_AA)


def sheet_row(stem: str, image: np.ndarray, truth: np.ndarray, alphas: Sequence[np.ndarray],
              ious: Sequence[float], names: Sequence[str], height_px: int = SHEET_ROW_PX) -> np.ndarray:
    """One contact-sheet row: image | truth | prediction of each model, ``height_px`` high.

    The image tile is labelled with the stem, each prediction with its model's name and IoU.

    Returns:
        BGR uint8 (height_px, W, 3).
    """
    tiles = [_thumbnail(image, height_px),
             _thumbnail(cv2.cvtColor(truth.astype(np.uint8) * 255, cv2.COLOR_GRAY2BGR), height_px)]
    _label(tiles[0], stem)
    _label(tiles[1], "truth")
    for alpha, iou, name in zip(alphas, ious, names):
        tile = _thumbnail(prediction_view(alpha, truth), height_px)
        _label(tile, f"IoU {iou:.3f} {name}")  # IoU first: a narrow tile cuts the name
        tiles.append(tile)
    return np.hstack(tiles)


def contact_sheet(rows: Sequence[np.ndarray]) -> np.ndarray:
    """Stack rows of equal height; narrower rows are padded on the right with black.

    Raises:
        ValueError: no rows.
    """
    if not rows:
        raise ValueError("no rows for the contact sheet: 0 != at least 1")
    width = max(row.shape[1] for row in rows)
    padded = [cv2.copyMakeBorder(row, 0, 0, 0, width - row.shape[1], cv2.BORDER_CONSTANT, value=0)
              for row in rows]
    return np.vstack(padded)


# ---------------------------------------------------------------- the run


@dataclass(frozen=True)
class EvalOptions(CheckedOptions):
    """What to evaluate and where the results go; checked when built (a value of the wrong type
    or out of its range raises :class:`~portrait.option_checks.OptionTypeError` or
    :class:`~portrait.option_checks.OptionValueError` naming the field, the value and its range).

    Attributes:
        data: a folder with ``images/`` and ``masks/``.
        list_file: a file of stems, one per line; None = every image with a mask.
        max_items: only the first N pairs (None: all), at least 1.
        sheet: write a contact sheet of the worst images here (PNG).
        worst: how many images the sheet shows, at least 1.
        progress: show a progress bar on stderr.
    """

    data: str
    list_file: Optional[str] = None
    max_items: Optional[int] = bounded(None, POSITIVE)
    sheet: Optional[str] = None
    worst: int = bounded(12, POSITIVE)
    progress: bool = True


COMPARE_HINT = "pass --compare PATH to a .hdf5 or .tflite model"


def check_models(models: Sequence[SegmentOptions]) -> None:
    """Every model file exists and is of a type a segmenter runs, before any model loads; one
    that is not is named with its option (--model, --compare).

    Raises:
        ModelError: a model file that does not exist, or a file of another type (a text file
            given as --compare was refused only once --model had loaded).
    """
    from portrait.errors import ModelError
    from portrait.segment.locate import KERAS_SUFFIXES, MODEL_HINT

    for index, model in enumerate(models):
        option, hint = ("--compare", COMPARE_HINT) if index else ("--model", MODEL_HINT)
        path = resolve_model_path(model.model, hint)
        suffix = path.suffix.lower()
        if suffix not in (*KERAS_SUFFIXES, ".tflite"):
            raise ModelError(f"{option} '{model.model}' is not a model file: its type "
                             f"'{suffix or '(none)'}' is none of .hdf5, .h5, .keras or .tflite; "
                             f"{hint}")


def check_paths(options: EvalOptions, models: Sequence[SegmentOptions]) -> None:
    """Fail fast, before any model loads, on missing models, data, list file or sheet folder.

    Raises:
        ModelError: a model file that does not exist.
        InputError: a missing data folder, list file, or folder for the sheet; a file given as
            the data folder or a folder as the list file; a sheet inside the data folder.
    """
    check_models(models)
    data = Path(options.data)
    if data.is_file():  # train takes a list file as --data; scoring takes it as --list
        if (data.parent / "images").is_dir():
            raise InputError(f"--data '{data}' is a file, not a data folder; to score the stems "
                             f"it lists, pass --data {data.parent} --list {data}")
        raise InputError(f"--data '{data}' is a file, not a data folder; pass --data DIR with "
                         "images/ and masks/ (and a list of stems as --list FILE)")
    if not data.is_dir():
        raise InputError(f"data folder '{data}' not found; pass --data DIR with images/ and masks/")
    if options.list_file is not None and Path(options.list_file).is_dir():
        raise InputError(f"--list '{options.list_file}' is a folder, not a list file; pass --list "
                         "FILE of image stems, one per line, and the folder as --data")
    if options.list_file is not None and not Path(options.list_file).is_file():
        raise InputError(f"list file '{options.list_file}' not found; pass --list FILE of image "
                         "stems, one per line, or leave it out to use every image with a mask")
    if options.sheet is not None:
        sheet = Path(options.sheet)
        if sheet.is_dir():
            raise InputError(f"cannot write the sheet '{sheet}': it is a folder; give a file "
                             "name, e.g. worst.png")
        if not sheet.parent.is_dir():
            raise InputError(f"cannot write the sheet '{sheet}': folder '{sheet.parent}' not found; "
                             "create it or pass another --sheet path")
        if not os.access(sheet.parent, os.W_OK | os.X_OK):
            raise InputError(f"cannot write the sheet '{sheet}': folder '{sheet.parent}' is not "
                             "writable; pass another --sheet path")
        if sheet.suffix.lower() not in IMAGE_WRITE_EXTENSIONS:  # the types write_image writes
            raise InputError(f"cannot write the sheet '{sheet}': unknown image type; use a .png path")
        # images/ and masks/ may be links to another folder (a training split's into the data
        # root): the sheet may lie in none of them.
        if any(lies_in(sheet, folder) for folder in (data, data / "images", data / "masks")):
            raise InputError(f"refusing to write the sheet '{sheet}' inside the data folder "
                             f"'{data}' (it holds the images and masks scored); choose a path "
                             "outside it")


def list_pairs(options: EvalOptions) -> list[tuple[str, str]]:
    """The (image, mask) pairs to score, in list order.

    Raises:
        InputError: a bad folder layout, an empty list, or a listed stem without image or mask.
    """
    from portrait.training.data import find_pairs, read_stems

    stems = None
    if options.list_file is not None:
        stems = read_stems(Path(options.list_file))
        if not stems:
            raise InputError(f"list file '{options.list_file}' lists no stems; put one image stem "
                             "per line")
        twice = sorted(stem for stem, count in Counter(stems).items() if count > 1)
        if twice:  # a mean over the images, not over the lines
            log.warning("list file '%s' names %s more than once (%s%s); each is scored "
                        "once", options.list_file, counted(len(twice), "stem"),
                        ", ".join(twice[:5]),
                        ", ..." if len(twice) > 5 else "")
            stems = list(dict.fromkeys(stems))
    pairs = find_pairs(Path(options.data), stems)
    if options.max_items is not None:
        pairs = pairs[: options.max_items]
    return pairs


def evaluate(options: EvalOptions, models: Sequence[SegmentOptions],
             refine: RefineOptions = PHOTO_REFINE,
             skipped: Optional[list[tuple[str, InputError]]] = None) -> list[dict]:
    """Score each model on the data, interleaved image by image (same load, same images).

    Args:
        options: data, list, limits, sheet.
        models: the first one ranks the worst images for the sheet; the others are compared.
        refine: the refinement stage for every model.
        skipped: if given, a pair that cannot be read is skipped and recorded here, as a
            batch of photos is (else it ends the run); see :func:`score_pairs`.

    Returns:
        One summary per model (see :func:`summarize`), in ``models`` order; each compared
        model's has ``paired``, its image-by-image difference from the first model (see
        :func:`paired_difference`).

    Raises:
        InputError, ModelError, DeviceError: bad data, models or paths.
    """
    check_paths(options, models)
    worst = WorstImages(options.worst if options.sheet else 0)
    pairs = list_pairs(options)
    if options.sheet:  # nor be one of the files scored (a link or another name for it)
        _refuse_input(Path(options.sheet), _file_ids(path for pair in pairs for path in pair),
                      "--sheet")
    summaries = score_pairs(pairs, models, refine, options.progress, worst, skipped)
    if options.sheet:
        names = [Path(model.model).stem for model in models]
        rows = [sheet_row(w.stem, w.image, w.truth, w.alphas, w.ious, names) for w in worst.rows()]
        write_image(Path(options.sheet), contact_sheet(rows))
        log.info("contact sheet of the %s by IoU written to %s", counted(len(rows), "worst image"),
                 options.sheet)
    return summaries


def score_pairs(pairs: Sequence[tuple[str, str]], models: Sequence[SegmentOptions],
                refine: RefineOptions = PHOTO_REFINE, progress: bool = True,
                worst: Optional["WorstImages"] = None,
                skipped: Optional[list[tuple[str, InputError]]] = None) -> list[dict]:
    """Score each model on (image, mask) pairs, interleaved image by image (same load, same images).

    Args:
        pairs: image and mask paths.
        models: the first one ranks the worst images for ``worst``; the others are compared.
        refine: the refinement stage for every model.
        progress: show a progress bar on stderr.
        worst: collects the worst images for a contact sheet, if given.
        skipped: if given, a pair that cannot be read is logged, recorded here (image path,
            error) and left out, so that one bad file does not discard the rest.

    Returns:
        One summary per model (see :func:`summarize`), in ``models`` order; each compared
        model's has ``paired`` (see :func:`paired_difference`).

    Raises:
        InputError: a pair that cannot be read (without ``skipped``), or none that can.
        KeyboardInterrupt, StopRequested: a stop (Ctrl-C, SIGTERM) while scoring; after at
            least one image, it carries the summaries of the images every model scored as
            ``partial_scores``, so the caller can report them rather than lose them.
    """
    from tqdm import tqdm

    worst = worst or WorstImages(0)
    with contextlib.ExitStack() as stack:
        scorers = [stack.enter_context(ModelScorer(model, refine)) for model in models]
        try:
            for image_path, mask_path in tqdm(pairs, unit="image", desc="evaluate",
                                              file=sys.stderr, disable=not progress,
                                              dynamic_ncols=True):
                stem = Path(image_path).stem
                try:
                    image, truth = read_pair(image_path, mask_path)
                except InputError as error:
                    if skipped is None:
                        raise
                    log.warning("skipped: %s", error)
                    skipped.append((image_path, error))
                    continue
                results = [scorer.score(stem, image, truth) for scorer in scorers]
                worst.offer(stem, image, truth, [alpha for _, alpha in results],
                            [score.iou for score, _ in results])
        except (KeyboardInterrupt, StopRequested) as stop:
            scored = min(len(scorer.scores) for scorer in scorers)
            if scored:  # the images every model scored (a stop may fall between two models)
                for scorer in scorers:
                    del scorer.scores[scored:]
                stop.partial_scores = _summaries(scorers)
            raise
        if skipped and len(skipped) == len(pairs):
            raise skipped[0][1]
        return _summaries(scorers)


def _summaries(scorers: Sequence[ModelScorer]) -> list[dict]:
    """Each scorer's summary, the compared ones with their image-by-image difference from the
    first (:func:`paired_difference`)."""
    summaries = [scorer.summary() for scorer in scorers]
    for scorer, summary in zip(scorers[1:], summaries[1:]):
        summary["paired"] = paired_difference(scorers[0].scores, scorer.scores)
    return summaries


def model_label(model: str, tta: str = "off") -> str:
    """How tables name a model: its file name, and its test-time augmentation when it has one."""
    name = Path(model).name
    return name if tta == "off" else f"{name} (--tta {tta})"


def format_table(summaries: Sequence[dict]) -> str:
    """Side-by-side scores as a small text table (one row per model), plus a verdict line."""
    names = [model_label(s["model"], s.get("tta", "off")) for s in summaries]
    if len(set(names)) < len(names):  # the same file twice, e.g. on two backends
        names = [f"{name} [{i + 1}]" for i, name in enumerate(names)]
    width = max(12, *(len(n) for n in names))
    header = (f"{'model':<{width}}  {'mIoU':>7}  {'Dice':>7}  {'pix acc':>7}  {'bound F':>7}  "
              f"{'far %':>6}  {'ms/img':>7}  {'ms refine':>9}  {'n':>5}")
    lines = [header, "-" * len(header)]
    for name, s in zip(names, summaries):
        lines.append(f"{name:<{width}}  {s['miou']:>7.4f}  {s['dice']:>7.4f}  "
                     f"{s['pixel_accuracy']:>7.4f}  {s['boundary_f']:>7.4f}  "
                     f"{100 * s['far_mean']:>6.2f}  "
                     f"{s['ms_per_image']:>7.2f}  {s['ms_refine']:>9.2f}  {s['n']:>5d}")
    for name, s in zip(names, summaries):
        if "miou_edge_2px" in s:
            lines.append(f"{name}: mIoU if every wrong pixel within 2 / 5 px of the labelled "
                         f"outline were right: {s['miou_edge_2px']:.4f} / {s['miou_edge_5px']:.4f}")
    if len(summaries) > 1:
        best = max(range(len(summaries)), key=lambda i: summaries[i]["miou"])
        others = [s["miou"] for i, s in enumerate(summaries) if i != best]
        lines.append(f"higher mIoU: {names[best]} (+{summaries[best]['miou'] - max(others):.4f})")
        for name, s in zip(names[1:], summaries[1:]):
            paired = s.get("paired")
            if paired and paired["miou_diff_se"] is not None:
                lines.append(
                    f"per image, {name} minus {names[0]}: {paired['miou_diff']:+.4f} IoU "
                    f"(standard error {paired['miou_diff_se']:.4f}); higher on "
                    f"{paired['images_higher']}, lower on {paired['images_lower']} of {s['n']}")
    return "\n".join(lines)


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[int]:
    """Send everything written to stdout (Python or native code) to stderr for a while.

    Yields a duplicate of the real stdout's file descriptor, for the one line that belongs
    there. Converters and runtimes sometimes print to stdout; the JSON line must stand alone.
    """
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        yield saved
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


# ---------------------------------------------------------------- command line


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m portrait.evaluate`` command line."""
    p = OneLineParser(
        prog="python -m portrait.evaluate",
        description="Score a model through the app's matte path (segmenter, guided-filter "
                    "refinement, alpha > 127) against masks; prints one JSON line on stdout.",
    )
    p.add_argument("--model", type=given, required=True, metavar="PATH",
                   help=".hdf5/.h5/.keras or .tflite model; a bare name is looked up in weights/")
    p.add_argument("--data", type=given, metavar="DIR",
                   help="folder with images/ and masks/; with --suite, the data root that holds "
                        "eg1800/, ccp_fashion/, coco_person/, pelota/ and videos/ (default: "
                        "../shared/data beside the project)")
    p.add_argument("--suite", action="store_true",
                   help="score --model against --compare on every domain of the product suite "
                        "(held-out photos of each set, held-out webcam clips through the video "
                        "path, the segmenter's cost at 1280x720): tables on stderr, one JSON line "
                        "on stdout")
    p.add_argument("--conditions", action="store_true",
                   help="with --suite: also score the held-out clips as other cameras deliver "
                        "them (a dim room, a window behind, a soft sensor, a squeezed stream, a "
                        "16:9 webcam)")
    p.add_argument("--list", dest="list_file", type=given, metavar="FILE",
                   help="file of image stems, one per line (default: every image with a mask)")
    p.add_argument("--max-items", type=field_number(EvalOptions, "max_items"), metavar="N", help="only the first N images")
    p.add_argument("--compare", type=given, metavar="PATH",
                   help="a second model scored in the same run; the JSON gains a 'compare' object "
                        "and a side-by-side table goes to stderr")
    p.add_argument("--sheet", type=given, metavar="PNG",
                   help="write a contact sheet of the worst images by IoU: image | truth | "
                        "prediction (errors tinted red = false person, blue = missed)")
    p.add_argument("--worst", type=field_number(EvalOptions, "worst"), default=EvalOptions.worst,
                   metavar="N",
                   help="images on the contact sheet (default: 12)")
    p.add_argument("--no-refine", action="store_true",
                   help="score the bilinear upscale of the model output, without the guided filter")
    p.add_argument("--tta", nargs="?", const="scales", default="off", choices=TEST_TIME_MODES,
                   help="test-time augmentation of --model, as the app's --tta: mirror averages "
                        "each image's output with the output on its mirror image, scales does "
                        "that at three sizes, turns does that again turned 8 degrees either "
                        "way; bare --tta is scales (default: off, one pass)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")

    model = p.add_argument_group("model options (as in the app; they apply to --model, and "
                                 "--device, --threads and --trust-model to --compare too)")
    model.add_argument("--backend", choices=get_args(Backend), default="auto")
    model.add_argument("--device", choices=get_args(Device), default="auto")
    model.add_argument("--input-norm", choices=get_args(InputNorm), default="auto")
    model.add_argument("--input-size", type=model_size, metavar="WxH")
    model.add_argument("--letterbox", action="store_true")
    model.add_argument("--threads", type=threads_all_cores, default=0,
                       help="CPU threads (default: all cores)")
    model.add_argument("--trust-model", action="store_true",
                       help="allow Keras models with serialised code (Lambda layers)")
    other = p.add_argument_group("options of the --compare model (the rest are detected)")
    other.add_argument("--compare-backend", choices=get_args(Backend), default="auto")
    other.add_argument("--compare-input-norm", choices=get_args(InputNorm), default="auto")
    other.add_argument("--compare-input-size", type=model_size, metavar="WxH")
    other.add_argument("--compare-tta", choices=TEST_TIME_MODES, metavar="MODE",
                       help="test-time augmentation of the --compare model, off, mirror, "
                            "scales or turns (default: as --tta, so that both are scored alike)")

    talk = p.add_mutually_exclusive_group()  # -q -v: one line, exit 2, not silently verbose
    talk.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    talk.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    p.add_argument("--debug", action="store_true", help="show tracebacks of unexpected errors")
    return p


def model_options_from_args(args: argparse.Namespace) -> list[SegmentOptions]:
    """The models to score: ``--model``'s options, then ``--compare``'s where given.

    Raises:
        OptionValueError, OptionTypeError: a value the options refuse, named by its flag
            (:func:`portrait.cli.options_by_flag`).
    """
    parser = build_parser()
    with options_by_flag(parser):
        models = [SegmentOptions(model=args.model, backend=args.backend, device=args.device,
                                 input_norm=args.input_norm, input_size=args.input_size,
                                 letterbox=args.letterbox, threads=args.threads,
                                 trust_model=args.trust_model, tta=args.tta)]
    if args.compare:
        with options_by_flag(parser, {"model": "compare", "backend": "compare_backend",
                                      "input_norm": "compare_input_norm",
                                      "input_size": "compare_input_size",
                                      "tta": "compare_tta" if args.compare_tta else "tta"}):
            models.append(SegmentOptions(model=args.compare, backend=args.compare_backend,
                                         device=args.device, input_norm=args.compare_input_norm,
                                         input_size=args.compare_input_size, threads=args.threads,
                                         trust_model=args.trust_model,
                                         tta=args.compare_tta or args.tta))
    return models


def options_from_args(args: argparse.Namespace) -> tuple[EvalOptions, list[SegmentOptions], RefineOptions]:
    """Turn parsed arguments into (evaluation options, model options, refine options) for a
    scoring of ``--data`` (the suite takes only the models: :func:`model_options_from_args`).

    Raises:
        OptionValueError, OptionTypeError: a value the options refuse, named by its flag
            (:func:`portrait.cli.options_by_flag`).
    """
    models = model_options_from_args(args)
    with options_by_flag(build_parser()):
        evaluation = EvalOptions(data=args.data, list_file=args.list_file,
                                 max_items=args.max_items, sheet=args.sheet, worst=args.worst,
                                 progress=not (args.no_progress or args.quiet))
    return evaluation, models, replace(PHOTO_REFINE, enabled=not args.no_refine)


def ignored_options(args: argparse.Namespace, given: set[str]) -> list[str]:
    """Options typed (``given``, see :func:`portrait.cli.typed_options`) that another option
    makes meaningless, each as "--X is ignored with Y" (the run goes on)."""
    lines = []
    if args.suite:  # the suite scores its own held-out lists through the app's own paths
        lines += named_ignored(given, ("list_file", "sheet", "worst", "no_refine"), "with --suite",
                               {"list_file": "--list"})
        given = given - {"worst"}
    if not args.sheet:
        lines += named_ignored(given, ("worst",), "without --sheet (it sets the sheet's rows)")
    if not args.compare:
        lines += named_ignored(given, ("compare_backend", "compare_input_norm",
                                       "compare_input_size", "compare_tta"), "without --compare")
    return lines


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the evaluation; returns the process exit code: 130 after Ctrl-C, 128 + the signal's
    number after SIGTERM or SIGHUP (each printing what was scored whole first, marked
    "stopped")."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.suite and not args.compare:
        parser.error("--suite needs --compare PEER, the model to measure against "
                     "(e.g. ../shared/models/selfie_segmentation.tflite)")
    if not args.suite and not args.data:
        parser.error("the following arguments are required: --data")
    if args.conditions and not args.suite:
        parser.error("--conditions scores the suite's held-out clips; pass --suite too")
    configure_logging(args.verbose, args.quiet)
    for line in ignored_options(args, typed_options(build_parser(), argv)):
        log.warning(line)
    if args.suite:
        with stop_on_termination_signals():  # SIGTERM and SIGHUP report as Ctrl-C does
            return run_command(lambda: _suite_body(args), traceback=args.debug,
                               unfinished_on_stop=True)

    def body() -> int:
        evaluation, models, refine = options_from_args(args)
        check_paths(evaluation, models)  # before TensorFlow's slow start
        skipped: list[tuple[str, InputError]] = []
        with stdout_to_stderr() as stdout_fd:
            if not args.debug:
                import_tensorflow_quietly()
            def report_stopped(stop: BaseException, summaries: list[dict]) -> None:
                log.warning("%s: stopped after %s; the scores of those follow, marked "
                            "\"stopped\"%s", stop_name(stop),
                            counted(summaries[0]["n"], "image"),
                            "; --sheet is not written" if evaluation.sheet else "")
                _report(summaries, evaluation, skipped, stdout_fd, stopped=True)

            with reported_on_stop(report_stopped):
                summaries = evaluate(evaluation, models, refine, skipped)
            _report(summaries, evaluation, skipped, stdout_fd)
        if skipped:
            names = ", ".join(Path(path).name for path, _ in skipped[:10])
            log.error("%s could not be read and %s left out of the scores: %s%s (see the "
                      "warnings above)", counted(len(skipped), "pair"),
                      "was" if len(skipped) == 1 else "were", names,
                      " and more" if len(skipped) > 10 else "")
            return 1
        return 0

    # SIGTERM and SIGHUP report what was scored as Ctrl-C does; as the scoring is not done, the
    # exit code is 128 + the signal's number (143 for SIGTERM), as Ctrl-C's is 130.
    with stop_on_termination_signals():
        return run_command(body, traceback=args.debug, unfinished_on_stop=True)


@contextlib.contextmanager
def reported_on_stop(report: Callable[[BaseException, Any], None]) -> Iterator[None]:
    """On a stop (Ctrl-C, SIGTERM) in the block that carries ``partial_scores`` (what was
    scored before it, see :func:`score_pairs`), call ``report(stop, partial_scores)`` before the
    stop goes on up (``run_command`` then exits 130 for Ctrl-C, 143 for SIGTERM); a stop without them goes on up
    as it is."""
    try:
        yield
    except (KeyboardInterrupt, StopRequested) as stop:
        partial = getattr(stop, "partial_scores", None)
        if partial is not None:
            report(stop, partial)
        raise


def _report(summaries: Sequence[dict], evaluation: EvalOptions,
            skipped: Sequence[tuple[str, InputError]], stdout_fd: int,
            stopped: bool = False) -> None:
    """Write the table (when models are compared) to stderr and the JSON line to ``stdout_fd``;
    ``stopped`` marks scores of the images scored before a stop."""
    if len(summaries) > 1:
        sys.stderr.write(format_table(summaries) + "\n")
    result = dict(summaries[0])
    if len(summaries) > 1:
        result["compare"] = summaries[1]
    result.update(data=evaluation.data, list=evaluation.list_file,
                  skipped=[str(path) for path, _ in skipped])
    if stopped:
        result["stopped"] = True
    os.write(stdout_fd, (json.dumps(result) + "\n").encode())


def _suite_body(args: argparse.Namespace) -> None:
    from portrait.training import suite

    root = Path(args.data) if args.data else suite.DEFAULT_DATA_ROOT
    if not root.is_dir():
        found = "is a file, not a folder" if root.is_file() else "not found"
        raise InputError(f"suite data root '{root}' {found}; pass --data DIR that holds eg1800/, "
                         "ccp_fashion/, coco_person/, pelota/ and videos/")
    models = model_options_from_args(args)  # --data here is the suite's root, not a data folder
    check_models(models)
    suite.clip_paths(root)
    with stdout_to_stderr() as stdout_fd:
        if not args.debug:
            import_tensorflow_quietly()
        def report_stopped(stop: BaseException, result: dict) -> None:
            clips = sum(name in suite.WEBCAM_CLIPS for key in ("webcam", "webcam_model_alone")
                        for name in result.get(key, {}))
            log.warning("%s: stopped after %s and %s; the scores of those follow, marked "
                        "\"stopped\"", stop_name(stop),
                        counted(len(result["photos"]), "photo domain"),
                        counted(clips, "webcam clip run"))
            sys.stderr.write(suite.format_suite(result) + "\n")
            os.write(stdout_fd, (json.dumps({**result, "stopped": True}) + "\n").encode())

        with reported_on_stop(report_stopped):
            result = suite.run_suite(root, models, max_items=args.max_items,
                                     progress=not (args.no_progress or args.quiet),
                                     conditions=args.conditions)
        sys.stderr.write(suite.format_suite(result) + "\n")
        os.write(stdout_fd, (json.dumps(result) + "\n").encode())


if __name__ == "__main__":
    sys.exit(main())
