"""Training data: image/mask folders as a ``tf.data`` pipeline with in-graph augmentation.

A data folder holds ``images/<stem>.jpg|png`` and ``masks/<stem>.png`` (0/255), and optionally list
files of stems (``train.txt``, ``val.txt``/``other.txt``, ``test.txt``). Decoded images are resized
once and cached in memory; every epoch then draws fresh random crops and photometric changes.
Augmentations use ``tf.image`` and raw TF ops only: no second OpenCV distribution.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import tensorflow as tf

from portrait.errors import InputError
from portrait.training.folders import (  # noqa: F401 (the data folder API, re-exported)
    IMAGE_SUFFIXES,
    claim_data_folder,
    find_pairs,
    read_stems,
    removed_on_failure,
    resolve_split,
)
from portrait.option_checks import UNIT, CheckedOptions, Range, bounded
from portrait.options import ZOOM_FACTOR, PadMode
from portrait.words import counted

log = logging.getLogger(__name__)

# AugmentOptions.rotation_deg: a turn either way; past 180 it only repeats turns.
ROTATION = Range(0, 180)


@dataclass(frozen=True)
class AugmentOptions(CheckedOptions):
    """How strongly training samples are varied. Checked when built: a value of the wrong type
    or out of its range raises :class:`~portrait.option_checks.OptionTypeError` or
    :class:`~portrait.option_checks.OptionValueError` naming the field, the value and its range.

    Attributes:
        scale_range: zoom of the crop relative to "the short side fills the crop"; below 1 the
            person appears smaller, with padding around (like a landscape webcam framing); low
            <= high, each above 0 and at most :data:`~portrait.options.MAX_ZOOM`.
        rotation_deg: maximum rotation either way, 0 to 180.
        flip: random horizontal flips.
        photometric: brightness, contrast, saturation, hue and gamma changes.
        blur_prob, noise_prob, jpeg_prob, occlusion_prob: probability of each degradation.
        motion_prob: probability that the people move during the exposure: where the mask is,
            the crop is smeared along a random line (:data:`MOTION_LENGTH_PX`) over the still
            background, as a waving hand is on a webcam; the label stays the sharp mask, so a
            smeared arm is still one piece of person.
        exposure_prob: probability that the crop's light is scaled by a gain drawn log-uniformly
            from :data:`EXPOSURE_GAIN` (a dim room below 1; a window behind above 1, highlights
            clipped), as webcams deliver rooms lit far from the photo sets' studios.
        edge_cut_prob: probability that a crop is placed so that its bottom edge cuts the
            person: at a uniform :data:`EDGE_CUT_DEPTH` of the way down the rows the mask marks
            in the crop's columns (its turn allowed for), as a webcam's bottom edge cuts a
            sitting or standing person at the chest, waist or legs; a sample with no person in
            those columns is cropped as usual.
        paste_prob: probability that a sample's people are pasted, through their mask, over
            another training sample's crop (copy-paste: new scenes and several people per
            image; the label is the union of both samples' people).
        pad: what fills the crop where it leaves the image (zoomed out, rotated corners):
            ``constant``, a random grey level per sample, labelled background; or ``reflect``,
            a mirror image of the photo and its mask. Mirroring looks like more scene, but it
            puts a mirrored copy of the person beside them, labelled person, which teaches that
            a second person at the frame's edge is foreground.
    """

    scale_range: tuple[float, float] = bounded((0.55, 1.35), ZOOM_FACTOR)
    rotation_deg: float = bounded(15.0, ROTATION)
    flip: bool = True
    photometric: bool = True
    blur_prob: float = bounded(0.2, UNIT)
    noise_prob: float = bounded(0.2, UNIT)
    jpeg_prob: float = bounded(0.2, UNIT)
    occlusion_prob: float = bounded(0.15, UNIT)
    motion_prob: float = bounded(0.0, UNIT)
    exposure_prob: float = bounded(0.0, UNIT)
    edge_cut_prob: float = bounded(0.0, UNIT)
    paste_prob: float = bounded(0.0, UNIT)
    pad: PadMode = "constant"


# Where --edge-cut-prob puts the crop's bottom edge: this share of the way down the person's rows.
EDGE_CUT_DEPTH = (0.45, 0.9)

# Light gains of --exposure-prob: a third of a room's light to a window burning out the frame.
EXPOSURE_GAIN = (0.25, 1.8)

# Geometry only: batch-norm statistics for inference are re-estimated on natural-looking crops.
CALIBRATION_AUGMENT = AugmentOptions(photometric=False, blur_prob=0.0, noise_prob=0.0,
                                     jpeg_prob=0.0, occlusion_prob=0.0)


def new_data_folder(out_dir: Path, pairs: Sequence[tuple[str, str]], tool: str,
                    option: str = "--out", create: bool = True) -> tuple[Path, Path]:
    """Create ``out_dir/images`` and ``out_dir/masks`` for a data folder made from ``pairs``
    by ``tool`` (``create=False``: only check that they may be).

    Raises:
        InputError: either is a folder the pairs come from (writing there would replace them),
            or ``out_dir`` may not be claimed (:func:`claim_data_folder`); the message names
            ``option``.
    """
    out_dir = Path(out_dir)
    images_dir, masks_dir = out_dir / "images", out_dir / "masks"
    # Compare where the folders really are: a data folder's images/ or masks/ may be a link to
    # another one's (../shared), and writing through it would replace the source masks.
    sources = {Path(path).resolve().parent for pair in pairs for path in pair}
    if images_dir.resolve() in sources or masks_dir.resolve() in sources:
        raise InputError(f"{option} '{out_dir}' is a source data folder; choose a new folder")
    for folder in (images_dir, masks_dir):  # a training split's links into the data root
        if folder.is_symlink():
            raise InputError(f"{option} '{out_dir}': its {folder.name}/ is a link to "
                             f"'{folder.resolve()}', which this run would write into; choose a "
                             "new folder")
    claim_data_folder(out_dir, option, tool, create)
    if create:
        images_dir.mkdir(exist_ok=True)
        masks_dir.mkdir(exist_ok=True)
    return images_dir, masks_dir


def labelled_photos(pairs: Sequence[tuple[str, str]], desc: str, progress: bool = False):
    """Yield ``(image path, stem, image RGB uint8, mask uint8 of the image's size)`` for each
    pair, with a progress bar labelled ``desc`` when ``progress``.

    Raises:
        InputError: two pairs share a stem (their outputs would overwrite each other), or a
            photo or mask cannot be read, or a mask is no 8-bit grey mask
            (:func:`portrait.training.evaluate.check_mask_scale`).
    """
    import sys

    from tqdm import tqdm

    from portrait.capture import read_image
    from portrait.training.evaluate import read_mask

    seen = set()
    for image_path, mask_path in tqdm(pairs, unit="image", desc=desc, file=sys.stderr,
                                      disable=not progress):
        stem = Path(image_path).stem
        if stem in seen:
            raise InputError(f"two pairs share the stem '{stem}'; write one data folder per --out")
        seen.add(stem)
        image = read_image(image_path)
        yield image_path, stem, image, read_mask(mask_path, image.shape[:2])


# The first bytes of each format TensorFlow's decode_image reads (training decodes in TensorFlow).
_DECODABLE = {b"\xff\xd8\xff": "JPEG", b"\x89PNG\r\n\x1a\n": "PNG", b"BM": "BMP", b"GIF8": "GIF"}
_DECODABLE_MASKS = {magic: name for magic, name in _DECODABLE.items() if name == "PNG"}  # decode_png


def check_masks(pairs: Sequence[tuple[str, str]], sample: int = 16) -> None:
    """Judge a data set's masks on its first ``sample`` pairs (a data set's masks are written
    alike): refuse masks that are not 8-bit grey 0..255 (16-bit, colour, or written as 0 and 1:
    :func:`portrait.training.evaluate.check_mask_scale`; training's grey read would turn them
    into wrong labels without a word), and warn, naming the file, where a mask's size differs
    from its photo's, which training resizes it to (stretching it where the aspect ratios differ).

    Raises:
        InputError: the first such mask, by name.
    """
    from portrait.training.evaluate import check_mask_scale, read_unchanged, stretch_note

    for image_path, mask_path in pairs[:sample]:
        mask = read_unchanged(mask_path)
        if mask is None:  # unreadable ones are check_decodable's
            continue
        mask = check_mask_scale(mask, mask_path)
        image = read_unchanged(image_path)
        if image is None:
            continue
        shape = image.shape[:2] if exif_orientation(image_path) < 5 else image.shape[1::-1]
        if shape != mask.shape:  # the photo upright (its EXIF orientation), as training reads it
            (height, width), (mask_height, mask_width) = shape, mask.shape
            log.warning("mask '%s' is %dx%d, its photo %dx%d: training resizes the mask to the "
                        "photo%s", mask_path, mask_width, mask_height, width, height,
                        stretch_note(shape, mask.shape))


_END_MARKERS = {"JPEG": b"\xff\xd9", "PNG": b"IEND"}  # within the last _TAIL bytes of a whole file
_TAIL = 4096


def check_decodable(pairs: Sequence[tuple[str, str]]) -> None:
    """Refuse, before training starts, a photo or mask the training pipeline cannot decode: one
    whose first bytes are no format it reads (a text file named .jpg, a WebP), or a JPEG or PNG
    cut short (a copy or a download that stopped). Inside ``fit`` either would fail minutes
    later without naming the file. Reads the first bytes and the last 4 KB of each file; a file
    without its format's end marker there (a cut file, or a phone's motion photo with a video
    after the picture) is decoded by TensorFlow's own decoder to tell.

    Raises:
        InputError: the first such file, by name.
    """
    for pair in pairs:
        for path, formats in zip(pair, (_DECODABLE, _DECODABLE_MASKS)):
            try:
                with open(path, "rb") as file:
                    head = file.read(8)
                    file.seek(max(0, os.fstat(file.fileno()).st_size - _TAIL))
                    tail = file.read(_TAIL)
            except OSError as error:
                raise InputError(f"cannot read '{path}': {error.strerror}; check the file") from None
            kind = next((name for magic, name in formats.items() if head.startswith(magic)), None)
            if kind is None:
                raise InputError(f"'{path}' is not a {' or '.join(formats.values())} file, which "
                                 "training reads; convert it or leave it out of the list")
            marker = _END_MARKERS.get(kind)
            if marker is not None and marker not in tail:
                _check_decodes(path, kind)


def _check_decodes(path: str, kind: str) -> None:
    """Decode ``path`` as training does; InputError naming it if it does not decode."""
    try:
        tf.io.decode_image(tf.io.read_file(os.fsencode(path)), expand_animations=False)
    except tf.errors.OpError as error:
        reason = str(error.message).strip().splitlines()[0] if error.message else type(error).__name__
        raise InputError(f"'{path}' does not decode as a {kind} ({reason}): it may be cut short; "
                         "copy it again, re-save it or leave it out of the list") from None


def _path_bytes(pairs: Sequence[tuple[str, str]]) -> tuple[list[bytes], list[bytes], list[int]]:
    """The image paths and the mask paths, each as the bytes the file system names the file by
    (TensorFlow takes a str path only as UTF-8 text, and a file name that is not UTF-8, a
    Latin-1 name on Linux, failed to become a tensor at all), and each photo's EXIF orientation
    (:func:`exif_orientation`)."""
    images, masks = zip(*pairs)
    return ([os.fsencode(path) for path in images], [os.fsencode(path) for path in masks],
            [exif_orientation(path) for path in images])


EXIF_ORIENTATION_TAG = 0x0112


def exif_orientation(path: str) -> int:
    """The EXIF orientation of a photo file, 1 (as stored) to 8; 1 where it has none or it
    cannot be read.

    The app, ``evaluate``, ``distill`` and ``mine`` read a photo upright by it (OpenCV applies
    it, to a JPEG's and a PNG's pixels alike), and masks are drawn on the upright photo; a
    phone's portrait photo is often stored sideways with orientation 6.
    """
    from PIL import Image

    try:
        with Image.open(path) as image:
            orientation = image.getexif().get(EXIF_ORIENTATION_TAG, 1)
    except Exception:  # noqa: BLE001: any failure here means "as stored"; decoding checks the file
        return 1
    return orientation if isinstance(orientation, int) and 1 <= orientation <= 8 else 1


def upright(image, orientation):
    """An (H, W, C) image as its EXIF ``orientation`` (1 to 8, a scalar tensor) says it is
    seen: mirrored and turned as OpenCV's reader does."""
    return tf.switch_case(orientation, [
        lambda: image,  # 0: not a value EXIF uses; as stored
        lambda: image,  # 1: as stored
        lambda: tf.image.flip_left_right(image),
        lambda: tf.image.rot90(image, 2),
        lambda: tf.image.flip_up_down(image),
        lambda: tf.image.transpose(image),  # 5: mirrored along the top-left diagonal
        lambda: tf.image.rot90(image, 3),  # 6: turned a quarter clockwise
        lambda: tf.image.rot90(tf.image.transpose(image), 2),  # 7: along the other diagonal
        lambda: tf.image.rot90(image, 1),  # 8: turned a quarter anticlockwise
    ])


def _decode_resized(image_path, mask_path, orientation, size_for):
    """Decode a pair, the photo upright by its EXIF ``orientation`` as the app reads it, and
    resize both to ``size_for(photo (h, w))``: float32, 0..255 each."""
    image = tf.io.decode_image(tf.io.read_file(image_path), channels=3, expand_animations=False)
    image = upright(image, orientation)
    mask = tf.io.decode_png(tf.io.read_file(mask_path), channels=1)
    size = size_for(tf.shape(image)[:2])
    image = tf.image.resize(image, size, method="area", antialias=True)
    mask = tf.image.resize(tf.cast(mask, tf.float32), size, method="bilinear", antialias=True)
    return image, mask


def _load_pair(image_path, mask_path, orientation, cache_short_px: int):
    """Decode one pair and resize it so its short side is ``cache_short_px`` (kept in memory)."""

    def short_side_size(hw):
        shape = tf.cast(hw, tf.float32)
        return tf.cast(tf.round(shape * (cache_short_px / tf.reduce_min(shape))), tf.int32)

    image, mask = _decode_resized(image_path, mask_path, orientation, short_side_size)
    return tf.cast(tf.round(image), tf.uint8), tf.cast(tf.round(mask), tf.uint8)


def _affine_crop(image, mask, out_hw, aug: AugmentOptions):
    """A random rotation, zoom, flip and crop in one projective transform (one resampling)."""
    in_hw = tf.cast(tf.shape(image)[:2], tf.float32)
    out_h, out_w = float(out_hw[0]), float(out_hw[1])
    # Zoom 1 means the short side of the image fills the crop's matching side.
    base = tf.maximum(out_h / in_hw[0], out_w / in_hw[1])
    zoom = tf.random.uniform([], *aug.scale_range)
    angle = tf.random.uniform([], -aug.rotation_deg, aug.rotation_deg) * math.pi / 180
    flip = tf.cast(aug.flip, tf.float32) * tf.cast(tf.random.uniform([]) < 0.5, tf.float32)
    s = base * zoom  # output pixels per input pixel
    # Where the crop's centre lands in the input: anywhere that keeps it inside the image.
    slack = tf.maximum(in_hw - tf.stack([out_h, out_w]) / s, 0.0) / 2
    jitter = tf.random.uniform([2], -1.0, 1.0)
    centre = in_hw / 2 + slack * jitter
    if aug.edge_cut_prob > 0:  # off, it draws nothing: earlier recipes keep their random streams
        half_w = out_w / s / 2  # the crop's columns in the photo, about its centre
        cut_y = edge_cut_centre_y(mask, out_h / s, columns=(centre[1] - half_w, centre[1] + half_w),
                                  turn=angle)
        cut = tf.random.uniform([]) < aug.edge_cut_prob
        centre = tf.stack([tf.where(cut & tf.math.is_finite(cut_y), cut_y, centre[0]), centre[1]])
    cos, sin = tf.cos(angle) / s, tf.sin(angle) / s
    sign = 1.0 - 2.0 * flip
    # Output (x, y) relative to the crop centre maps to input via rotation/scale, then shift.
    # The transform maps pixel indices, whose centres lie at i + 0.5 in the continuous
    # coordinates ``centre`` is in: without the half pixels a crop sat half an input pixel off,
    # and a flipped one a whole pixel, its first column read past the photo's edge (padding).
    ox, oy = out_w / 2 - 0.5, out_h / 2 - 0.5
    a0, a1 = sign * cos, -sin
    b0, b1 = sign * sin, cos
    a2 = centre[1] - 0.5 - a0 * ox - a1 * oy
    b2 = centre[0] - 0.5 - b0 * ox - b1 * oy
    transform = tf.stack([a0, a1, a2, b0, b1, b2, 0.0, 0.0])[None]
    size = tf.constant([int(out_h), int(out_w)], tf.int32)

    fill_mode = aug.pad.upper()
    grey = tf.random.uniform([], 0.0, 255.0)

    def warp(x, interpolation, fill_value):
        return tf.raw_ops.ImageProjectiveTransformV3(
            images=tf.cast(x, tf.float32)[None], transforms=transform, output_shape=size,
            interpolation=interpolation, fill_mode=fill_mode, fill_value=fill_value,
        )[0]

    return warp(image, "BILINEAR", grey), warp(mask, "BILINEAR", 0.0)


def edge_cut_centre_y(mask, crop_h_in, depth=EDGE_CUT_DEPTH, columns=None, turn=0.0):
    """The crop centre's row that puts a crop ``crop_h_in`` input rows tall with its bottom edge
    at a uniform ``depth`` share of the way down the rows where ``mask`` (H, W, 1; 0..255) marks
    a person (> 127); +inf when it marks none (the caller then keeps its own centre).

    ``columns``: (x0, x1), the crop's extent in the photo's continuous x (pixel j's centre is at
    j + 0.5); only the person in those columns counts, so in a wide photo the cut falls in the
    person the crop shows, not in one beside it. ``turn``: the crop's rotation (radians); its
    bottom edge's middle lies cos(turn) x half its height below its centre."""
    person = mask[..., 0] > 127
    if columns is not None:
        x = tf.cast(tf.range(tf.shape(mask)[1]), tf.float32) + 0.5
        person = person & ((x >= columns[0]) & (x <= columns[1]))[None, :]
    rows = tf.where(tf.reduce_any(person, axis=1))[:, 0]
    depth_share = tf.random.uniform([], *depth)

    def placed():
        top = tf.cast(rows[0], tf.float32)
        bottom = tf.cast(rows[-1], tf.float32) + 1.0
        return top + depth_share * (bottom - top) - tf.cos(turn) * crop_h_in / 2

    return tf.cond(tf.size(rows) > 0, placed, lambda: tf.constant(math.inf))


def _filter2d(image, kernel):
    """Each channel of an (H, W, C) float image convolved with one (KH, KW) kernel ("same" size)."""
    k = tf.tile(kernel[:, :, None, None], [1, 1, tf.shape(image)[-1], 1])
    return tf.nn.depthwise_conv2d(image[None], k, [1, 1, 1, 1], "SAME")[0]


def _gaussian_blur(image, sigma):
    """Separable Gaussian blur of an (H, W, C) float image with a 7-tap kernel."""
    x = tf.range(-3.0, 4.0)
    k = tf.exp(-(x**2) / (2 * sigma**2))
    k = k / tf.reduce_sum(k)
    return _filter2d(_filter2d(image, k[None, :]), k[:, None])


MOTION_LENGTH_PX = (5, 21)  # the smear's length range, in crop pixels (odd lengths)


def line_kernel(length, angle):
    """A normalised (K, K) kernel of a line ``length`` px long through the centre at ``angle``
    radians (0 = horizontal), K the longest length; pixels within half a pixel of the line."""
    half = MOTION_LENGTH_PX[1] // 2
    x = tf.range(-half, half + 1, dtype=tf.float32)
    xx, yy = x[None, :], x[:, None]
    cos, sin = tf.cos(angle), tf.sin(angle)
    along, across = xx * cos + yy * sin, -xx * sin + yy * cos
    k = tf.cast((tf.abs(across) <= 0.5) & (tf.abs(along) <= (length - 1) / 2), tf.float32)
    return k / tf.reduce_sum(k)


def motion_blur(image, mask, kernel):
    """The people in ``image`` smeared by ``kernel`` over the still background.

    A moving foreground F with alpha m over a background B gives conv(F·m) + (1 − conv(m))·B;
    the photo stands in for B (what hides behind the person is unknown).

    Args:
        image: (H, W, C) float image, any range.
        mask: (H, W, 1) float person alpha in 0..1.
        kernel: (K, K) normalised blur kernel, e.g. :func:`line_kernel`.
    """
    return _filter2d(image * mask, kernel) + (1.0 - _filter2d(mask, kernel)) * image


def _random_motion(image, mask_255):
    length = tf.cast(2 * tf.random.uniform([], MOTION_LENGTH_PX[0] // 2, MOTION_LENGTH_PX[1] // 2 + 1,
                                           tf.int32) + 1, tf.float32)
    kernel = line_kernel(length, tf.random.uniform([], 0.0, math.pi))
    return motion_blur(image, tf.clip_by_value(mask_255 / 255.0, 0.0, 1.0), kernel)


def random_exposure(x, gain_range=EXPOSURE_GAIN):
    """``x`` (0..1) times one gain drawn log-uniformly from ``gain_range``, clipped to 0..1."""
    low, high = (math.log(g) for g in gain_range)
    return tf.clip_by_value(x * tf.exp(tf.random.uniform([], low, high)), 0.0, 1.0)


def _photometric(image, aug: AugmentOptions):
    """Colour, gamma, exposure, blur, noise, JPEG and occlusion changes on a 0..255 float image."""
    x = image / 255.0
    if aug.photometric:
        x = tf.image.random_brightness(x, 0.2)
        x = tf.image.random_contrast(x, 0.7, 1.3)
        x = tf.image.random_saturation(x, 0.6, 1.4)
        x = tf.image.random_hue(x, 0.04)
        x = tf.clip_by_value(x, 0.0, 1.0) ** tf.exp(tf.random.uniform([], -0.35, 0.35))

    def maybe(p, fn, y):
        return tf.cond(tf.random.uniform([]) < p, lambda: fn(y), lambda: y)

    if aug.exposure_prob > 0:  # off, it draws nothing: earlier recipes keep their random streams
        x = maybe(aug.exposure_prob, random_exposure, x)
    x = maybe(aug.blur_prob, lambda y: _gaussian_blur(y, tf.random.uniform([], 0.5, 1.8)), x)
    x = maybe(
        aug.noise_prob,
        lambda y: y + tf.random.normal(tf.shape(y), stddev=tf.random.uniform([], 0.01, 0.05)),
        x,
    )
    x = tf.clip_by_value(x, 0.0, 1.0)
    x = maybe(
        aug.jpeg_prob,
        lambda y: tf.image.adjust_jpeg_quality(y, tf.random.uniform([], 30, 90, tf.int32)),
        x,
    )
    x = maybe(aug.occlusion_prob, _occlude, x)
    return tf.clip_by_value(x, 0.0, 1.0) * 255.0


def paste_over(front, front_mask, back, back_mask):
    """Composite ``front``'s people over ``back`` using its 0..255 mask as alpha.

    Returns the composite image and its label: the pasted people plus whatever people of
    ``back`` stay visible around them.
    """
    a = tf.clip_by_value(front_mask / 255.0, 0.0, 1.0)
    image = a * front + (1.0 - a) * back
    mask = front_mask + (1.0 - a) * back_mask
    return image, mask


def _occlude(image):
    """Paint one random flat-coloured rectangle (up to a third of each side) over the image."""
    hw = tf.shape(image)[:2]
    h = tf.random.uniform([], hw[0] // 10, hw[0] // 3, tf.int32)
    w = tf.random.uniform([], hw[1] // 10, hw[1] // 3, tf.int32)
    y = tf.random.uniform([], 0, hw[0] - h, tf.int32)
    x = tf.random.uniform([], 0, hw[1] - w, tf.int32)
    box = tf.pad(tf.ones([h, w, 1]), [[y, hw[0] - h - y], [x, hw[1] - w - x], [0, 0]])
    colour = tf.random.uniform([1, 1, 3])
    return image * (1 - box) + colour * box


def cache_short_side(input_size: tuple[int, int], augment: AugmentOptions) -> int:
    """The short side training photos are cached at: enough for the largest zoom's crops."""
    return int(math.ceil(max(1.5, augment.scale_range[1]) * max(input_size)))


def make_dataset(
    pairs: Sequence[tuple[str, str]],
    input_size: tuple[int, int],
    batch_size: int,
    training: bool,
    augment: AugmentOptions = AugmentOptions(),
    cache_short_px: Optional[int] = None,
    seed: Optional[int] = None,
    short_side: Optional[int] = None,
    views: int = 1,
) -> tf.data.Dataset:
    """Build a batched dataset of (image 0..255 float32 (H, W, 3), mask 0..1 float32 (H, W, 1)).

    Args:
        pairs: (image path, mask path) pairs, e.g. from :func:`resolve_split`.
        input_size: (width, height) of the samples.
        batch_size: samples per batch.
        training: shuffle, repeat forever and augment; otherwise one unaugmented pass over
            the whole photos, framed as the app frames them (see ``short_side``).
        augment: augmentation strengths (training only).
        cache_short_px: decoded images are cached with this short side (default: the larger
            of the input sides times the largest zoom, at least 1.5, so zoomed-in crops keep
            the photo's detail).
        seed: shuffle seed.
        short_side: validation only: every whole photo is resized to the size the app gives
            the model for the photos' most common shape, with this short side (default:
            ``input_size``'s); photos of other shapes are stretched to it. A centre crop would
            hide the top of the head and the hands, where portraits go wrong.
        views: training only: 2 gives each crop twice, for a consistency loss
            (:class:`~portrait.training.losses.ConsistencyLoss`): a batch then holds
            ``2 * batch_size`` rows, the crops as geometry (and any motion smear) made them, then
            the same crops in the same order with the colour, light, blur, noise, JPEG and
            occlusion changes on top.
    """
    if not pairs:
        raise InputError("no training pairs found; check --data")
    if views not in (1, 2):
        raise ValueError(f"views must be 1 or 2, got {views}")
    if not training:
        return _whole_photos(pairs, short_side or min(input_size), batch_size)
    width, height = input_size
    short = cache_short_px or cache_short_side(input_size, augment)
    ds = tf.data.Dataset.from_tensor_slices(_path_bytes(pairs))
    ds = ds.map(lambda i, m, o: _load_pair(i, m, o, short), num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.cache()

    def crop(image, mask):
        return _affine_crop(image, mask, (height, width), augment)

    def finish(image, mask):
        if augment.motion_prob > 0:
            image = tf.cond(tf.random.uniform([]) < augment.motion_prob,
                            lambda: _random_motion(image, mask), lambda: image)
        image.set_shape([height, width, 3])
        mask = tf.clip_by_value(tf.ensure_shape(mask, [height, width, 1]) / 255.0, 0.0, 1.0)
        changed = tf.ensure_shape(_photometric(image, augment), [height, width, 3])
        return ((image, changed), mask) if views == 2 else (changed, mask)

    def stack_views(images, masks):
        return tf.concat(images, axis=0), tf.concat([masks, masks], axis=0)

    cached = ds
    ds = ds.shuffle(len(pairs), seed=seed, reshuffle_each_iteration=True).repeat()
    ds = ds.map(crop, num_parallel_calls=tf.data.AUTOTUNE)
    if augment.paste_prob > 0:
        back_seed = None if seed is None else seed + 7919
        backs = cached.shuffle(len(pairs), seed=back_seed, reshuffle_each_iteration=True).repeat()
        backs = backs.map(crop, num_parallel_calls=tf.data.AUTOTUNE)

        def maybe_paste(front, back):
            return tf.cond(
                tf.random.uniform([]) < augment.paste_prob,
                lambda: paste_over(front[0], front[1], back[0], back[1]),
                lambda: front,
            )

        ds = tf.data.Dataset.zip((ds, backs)).map(maybe_paste, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.map(finish, num_parallel_calls=tf.data.AUTOTUNE).batch(batch_size, drop_remainder=True)
    if views == 2:
        ds = ds.map(stack_views, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def _whole_photos(pairs: Sequence[tuple[str, str]], short_px: int,
                  batch_size: int) -> tf.data.Dataset:
    """Batches of whole photos (0..255) and masks (0..1) at the app's input size for them."""
    from collections import Counter

    from portrait.segment import size_for_frame

    paths = _path_bytes(pairs)

    def photo_size(path: bytes, orientation: int) -> tuple[int, int]:
        data = tf.io.read_file(path)
        if tf.io.is_jpeg(data):  # the size from the header, without decoding the pixels
            shape = tf.image.extract_jpeg_shape(data)
        else:
            shape = tf.shape(tf.io.decode_image(data, expand_animations=False))
        size = int(shape[1]), int(shape[0])
        return size[::-1] if orientation >= 5 else size  # 5 to 8: stored turned a quarter

    common = Counter(map(photo_size, paths[0], paths[2])).most_common(1)[0][0]
    width, height = size_for_frame(common, short_px)
    log.info("validation: %s at %dx%d (the app's input for %dx%d photos)",
             counted(len(pairs), "whole photo"), width, height, *common)

    def load(image_path, mask_path, orientation):
        image, mask = _decode_resized(image_path, mask_path, orientation,
                                      lambda hw: (height, width))
        image.set_shape([height, width, 3])
        mask.set_shape([height, width, 1])
        return image, tf.clip_by_value(mask / 255.0, 0.0, 1.0)

    ds = tf.data.Dataset.from_tensor_slices(paths)
    return ds.map(load, num_parallel_calls=tf.data.AUTOTUNE).cache().batch(batch_size).prefetch(
        tf.data.AUTOTUNE)
