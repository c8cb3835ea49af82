"""Knowledge distillation: mix teacher models' predictions into the training targets.

A teacher is any Keras model file the app can run (RGB 0..255 in, a 1-channel person
probability out), typically a larger or averaged set of models. On each augmented training
batch the teachers' mean probability is mixed into the mask::

    target = (1 - weight) * mask + weight * mean(teacher(image) for each teacher)

so the student learns the teachers' soft edges and their judgement on ambiguous pixels (a held
object, a second person) along with the labels. Validation keeps the hard labels.

Teachers that only run outside Keras (a ``.tflite`` file such as MediaPipe's selfie model) label
a data folder once instead, on the whole photo::

    python -m portrait.training.distill --teacher selfie_segmentation.tflite --data eg1800/train.txt \
        --out runs/soft_eg1800 --weight 0.3

writes ``runs/soft_eg1800/masks/<stem>.png`` = (1 − weight) · mask + weight · 255 · teacher
probability, links the images, and lists the stems in ``train.txt``; train on that folder as on
any other.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence

import cv2
import numpy as np

from portrait.errors import InputError, ModelError, run_command
from portrait.options import TEST_TIME_MODES
from portrait.training.folders import check_listable, check_photo_stems
from portrait.words import counted

if TYPE_CHECKING:  # annotations only: imported quietly where used
    import keras
    import tensorflow as tf

# Keras and TensorFlow are imported where they are used, so that the command line can import
# them quietly (portrait.cli.import_tensorflow_quietly).

TOOL = "portrait.training.distill"
log = logging.getLogger(TOOL)  # not "__main__" under python -m


def _check_weight(weight: float) -> None:
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"teacher weight must be between 0 and 1, got {weight}")


def load_teachers(paths: Sequence[str]) -> list[keras.Model]:
    """Load teacher models for inference only.

    Raises:
        ModelError: a file that is missing, unloadable or unsafe, or whose output is not one
            channel.
    """
    from portrait.segment.keras_compat import load_keras_model

    teachers = []
    for path in paths:
        model = load_keras_model(Path(path))
        channels = model.output_shape[-1]
        if channels != 1:
            raise ModelError(
                f"teacher '{path}' has {channels} output channels; a person probability (1) is needed"
            )
        model.trainable = False
        teachers.append(model)
        log.info("teacher: %s (%d parameters)", path, model.count_params())
    return teachers


def mix_targets(images: tf.Tensor, masks: tf.Tensor, teachers: Sequence[keras.Model],
                weight: float) -> tf.Tensor:
    """``(1 - weight) * masks + weight * (mean teacher probability on images)``."""
    import tensorflow as tf

    _check_weight(weight)
    if not teachers:
        raise ValueError("mix_targets needs at least one teacher")
    taught = tf.add_n([tf.cast(t(images, training=False), masks.dtype) for t in teachers])
    taught = taught / float(len(teachers))
    return (1.0 - weight) * masks + weight * taught


def with_teachers(dataset: tf.data.Dataset, teachers: Sequence[keras.Model],
                  weight: float) -> tf.data.Dataset:
    """The batched (images, masks) dataset with the masks replaced by mixed targets."""
    import tensorflow as tf

    if not teachers or weight == 0:
        return dataset
    mixed = dataset.map(lambda images, masks: (images, mix_targets(images, masks, teachers, weight)))
    return mixed.prefetch(tf.data.AUTOTUNE)  # the teachers run ahead of the training step


# ---------------------------------------------------------------- offline soft labels


def soft_mask(truth: np.ndarray, probability: np.ndarray, weight: float) -> np.ndarray:
    """``(1 - weight) * truth + weight * 255 * probability`` as a uint8 mask of ``truth``'s size.

    Args:
        truth: uint8 (H, W) mask, 0..255.
        probability: float (h, w) teacher probability in [0, 1], covering the same view at any
            resolution (resized bilinearly to (H, W)).
        weight: the teacher's share, 0..1.

    Raises:
        ValueError: a weight outside 0..1 or arrays of the wrong kind.
    """
    _check_weight(weight)
    if truth.dtype != np.uint8 or truth.ndim != 2 or probability.ndim != 2:
        raise ValueError(
            f"unexpected truth/probability: {truth.dtype} {truth.shape} / {probability.shape} "
            "!= uint8 (H, W) / (h, w)"
        )
    height, width = truth.shape
    taught = cv2.resize(probability.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
    mixed = (1.0 - weight) * truth.astype(np.float32) + weight * 255.0 * np.clip(taught, 0.0, 1.0)
    return np.round(mixed).astype(np.uint8)


# What a photo given as --video is to distill (the capture's warning, where it is said of --source).
PHOTO_AS_VIDEO = ("as --video it gives one frame, labelled by the teacher alone; --data labels "
                  "photos with their masks")


def check_videos(videos: Sequence[str]) -> list[str]:
    """Refuse, before the teacher runs, videos whose frames could not be written or listed: two
    of one name (their frames would overwrite each other), one whose frames' stems ``train.txt``
    could not list (a name that starts with ``#``), one that cannot be read.

    Returns:
        Each video's name (its file's stem), which its frames are named after.

    Raises:
        InputError: the first such video.
    """
    from portrait.capture import VideoFileSource

    names = [Path(video).stem for video in videos]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise InputError(f"two videos are named '{repeated[0]}'; frames are named after their "
                         "video, so rename one or label them into separate --out folders")
    for video, name in zip(videos, names):
        check_listable(f"{name}_00000", f"the frames of the video '{video}'", "rename the video")
    for video in videos:  # every file readable before anything is written (reported when read)
        VideoFileSource(video, quiet=True).close()
    return names


def write_soft_labels(pairs: Sequence[tuple[str, str]], segment, out_dir: Path, weight: float,
                      progress: bool = False, negatives_dir: Optional[Path] = None) -> list[str]:
    """Write a data folder whose masks mix each pair's mask with a teacher's prediction.

    Args:
        pairs: (image path, mask path) pairs, e.g. from :func:`portrait.training.data.resolve_split`.
        segment: a :class:`portrait.segment.Segmenter` (the teacher), run on each whole photo.
        out_dir: the new folder: ``images/`` (links to the photos), ``masks/`` (the mixed masks)
            and ``train.txt``. Must not be a folder the pairs come from, and must be new, empty
            or an earlier output of this tool
            (:func:`portrait.training.folders.claim_data_folder`). Where the run fails, what it
            wrote into a new or empty ``out_dir`` or ``negatives_dir`` is removed
            (:func:`portrait.training.folders.removed_on_failure`).
        weight: the teacher's share of each mask.
        progress: show a progress bar.
        negatives_dir: also write hard negatives here: the bands of each photo beyond
            everything that the label or the teacher calls person (:func:`background_bands`:
            a wall, a floor, furniture; both must agree, because some sets leave people
            behind the subject out of their masks), as ``images/<stem>_<l|r|t|b>.jpg`` with an
            all-background mask, listed in its ``train.txt``.

    Returns:
        The stems written, in order.

    Raises:
        InputError: ``out_dir`` or ``negatives_dir`` is a source folder or holds files that no
            portrait data tool wrote or another tool's output, a photo's stem could not be
            listed (:func:`portrait.training.folders.check_photo_stems`, before anything is
            written), or a photo or mask cannot be read or is no 8-bit grey mask.
    """
    from portrait.sink import write_image
    from portrait.training.data import labelled_photos, new_data_folder, removed_on_failure
    from portrait.training.folders import write_stems

    check_photo_stems(pairs)
    out_dir = Path(out_dir)
    negatives_dir = None if negatives_dir is None else Path(negatives_dir)
    with removed_on_failure(out_dir, negatives_dir):  # no partial folder where a photo fails
        if negatives_dir is not None:  # both checked before either is created
            new_data_folder(negatives_dir, pairs, TOOL, "--negatives", create=False)
        images_dir, masks_dir = new_data_folder(out_dir, pairs, TOOL)
        if negatives_dir is not None:
            new_data_folder(negatives_dir, pairs, TOOL, "--negatives")
        stems, negatives = [], []
        for image_path, stem, image, truth in labelled_photos(pairs, "soft labels", progress):
            probability = segment.segment(image)
            mixed = soft_mask(truth, probability, weight)
            write_image(masks_dir / f"{stem}.png", mixed)
            if negatives_dir is not None:
                anyone = np.maximum(truth, soft_mask(truth, probability, 1.0))
                for side, start, stop in background_bands(anyone):
                    band = image[:, start:stop] if side in "lr" else image[start:stop]
                    write_image(negatives_dir / "images" / f"{stem}_{side}.jpg", band)
                    write_image(negatives_dir / "masks" / f"{stem}_{side}.png",
                                np.zeros(band.shape[:2], np.uint8))
                    negatives.append(f"{stem}_{side}")
            link = images_dir / Path(image_path).name
            if link.is_symlink() or link.exists():
                link.unlink()
            link.symlink_to(Path(image_path).resolve())
            stems.append(stem)
        write_stems(out_dir / "train.txt", stems)
        if negatives_dir is not None:
            write_stems(negatives_dir / "train.txt", negatives)
            log.info("wrote %s (hard negatives) to %s",
                     counted(len(negatives), "background band"), negatives_dir)
    return stems


NEGATIVE_MIN_WIDTH_PX = 96  # narrower strips hold too little of the room to be worth a sample
NEGATIVE_MARGIN_PX = 12  # kept clear beside the person's outermost column (soft edges, hair)
NEGATIVE_PERSON_LEVEL = 25  # a mask value above this (about 10 % probability) is person


def background_strips(mask: np.ndarray, min_width_px: int = NEGATIVE_MIN_WIDTH_PX,
                      margin_px: int = NEGATIVE_MARGIN_PX,
                      person_level: int = NEGATIVE_PERSON_LEVEL) -> list[tuple[str, int, int]]:
    """The full-height strips left and right of everything a teacher calls person.

    Args:
        mask: uint8 (H, W) pseudo-label, 255 = person.

    Returns:
        ``(side, x0, x1)`` for each side (``"l"``, ``"r"``) whose strip, ``margin_px`` clear of
        the person's outermost columns, is at least ``min_width_px`` wide; none when the frame
        holds no person (the teacher may simply have missed them).
    """
    return [(side, start, stop) for side, start, stop in background_bands(
        mask, "lr", min_width_px, margin_px, person_level)]


def background_bands(mask: np.ndarray, sides: str = "lrtb", min_width_px: int = NEGATIVE_MIN_WIDTH_PX,
                     margin_px: int = NEGATIVE_MARGIN_PX,
                     person_level: int = NEGATIVE_PERSON_LEVEL) -> list[tuple[str, int, int]]:
    """The bands of a picture beyond everything marked person: left, right, top, bottom.

    Args:
        mask: uint8 (H, W), 255 = person.
        sides: which bands: ``l`` and ``r`` are full-height columns, ``t`` and ``b`` full-width
            rows (above the head: the wall; below the feet: the floor).

    Returns:
        ``(side, start, stop)`` (columns for ``l``/``r``, rows for ``t``/``b``) for each band that,
        ``margin_px`` clear of the person, is at least ``min_width_px`` across; none when nothing
        is marked person (a label or teacher may simply have missed them).
    """
    person = mask > person_level
    columns = np.flatnonzero(person.any(axis=0))
    if columns.size == 0:
        return []
    rows = np.flatnonzero(person.any(axis=1))
    height, width = mask.shape
    bands = {"l": (0, int(columns[0]) - margin_px),
             "r": (int(columns[-1]) + margin_px + 1, width),
             "t": (0, int(rows[0]) - margin_px),
             "b": (int(rows[-1]) + margin_px + 1, height)}
    return [(side, *bands[side]) for side in sides
            if bands[side][1] - bands[side][0] >= min_width_px]


def write_pseudo_labels(videos: Sequence[str], segment, out_dir: Path, every: int = 1,
                        progress: bool = False, negatives_dir: Optional[Path] = None,
                        negatives_every: int = 3) -> list[str]:
    """Write a data folder of video frames whose masks are a teacher's prediction alone.

    Frames have no labels, so each mask is ``255 * teacher probability`` (pseudo-labels): a way
    to add footage like the app's own input (a webcam, a person's hands in front of them) to the
    training data, with a stronger model's judgement as the target.

    Args:
        videos: video files; every ``every``-th frame of each is written, from the first.
        segment: a :class:`portrait.segment.Segmenter` (the teacher), run on each whole frame.
        out_dir: the new folder: ``images/<clip>_<frame>.jpg``, ``masks/<clip>_<frame>.png`` and
            ``train.txt``; new, empty or an earlier output of this tool
            (:func:`portrait.training.folders.claim_data_folder`). Where the run fails, what it
            wrote into a new or empty ``out_dir`` or ``negatives_dir`` is removed.
        every: keep one frame in this many (neighbouring frames are near copies).
        progress: show a progress bar.
        negatives_dir: also write hard negatives here: of every ``negatives_every``-th frame
            (by frame number), the strips beside the person (:func:`background_strips`: the
            chair, the monitor, the wall) as ``images/<clip>_<frame>_<l|r>.jpg`` with an
            all-background mask, listed in its ``train.txt``.
        negatives_every: see ``negatives_dir``.

    Returns:
        The stems written to ``out_dir``, in order.

    Raises:
        ValueError: ``every`` below 1.
        InputError: a video refused by :func:`check_videos` (before anything is written), an
            ``out_dir`` or ``negatives_dir`` that holds files no portrait data tool wrote or
            another tool's output, or a file that cannot be written.
    """
    from tqdm import tqdm

    from portrait.capture import VideoFileSource
    from portrait.sink import write_image

    if every < 1:
        raise ValueError(f"every must be at least 1, got {every}")
    names = check_videos(videos)
    if negatives_every < 1:
        raise ValueError(f"negatives_every must be at least 1, got {negatives_every}")
    from portrait.training.data import new_data_folder, removed_on_failure
    from portrait.training.folders import write_stems

    out_dir = Path(out_dir)
    with removed_on_failure(out_dir, negatives_dir):  # no partial folder where a frame fails
        if negatives_dir is not None:  # both checked before either is created
            new_data_folder(negatives_dir, [], TOOL, "--negatives", create=False)
        new_data_folder(out_dir, [], TOOL)
        if negatives_dir is not None:
            new_data_folder(negatives_dir, [], TOOL, "--negatives")
        stems, negatives = [], []
        for video, name in zip(videos, names):
            with VideoFileSource(video, photo_note=PHOTO_AS_VIDEO) as source:
                for frame in tqdm(source, unit="frame", desc=name, file=sys.stderr,
                                  total=source.frame_count, disable=not progress):
                    if frame.index % every:
                        continue
                    stem = f"{name}_{frame.index:05d}"
                    empty = np.zeros(frame.image.shape[:2], np.uint8)
                    mask = soft_mask(empty, segment.segment(frame.image), 1.0)
                    write_image(out_dir / "images" / f"{stem}.jpg", frame.image)
                    write_image(out_dir / "masks" / f"{stem}.png", mask)
                    stems.append(stem)
                    if negatives_dir is None or frame.index % negatives_every:
                        continue
                    for side, x0, x1 in background_strips(mask):
                        strip = f"{stem}_{side}"
                        write_image(Path(negatives_dir) / "images" / f"{strip}.jpg",
                                    frame.image[:, x0:x1])
                        write_image(Path(negatives_dir) / "masks" / f"{strip}.png",
                                    empty[:, x0:x1])
                        negatives.append(strip)
        write_stems(out_dir / "train.txt", stems)
        if negatives_dir is not None:
            write_stems(Path(negatives_dir) / "train.txt", negatives)
            log.info("wrote %s (hard negatives) to %s",
                     counted(len(negatives), "background strip"), negatives_dir)
    return stems


def build_parser() -> argparse.ArgumentParser:
    from portrait.cli import OneLineParser, positive_int, probability

    p = OneLineParser(
        prog="python -m portrait.training.distill",
        description="Write a data folder whose masks mix the labels with a teacher model's "
                    "prediction (offline distillation; train on it with python -m portrait.training.train).",
    )
    p.add_argument("--teacher", required=True, metavar="MODEL",
                   help="any model the app runs: .hdf5/.h5/.keras or .tflite (e.g. MediaPipe's "
                        "selfie_segmentation.tflite)")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", nargs="+", metavar="DIR|LIST",
                        help="labelled data folders or list files; a folder's train.txt is used "
                             "when present, test.txt never")
    source.add_argument("--video", nargs="+", metavar="FILE",
                        help="unlabelled video files: their frames are written with the teacher's "
                             "prediction alone as the mask (pseudo-labels)")
    p.add_argument("--teacher-tta", choices=TEST_TIME_MODES, default="off", metavar="MODE",
                   help="test-time augmentation of the teacher, as the app's --tta: off, mirror, "
                        "scales or turns (default: off, one pass; --image runs the photo file "
                        "with scales)")
    p.add_argument("--out", required=True, metavar="DIR", help="the new data folder")
    p.add_argument("--weight", type=probability, default=None, metavar="W",
                   help="with --data, the teacher's share of each mask (default 0.3)")
    p.add_argument("--every", type=positive_int, default=None, metavar="N",
                   help="with --video, keep one frame in N (default 1: every frame)")
    p.add_argument("--negatives", metavar="DIR",
                   help="also write hard negatives to this data folder, labelled background: "
                        "with --video, the strips of the room beside the person (chair, monitor, "
                        "wall); with --data, the bands of each photo beyond everyone that the "
                        "label or the teacher calls person (wall, floor, furniture)")
    p.add_argument("--negatives-every", type=positive_int, default=3, metavar="K",
                   help="with --negatives, cut strips from every K-th frame (default 3)")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    from portrait.cli import with_debug

    args = with_debug(parser).parse_args(argv)
    if args.video and args.weight is not None:
        parser.error("--weight mixes labels with the teacher's prediction, but video frames have "
                     "no labels (their masks are the teacher's alone); drop --weight")
    if args.data and args.every is not None:
        parser.error("--every picks frames of a video; it needs --video, not --data")
    from portrait.cli import configure_logging, import_tensorflow_quietly
    from portrait.sink.paths import same_place

    configure_logging()

    if args.negatives and same_place(args.negatives, args.out):
        parser.error("--negatives names the --out folder; each writes its own train.txt, so "
                     "give the negatives a folder of their own")

    def body() -> None:
        from portrait.segment import resolve_model_path

        # Before TensorFlow's slow start; a bare name is also looked up in weights/, as mine's
        # --model and the app's.
        teacher_path = str(resolve_model_path(args.teacher, "pass --teacher PATH to a .hdf5, .h5, "
                                                            ".keras or .tflite model"))
        import_tensorflow_quietly()
        from portrait.training.data import new_data_folder, resolve_split
        from portrait.options import SegmentOptions
        from portrait.segment import create_segmenter

        def check_out_folders(pairs) -> None:
            """What write_* check before writing, before the teacher loads (a conversion may
            take minutes): --negatives, then --out."""
            if args.negatives:
                new_data_folder(Path(args.negatives), pairs, TOOL, "--negatives", create=False)
            new_data_folder(Path(args.out), pairs, TOOL, create=False)

        if args.video:
            check_videos(args.video)  # before the teacher loads
            check_out_folders([])
            with create_segmenter(SegmentOptions(model=teacher_path, tta=args.teacher_tta)) as teacher:
                stems = write_pseudo_labels(args.video, teacher, Path(args.out), args.every or 1,
                                            progress=sys.stderr.isatty(),
                                            negatives_dir=args.negatives and Path(args.negatives),
                                            negatives_every=args.negatives_every)
            log.info("wrote %s (one in %d) to %s", counted(len(stems), "pseudo-labelled frame"),
                     args.every or 1, args.out)
            return
        weight = 0.3 if args.weight is None else args.weight
        pairs = [pair for spec in dict.fromkeys(args.data) for pair in resolve_split(spec, "train")]
        check_photo_stems(pairs)  # before the teacher loads
        check_out_folders(pairs)
        with create_segmenter(SegmentOptions(model=teacher_path, tta=args.teacher_tta)) as teacher:
            stems = write_soft_labels(pairs, teacher, Path(args.out), weight,
                                      progress=sys.stderr.isatty(),
                                      negatives_dir=args.negatives and Path(args.negatives))
        log.info("wrote %s (teacher weight %g) to %s", counted(len(stems), "soft mask"), weight,
                 args.out)

    return run_command(body, traceback=args.debug)


if __name__ == "__main__":
    sys.exit(main())
