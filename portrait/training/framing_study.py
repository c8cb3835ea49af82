"""How steady auto-framing is on saved mattes: replays them through the real ``AutoFramer``.

``python -m portrait.training.framing_study --mattes DIR [--videos DIR] [--zoom-window S ...]``

``DIR`` holds one folder of PNG mattes per clip (``python app.py --source CLIP --matte --out
DIR/CLIP``). Each clip is replayed at its frame rate (the video's where ``--videos`` gives it, else
``--fps``): its first matte for 1 s (the crop settles; not measured), then the clip forward,
backward, forward, backward (so a 2 s clip gives about 8 s of motion with no jump), all measured.
Printed per clip, pooled over the held-out clips (:data:`~portrait.training.suite.WEBCAM_CLIPS`)
and over all, for each ``--zoom-window``:

* zoom variation: the standard deviation of the crop's width, in % of the frame's width (pooled:
  the mean over the clips);
* zoom reversals a minute: turns of the crop's width, a move counting only once it goes
  :data:`REVERSAL_STEP` % of the frame's width past the last turning point;
* with ``--videos``: frames where the face (:func:`face_boxes`, OpenCV's Haar detector on the
  video's frame) leaves the crop, out of the frames with a face found. The detector takes
  minutes; its boxes are kept in :data:`FACE_CACHE` in the clip's mattes folder and read from
  there while they were found on the same frames and mattes, with the same settings;
* person cut: per frame, the share of the person's pixels (the whole frame's matte > 127) the crop
  leaves out (:func:`~portrait.framing.person_outside`): the clip's max and mean, in %, and its
  frames above :data:`CUT_SHARE` (pooled: the max, the mean over the clips, the sum); and the
  side cut: the same for the person left out to the crop's sides and above it only (on webcam
  clips the person below a head-and-shoulders crop is left out on purpose: all of the cut on the
  8 training ASL clips), its max and its frames above :data:`CUT_SHARE`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional, Sequence

import cv2
import numpy as np

from portrait.errors import InputError, run_command
from portrait.framing import AutoFramer, Box, Crop, person_outside
from portrait.options import FramingOptions
from portrait.training.suite import WEBCAM_CLIPS
from portrait.words import counted

log = logging.getLogger("portrait.training.framing_study")

REVERSAL_STEP = 0.5  # % of the frame's width a move must go past a turning point to count
SETTLE_S = 1.0  # the first matte alone, before the measured frames
FACE_COVER = 0.6  # a face box must be this much person in the matte (no faces in the chair)
FACE_SIZES = (0.6, 1.6)  # a face's width within these times the clip's median
FACE_TOLERANCE = 0.01  # of the crop's height: a head this close to the crop's edge is inside
_CASCADES = ("haarcascade_frontalface_default.xml", "haarcascade_frontalface_alt2.xml")
_DETECT = (1.05, 4, 24)  # detectMultiScale's scale step, neighbours and smallest face (px)
CUT_SHARE = 0.05  # a frame leaving out more of the person than this is a cut frame
FACE_CACHE = "faces.npz"  # face_boxes of a clip, beside its mattes (cached_face_boxes)
# what the boxes depend on besides the frames and mattes: a cache made otherwise is made again
_FACE_SETTINGS = repr((_CASCADES, _DETECT, FACE_COVER, FACE_SIZES))


@dataclass(frozen=True)
class StudyOptions:
    """What the study replays with.

    Attributes:
        framing: the framing options (``enabled`` is forced on).
        fps: the frame rate of a clip without a video to tell it.
        passes: forward-and-back passes over each clip (2: forward, back, forward, back).
    """

    framing: FramingOptions = FramingOptions(enabled=True)
    fps: float = 30.0
    passes: int = 2


@dataclass(frozen=True)
class ClipResult:
    """One clip's measures (see the module's doc)."""

    clip: str
    frames: int
    minutes: float
    width_std_pct: float
    reversals: int
    face_frames: int = 0  # frames with a face found (0 without the video)
    face_out: int = 0  # of those, frames where the face leaves the crop
    cut_max_pct: float = 0.0  # the most of the person (matte > 127) a crop leaves out, %
    cut_mean_pct: float = 0.0  # the mean over the frames, %
    cut_frames: int = 0  # frames leaving out more than CUT_SHARE of the person
    side_cut_max_pct: float = 0.0  # as cut_max_pct, to the crop's sides and above it only
    side_cut_frames: int = 0  # as cut_frames, to the crop's sides and above it only


def read_mattes(folder: Path) -> list[np.ndarray]:
    """The PNG mattes in ``folder``, in name order, as uint8 (H, W).

    Raises:
        InputError: no PNG in the folder, one that cannot be read, or mattes of two sizes.
    """
    paths = sorted(Path(folder).glob("*.png"))
    if not paths:
        raise InputError(f"no PNG mattes in '{folder}'; make them with python app.py --source "
                         "CLIP --matte --out DIR")
    mattes = []
    for path in paths:
        matte = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if matte is None:
            raise InputError(f"cannot read matte '{path}'")
        if mattes and matte.shape != mattes[0].shape:
            raise InputError(f"matte '{path}' is {matte.shape}, != {mattes[0].shape} of the first")
        mattes.append(matte)
    return mattes


def ping_pong(count: int, passes: int = 2) -> list[int]:
    """Frame indices forward then back, ``passes`` times, the turning frames not repeated:
    ``ping_pong(3, 2) == [0, 1, 2, 1, 0, 1, 2, 1]``."""
    forward = list(range(count))
    return (forward + forward[-2:0:-1]) * passes


def replay(mattes: Sequence[np.ndarray], options: FramingOptions, fps: float,
           passes: int = 2) -> tuple[list[Crop], list[int]]:
    """The crops :class:`AutoFramer` shows over :func:`ping_pong` of ``mattes`` at ``fps``,
    after the first matte for :data:`SETTLE_S` (not returned), and the matte index of each."""
    framer = AutoFramer(replace(options, enabled=True), fps=fps)
    for _ in range(max(1, round(SETTLE_S * fps))):
        framer.update(mattes[0])
    order = ping_pong(len(mattes), passes)
    return [framer.update(mattes[i]) for i in order], order


def reversals(widths: Sequence[float], step: float = REVERSAL_STEP) -> int:
    """Turns of a zigzag: a move counts once it goes more than ``step`` past the last turning
    point (the first move sets the direction, it is no turn)."""
    count, direction, extreme = 0, 0, widths[0]
    for width in widths[1:]:
        if direction == 0:
            if abs(width - extreme) > step:
                direction, extreme = (1 if width > extreme else -1), width
        elif direction * (width - extreme) > 0:
            extreme = width
        elif direction * (extreme - width) > step:
            count += 1
            direction, extreme = -direction, width
    return count


def face_boxes(frames: Sequence[np.ndarray], mattes: Sequence[np.ndarray]) -> list[Optional[Box]]:
    """The face in each frame, or None: detections of two Haar frontal cascades, kept where the
    matte covers :data:`FACE_COVER` of the box, sized within :data:`FACE_SIZES` of the clip's
    median, the topmost one."""
    detectors = [cv2.CascadeClassifier(cv2.data.haarcascades + name) for name in _CASCADES]
    scale, neighbours, smallest = _DETECT
    found = []
    for frame, matte in zip(frames, mattes):
        grey = cv2.equalizeHist(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY))
        boxes = []
        for detector in detectors:
            for x, y, w, h in detector.detectMultiScale(grey, scale, neighbours,
                                                        minSize=(smallest, smallest)):
                if (matte[y:y + h, x:x + w] > 127).mean() >= FACE_COVER:
                    boxes.append((int(x), int(y), int(w), int(h)))
        found.append(boxes)
    widths = [min(boxes, key=lambda b: b[1])[2] for boxes in found if boxes]
    if not widths:
        return [None] * len(found)
    median = float(np.median(widths))
    low, high = FACE_SIZES[0] * median, FACE_SIZES[1] * median
    kept = [[b for b in boxes if low <= b[2] <= high] for boxes in found]
    return [min(boxes, key=lambda b: b[1]) if boxes else None for boxes in kept]


def cached_face_boxes(folder: Path, frames: Sequence[np.ndarray],
                      mattes: Sequence[np.ndarray]) -> list[Optional[Box]]:
    """:func:`face_boxes`, read from ``folder``/:data:`FACE_CACHE` where it holds the boxes of
    this clip (the folder's name) found on the same frames and mattes (their count and a digest
    of their pixels: mattes re-made there by another model keep the count) with today's
    settings; otherwise found and saved there (a folder that cannot be written: found, not
    saved)."""
    path, clip = Path(folder) / FACE_CACHE, Path(folder).name
    key = {"clip": clip, "frames": len(frames), "mattes": len(mattes),
           "settings": _FACE_SETTINGS, "pixels": _pixels_digest([*frames, *mattes])}
    cached = _read_face_cache(path)
    if cached is not None and cached[0] == key:
        log.info("%s: face boxes from %s", clip, path)
        return cached[1]
    faces = face_boxes(frames, mattes)
    boxes = np.array([(-1, -1, -1, -1) if face is None else face for face in faces],
                     np.int32).reshape(-1, 4)
    partial = path.with_name(path.name + ".partial")
    try:
        with open(partial, "wb") as file:
            np.savez(file, boxes=boxes, **key)
        os.replace(partial, path)  # whole or not at all: a run cut short leaves no half cache
    except OSError as error:
        log.warning("%s: face boxes not cached (%s)", clip, error)
    return faces


def _pixels_digest(arrays: Sequence[np.ndarray]) -> str:
    """A digest of the arrays' shapes and pixels, in order (about 1.2 s a GB of pixels on the
    loaded 2-core machine: small beside the detector's minutes)."""
    digest = hashlib.sha1(usedforsecurity=False)
    for array in arrays:
        digest.update(repr(array.shape).encode())
        digest.update(np.ascontiguousarray(array).data)
    return digest.hexdigest()


def _read_face_cache(path: Path) -> Optional[tuple[dict, list[Optional[Box]]]]:
    """The key and boxes saved by :func:`cached_face_boxes`, or None: no file, or one that is
    not such a cache (cut short, hand-edited: a warning says why; it is then made again)."""
    if not path.is_file():
        return None
    try:
        saved = np.load(path)
        if isinstance(saved, np.lib.npyio.NpzFile):
            with saved:
                arrays = {name: saved[name] for name in saved.files}
            problem = face_cache_problem(arrays)
        else:  # an .npy file: one array
            problem = f"one array of shape {np.shape(saved)}, not an .npz of named arrays"
    except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile,
            NotImplementedError) as error:  # a member's compression method no zip has
        problem = str(error) or type(error).__name__
    if problem is not None:
        if problem == _BEFORE_DIGEST:  # an earlier version's cache: nothing wrong with it
            log.info("%s: a face cache from before its key held the pixels' digest; finding the "
                     "faces again", path)
        else:
            log.warning("%s: not a face cache (%s); finding the faces again", path, problem)
        return None
    key = {name: arrays[name].item() for name in _FACE_KEY}
    return key, [None if box[0] < 0 else tuple(int(v) for v in box) for box in arrays["boxes"]]


_FACE_KEY = {"clip": "U", "frames": "iu", "mattes": "iu", "settings": "U", "pixels": "U"}
"""The cache's key (:func:`cached_face_boxes`): each name's single value, of these dtype kinds."""
_BEFORE_DIGEST = "no 'pixels' in it"  # a cache written before the key held "pixels"


def face_cache_problem(arrays: dict[str, np.ndarray]) -> Optional[str]:
    """Why ``arrays`` (a :data:`FACE_CACHE` file's) are not the key and boxes
    :func:`cached_face_boxes` saves, in words (actual vs expected), or None where they are: a
    single string or count for each name of the key, and ``boxes`` of integers, one row
    ``(x, y, w, h)`` (``w``, ``h`` > 0, or all -1: no face) for each frame with a matte."""
    expected = ["boxes", *_FACE_KEY]
    missing = [name for name in expected if name not in arrays]
    if missing:
        return f"no {', '.join(repr(name) for name in missing)} in it"
    extra = sorted(set(arrays) - set(expected))
    if extra:
        return f"unexpected {', '.join(repr(name) for name in extra)} in it"
    # np.load gives a member that is no .npy file (a zip made by hand) as its bytes.
    for name in expected:
        if not isinstance(arrays[name], np.ndarray):
            return f"'{name}' is {len(arrays[name])} bytes, expected an .npy array"
    for name, kinds in _FACE_KEY.items():
        value = arrays[name]
        if value.shape != () or value.dtype.kind not in kinds:
            wanted = "a string" if kinds == "U" else "a count"
            return f"'{name}' is {value.dtype} of shape {value.shape}, expected {wanted}"
        if kinds != "U" and value < 0:
            return f"'{name}' is {value}, expected a count (0 or more)"
    boxes = arrays["boxes"]
    rows = min(int(arrays["frames"]), int(arrays["mattes"]))  # face_boxes pairs them
    if boxes.dtype.kind not in "iu" or boxes.shape != (rows, 4):
        return (f"'boxes' is {boxes.dtype} of shape {boxes.shape}, expected integers of shape "
                f"{(rows, 4)}")
    no_face = boxes[:, 0] < 0
    faces = boxes[~no_face]
    if (boxes[no_face] != -1).any() or (faces[:, 1] < 0).any() or (faces[:, 2:] <= 0).any():
        return "a box is neither (x, y, w, h) with x, y >= 0 and w, h > 0 nor (-1, -1, -1, -1)"
    return None


def face_outside(crop: Crop, face: Box, size: tuple[int, int]) -> bool:
    """True when the head (``face`` widened 10 % each side and raised 40 % of its height, for the
    hair; within the frame) is not inside ``crop``, :data:`FACE_TOLERANCE` allowed."""
    width, height = size
    x, y, w, h = face
    x0, y0 = max(0.0, x - 0.1 * w), max(0.0, y - 0.4 * h)
    x1, y1 = min(float(width), x + 1.1 * w), min(float(height), y + h)
    centre_x, centre_y, crop_h = crop
    half_w, half_h = crop_h * width / height / 2, crop_h / 2
    tolerance = FACE_TOLERANCE * crop_h
    return (x0 < centre_x - half_w - tolerance or x1 > centre_x + half_w + tolerance
            or y0 < centre_y - half_h - tolerance or y1 > centre_y + half_h + tolerance)


def study_clip(clip: str, mattes: Sequence[np.ndarray], options: StudyOptions,
               fps: Optional[float] = None,
               faces: Optional[Sequence[Optional[Box]]] = None) -> ClipResult:
    """Replay one clip's mattes (:func:`replay`) and measure its crops.

    Args:
        fps: the clip's frame rate; None: ``options.fps``.
        faces: :func:`face_boxes` of the clip's frames, or None to leave the face out.
    """
    fps = options.fps if fps is None else fps
    crops, order = replay(mattes, options.framing, fps, options.passes)
    height, width = mattes[0].shape
    widths_pct = np.array([crop[2] / height * 100 for crop in crops])  # crop width / frame width
    masks = [matte > 127 for matte in mattes]
    cuts_pct = np.array([person_outside(masks[i], crop, (width, height)) * 100
                         for crop, i in zip(crops, order)])
    sides_pct = np.array([person_outside(masks[i], crop, (width, height), below=False) * 100
                          for crop, i in zip(crops, order)])
    face_frames = face_out = 0
    for crop, index in zip(crops, order):
        if faces is not None and index < len(faces) and faces[index] is not None:
            face_frames += 1
            face_out += face_outside(crop, faces[index], (width, height))
    return ClipResult(clip, len(crops), len(crops) / fps / 60, float(widths_pct.std()),
                      reversals(widths_pct), face_frames, face_out, float(cuts_pct.max()),
                      float(cuts_pct.mean()), int((cuts_pct > CUT_SHARE * 100).sum()),
                      float(sides_pct.max()), int((sides_pct > CUT_SHARE * 100).sum()))


def pooled(name: str, results: Sequence[ClipResult]) -> ClipResult:
    """``results`` as one: the mean zoom variation and person cut, the largest cut, the sums of
    the rest."""
    return ClipResult(name, sum(r.frames for r in results), sum(r.minutes for r in results),
                      float(np.mean([r.width_std_pct for r in results])),
                      sum(r.reversals for r in results), sum(r.face_frames for r in results),
                      sum(r.face_out for r in results), max(r.cut_max_pct for r in results),
                      float(np.mean([r.cut_mean_pct for r in results])),
                      sum(r.cut_frames for r in results), max(r.side_cut_max_pct for r in results),
                      sum(r.side_cut_frames for r in results))


def held_out(clip: str) -> bool:
    """True for the suite's held-out clips (``asl_learn``, ...)."""
    return clip in {f"asl_{name}" for name in WEBCAM_CLIPS}


def with_pools(results: Sequence[ClipResult]) -> list[ClipResult]:
    """``results``, then pooled over the held-out ones (where any) and over all."""
    held = [r for r in results if held_out(r.clip)]
    return list(results) + ([pooled("held out", held)] if held else []) + [pooled("all", results)]


def format_table(label: str, rows: Sequence[ClipResult], faces: bool) -> str:
    """One setting's rows for a terminal."""
    header = f"{label:<14}{'frames':>7} {'width std %':>12} {'reversals/min':>14}"
    header += f" {'face out':>12}" if faces else ""
    above = f">{CUT_SHARE:.0%}"
    header += f" {'cut max %':>10} {'cut mean %':>11} {above:>5} {'side max %':>11} {above:>5}"
    lines = [header, "-" * len(header)]
    for r in rows:
        line = (f"{r.clip:<14}{r.frames:>7} {r.width_std_pct:>12.2f} "
                f"{r.reversals / r.minutes:>14.1f}")
        line += f" {f'{r.face_out}/{r.face_frames}':>12}" if faces else ""
        lines.append(line + f" {r.cut_max_pct:>10.1f} {r.cut_mean_pct:>11.2f} {r.cut_frames:>5}"
                     f" {r.side_cut_max_pct:>11.1f} {r.side_cut_frames:>5}")
    return "\n".join(lines)


def clip_folders(mattes_dir: Path) -> list[Path]:
    """The clip folders under ``mattes_dir`` (each holding PNG mattes), by name.

    Raises:
        InputError: the folder is missing or holds no clip folder.
    """
    if not Path(mattes_dir).is_dir():
        raise InputError(f"mattes folder '{mattes_dir}' not found")
    folders = sorted(p for p in Path(mattes_dir).iterdir() if p.is_dir() and any(p.glob("*.png")))
    if not folders:
        raise InputError(f"no clip folders of PNG mattes in '{mattes_dir}'")
    return folders


def read_video(path: Path) -> tuple[list[np.ndarray], float]:
    """The frames of a video and its frame rate.

    Raises:
        InputError: a missing file or one OpenCV cannot decode.
    """
    from portrait.capture import VideoFileSource

    with VideoFileSource(str(path), quiet=True) as video:
        return [frame.image for frame in video], video.fps


def find_video(videos_dir: Path, clip: str) -> Path:
    """The video named ``clip`` (any extension) in ``videos_dir``.

    Raises:
        InputError: none there.
    """
    found = sorted(Path(videos_dir).glob(f"{clip}.*"))
    if not found:
        raise InputError(f"no video '{clip}.*' in '{videos_dir}' for the mattes of {clip}")
    return found[0]


def main(argv: Optional[Sequence[str]] = None) -> int:
    from portrait.cli import (OneLineParser, configure_logging, non_negative_float,
                              positive_float, with_debug)

    p = OneLineParser(prog="python -m portrait.training.framing_study",
                      description=" ".join(__doc__.split("\n\n")[0].split()))
    p.add_argument("--mattes", required=True, metavar="DIR",
                   help="one folder of PNG mattes per clip (python app.py --matte --out)")
    p.add_argument("--videos", metavar="DIR",
                   help="the clips' videos (CLIP.*): their frame rate, and the face measure")
    p.add_argument("--zoom-window", type=non_negative_float, nargs="+", metavar="S",
                   default=[FramingOptions.zoom_window_s],
                   help="zoom_window_s settings to compare (e.g. 0 5; default "
                        f"{FramingOptions.zoom_window_s:g})")
    p.add_argument("--fps", type=positive_float, default=StudyOptions.fps,
                   help=f"frame rate without --videos (default {StudyOptions.fps:g})")
    args = with_debug(p).parse_args(argv)
    configure_logging()

    def body() -> None:
        folders = clip_folders(Path(args.mattes))
        clips = []  # (name, mattes, fps, faces)
        for folder in folders:
            mattes = read_mattes(folder)
            fps, faces = None, None
            if args.videos:
                frames, fps = read_video(find_video(Path(args.videos), folder.name))
                if len(frames) != len(mattes):
                    log.warning("%s: %s, %s; faces of the first %d", folder.name,
                                counted(len(frames), "frame"), counted(len(mattes), "matte"),
                                min(len(frames), len(mattes)))
                faces = cached_face_boxes(folder, frames, mattes)
                log.info("%s: a face in %d of %s", folder.name,
                         sum(face is not None for face in faces), counted(len(faces), "frame"))
            clips.append((folder.name, mattes, fps, faces))
        for window_s in args.zoom_window:
            options = StudyOptions(framing=FramingOptions(enabled=True, zoom_window_s=window_s),
                                   fps=args.fps)
            rows = [study_clip(name, mattes, options, fps, faces)
                    for name, mattes, fps, faces in clips]
            print(format_table(f"window {window_s:g} s", with_pools(rows), bool(args.videos)))
            print()

    return run_command(body, traceback=args.debug)


if __name__ == "__main__":
    sys.exit(main())
