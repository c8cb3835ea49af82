"""Hard examples: crops of training photos around what a model takes for a person far from everyone.

    python -m portrait.training.mine --model weights/unet_live.hdf5 \
        --data runs/splits/coco_person/train.txt runs/splits/pelota/train.txt --out runs/mined

Runs the model on each photo as the app does (``--image``: segmenter, guided filter, alpha > 127),
finds the regions of its matte farther than ``--margin`` of the photo's long side from every
labelled person (the suite's "far" measure, :func:`portrait.training.metrics.far_mask`: a
motorbike, a plate of food, stadium seats), and writes a crop around each with the crop of the
true mask as its label, so training sees those things, as background, more often. Mine only sets
whose masks mark every person: where masks leave second people out (EG1800), "far" is often a
person, and the crop would teach the model to drop people. Train on the folder as on any other,
listed several times to weight it up.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Optional, Sequence

import cv2
import numpy as np

from portrait.errors import PortraitError, run_command
from portrait.training.folders import check_photo_stems
from portrait.words import counted

log = logging.getLogger("portrait.training.mine")  # not "__main__" under python -m

MIN_AREA = 0.002  # a far region smaller than this share of the photo is not mined (the suite's bar)
CROP_GROWTH = 0.5  # a crop reaches this share of the region's box beyond it on each side
MIN_CROP = 0.4  # and is at least this share of the photo's short side on each side


class NothingToMine(PortraitError):
    """The model took nothing for a person far from everyone in any photo: there is no crop to
    write, and an empty ``train.txt`` is a folder ``train`` refuses. Exit code 1, as a run that
    worked but found nothing (grep's), where a refused input is 2."""

    exit_code = 1


def far_boxes(truth: np.ndarray, alpha: np.ndarray, margin_px: float,
              min_area: float = MIN_AREA) -> list[tuple[int, int, int, int]]:
    """The boxes ``(x, y, w, h)`` of the matte's regions far from every labelled person.

    Args:
        truth: uint8 (H, W) mask, person where > 127.
        alpha: uint8 (H, W) matte, person where > 127.
        margin_px: how far from every person a pixel must be to count.
        min_area: the smallest region kept, as a share of the photo.

    Returns:
        One box per 8-connected region of far pixels covering at least ``min_area``, largest first.
    """
    from portrait.training.metrics import far_mask

    far = far_mask(truth, alpha, margin_px, threshold=127).astype(np.uint8)
    count, _, stats, _ = cv2.connectedComponentsWithStats(far, connectivity=8)
    rows = [stats[i] for i in range(1, count) if stats[i, cv2.CC_STAT_AREA] >= min_area * far.size]
    rows.sort(key=lambda row: -row[cv2.CC_STAT_AREA])
    return [(int(x), int(y), int(w), int(h)) for x, y, w, h, _ in rows]


def crop_around(box: tuple[int, int, int, int], shape: tuple[int, int],
                growth: float = CROP_GROWTH, min_side: float = MIN_CROP) -> tuple[int, int, int, int]:
    """The crop ``(x0, y0, x1, y1)`` around ``box`` inside a photo of ``shape`` (H, W).

    The box grows by ``growth`` of its size on each side, then to at least ``min_side`` of the
    photo's short side in each direction (about its centre), shifted back inside the photo.
    """
    height, width = shape
    x, y, w, h = box
    least = min_side * min(height, width)

    def span(start: int, size: int, limit: int) -> tuple[int, int]:
        length = min(limit, max(size * (1 + 2 * growth), least))
        centre = start + size / 2
        low = int(round(min(max(centre - length / 2, 0), limit - length)))
        return low, low + int(round(length))

    x0, x1 = span(x, w, width)
    y0, y1 = span(y, h, height)
    return x0, y0, x1, y1


def write_hard_examples(pairs: Sequence[tuple[str, str]], scorer, out_dir: Path,
                        margin: float, min_area: float = MIN_AREA,
                        progress: bool = False) -> list[str]:
    """Write a data folder of crops around each photo's far regions, labelled by the true mask.

    Args:
        pairs: (image path, mask path) pairs whose masks mark every person.
        scorer: a :class:`portrait.training.evaluate.ModelScorer` (the app's matte path).
        out_dir: the new folder: ``images/<stem>_<k>.jpg``, ``masks/<stem>_<k>.png`` (k counts a
            photo's regions from the largest) and ``train.txt``; must not be a source folder, and
            must be new, empty or an earlier output of this tool
            (:func:`portrait.training.folders.claim_data_folder`). Where the run fails, what it
            wrote into a new or empty folder is removed
            (:func:`portrait.training.folders.removed_on_failure`).
        margin: the far margin, as a share of each photo's long side.
        min_area: the smallest region mined, as a share of the photo.

    Returns:
        The stems written, in order.

    Raises:
        InputError: ``out_dir`` is a source folder, holds files that no portrait data tool
            wrote or another tool's output, a photo's crops could not be listed
            (:func:`portrait.training.folders.check_photo_stems`, before anything is written),
            two pairs share a stem, or a photo or mask cannot be read or is no 8-bit grey mask.
        NothingToMine: no photo has a far region; a new or empty ``out_dir`` is left as it was
            (removed or empty), an earlier output of this tool keeps its ``train.txt``.
    """
    from portrait.sink import write_image
    from portrait.training.data import labelled_photos, new_data_folder, removed_on_failure
    from portrait.training.folders import write_stems

    check_photo_stems(pairs, suffix="_0", what="the crops of the photo")  # <stem>_<k>
    out_dir = Path(out_dir)
    with removed_on_failure(out_dir):  # no partial folder where a photo fails
        images_dir, masks_dir = new_data_folder(out_dir, pairs, "portrait.training.mine")
        stems, mined_photos = [], 0
        for _, stem, image, truth in labelled_photos(pairs, "mining", progress):
            alpha, _ = scorer.alpha(image)
            boxes = far_boxes(truth, alpha, margin * max(truth.shape), min_area)
            mined_photos += bool(boxes)
            for k, box in enumerate(boxes):
                x0, y0, x1, y1 = crop_around(box, truth.shape)
                write_image(images_dir / f"{stem}_{k}.jpg", image[y0:y1, x0:x1])
                write_image(masks_dir / f"{stem}_{k}.png", truth[y0:y1, x0:x1])
                stems.append(f"{stem}_{k}")
        if not stems:
            photos = "the photo" if len(pairs) == 1 else f"any of the {len(pairs)} photos"
            raise NothingToMine(
                f"nothing to mine: the model takes nothing for a person farther than {margin:g} "
                f"of the long side from everyone (and at least {min_area:g} of the photo) in "
                f"{photos}, so nothing was written to '{out_dir}'; "
                "lower --margin or --min-area, or mine other photos")
        write_stems(out_dir / "train.txt", stems)
    log.info("wrote %s from %d of %s to %s", counted(len(stems), "crop"), mined_photos,
             counted(len(pairs), "photo"), out_dir)
    return stems


def build_parser() -> argparse.ArgumentParser:
    from portrait.cli import OneLineParser, probability

    p = OneLineParser(
        prog="python -m portrait.training.mine",
        description="Write a data folder of crops around what a model takes for a person far "
                    "from every labelled person (hard examples; train on it with python -m "
                    "portrait.training.train).",
    )
    p.add_argument("--model", required=True, metavar="MODEL",
                   help="the model to mine with, as the app runs it on a photo")
    p.add_argument("--data", required=True, nargs="+", metavar="DIR|LIST",
                   help="labelled data folders or list files whose masks mark every person; a "
                        "folder's train.txt is used when present, test.txt never")
    p.add_argument("--out", required=True, metavar="DIR", help="the new data folder")
    p.add_argument("--margin", type=probability, default=None, metavar="F",
                   help="how far from every person a region must be, as a share of the photo's "
                        "long side (default: the suite's, 0.05)")
    p.add_argument("--min-area", type=probability, default=MIN_AREA, metavar="F",
                   help=f"the smallest region mined, as a share of the photo (default {MIN_AREA})")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    from portrait.cli import with_debug

    args = with_debug(build_parser()).parse_args(argv)
    from portrait.cli import configure_logging, import_tensorflow_quietly

    configure_logging()

    def body() -> None:
        from portrait.segment import resolve_model_path

        # Before TensorFlow's slow start; a bare name is also looked up in weights/.
        model = resolve_model_path(args.model, "pass --model PATH to a .hdf5, .h5, .keras or "
                                               ".tflite model")
        import_tensorflow_quietly()
        from portrait.options import SegmentOptions
        from portrait.training.data import new_data_folder, resolve_split
        from portrait.training.evaluate import FAR_MARGIN, ModelScorer

        margin = FAR_MARGIN if args.margin is None else args.margin
        pairs = [pair for spec in dict.fromkeys(args.data) for pair in resolve_split(spec, "train")]
        check_photo_stems(pairs, suffix="_0", what="the crops of the photo")  # before the model
        new_data_folder(Path(args.out), pairs, "portrait.training.mine", create=False)
        with ModelScorer(SegmentOptions(model=str(model))) as scorer:
            write_hard_examples(pairs, scorer, Path(args.out), margin, args.min_area,
                                progress=sys.stderr.isatty())

    return run_command(body, traceback=args.debug)


if __name__ == "__main__":
    sys.exit(main())
