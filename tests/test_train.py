"""Training: a short run on synthetic data writes an .hdf5 the app loads and runs; the model
builder's shapes; the data pipeline's samples."""

import dataclasses
import math
import os
import json
import logging
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest
import tensorflow as tf

from conftest import constant_model, make_data, small_model
from portrait.cli import main as app_main
from portrait.training.data import (EXPOSURE_GAIN, AugmentOptions, cache_short_side, find_pairs,
                                    line_kernel, make_dataset, motion_blur, paste_over,
                                    random_exposure, resolve_split)
from portrait.errors import InputError
from portrait.training.train import DEFAULT_BACKBONE as BACKBONE
from portrait.training.model import build_unet
from portrait.training.train import main as train_main


@pytest.mark.parametrize("size, stride", [((192, 192), 16), ((256, 144), 16), ((224, 128), 32)])
def test_build_unet_shapes(size, stride):
    model = build_unet(size, alpha=0.35, output_stride=stride)
    x = np.random.default_rng(0).uniform(0, 255, (1, size[1], size[0], 3)).astype(np.float32)
    y = model(x).numpy()
    assert y.shape == (1, size[1], size[0], 1)
    assert 0 <= y.min() and y.max() <= 1


def test_build_unet_rejects_sizes_off_the_stride():
    with pytest.raises(ValueError, match="multiple of the output stride 16"):
        build_unet((200, 192))


def test_build_unet_rejects_an_unknown_context_module():
    with pytest.raises(ValueError, match="context must be one of none, lraspp, tail, got 'aspp'"):
        build_unet((192, 192), context="aspp")
    with pytest.raises(ValueError, match="context 'tail' adds blocks 13 to 16 to a stride-16 encoder"):
        build_unet((192, 192), output_stride=32, context="tail")


@pytest.mark.skipif(not BACKBONE.is_file(), reason="../shared/models (the MobileNetV2 backbone) not present")
def test_the_tail_reaches_farther_than_the_stride_16_encoder():
    """context='tail': blanking the left third of a 384x192 frame changes the logits at pixels
    288-320, 160 px beyond the blanked part, once the tail's projection is not zero; through
    the stride-16 encoder alone nothing reaches there. With the ImageNet weights, as in training
    (a random encoder's deep activations vanish). The reach is weak at the start (about 6e-5 in
    the logits): the effective receptive field is much smaller than the theoretical one."""
    import keras

    keras.utils.set_random_seed(1)
    x = np.random.default_rng(0).uniform(0, 255, (1, 192, 384, 3)).astype(np.float32)
    changed = x.copy()
    changed[:, :, :128] = 0
    for context in ("none", "tail"):
        model = build_unet((384, 192), backbone_weights=str(BACKBONE), context=context)
        if context == "tail":
            projection = model.get_layer("context_tail")
            projection.set_weights([np.random.default_rng(1).normal(0, 0.1, w.shape).astype(np.float32)
                                    for w in projection.get_weights()])
        logits = keras.Model(model.input, model.get_layer("logits").output)  # at 1/2 resolution
        far = np.abs(logits(changed).numpy() - logits(x).numpy())[0, :, -48:-32].max()
        if context == "none":
            assert far < 1e-7, far
        else:
            assert far > 1e-5, far


def test_lraspp_gates_each_location_by_the_whole_image():
    import keras
    from portrait.training.model import _lraspp

    x_in = keras.Input((None, None, 6))
    module = keras.Model(x_in, _lraspp(x_in, filters=4))
    rng = np.random.default_rng(0)
    features = rng.normal(size=(1, 2, 40, 6)).astype(np.float32)
    # By hand: ReLU(batch-normalised 1x1 projection) times sigmoid(1x1 conv of the image mean).
    w_proj = module.get_layer("context_proj").get_weights()[0][0, 0]
    w_gate, b_gate = module.get_layer("context_gate").get_weights()
    bn = 1 / np.sqrt(1 + module.get_layer("context_proj_bn").epsilon)
    gate = 1 / (1 + np.exp(-(features.mean(axis=(1, 2)) @ w_gate[0, 0] + b_gate)))
    expected = np.maximum(features @ w_proj * bn, 0) * gate[:, None, None, :]
    np.testing.assert_allclose(module(features).numpy(), expected, rtol=1e-4, atol=1e-5)
    # A change at the right end reaches the left end (a 1x1 projection alone would not).
    changed = features.copy()
    changed[:, :, -10:] += 3
    assert np.abs(module(changed).numpy()[:, :, :5] - module(features).numpy()[:, :, :5]).max() > 1e-3


def test_build_unet_with_context_runs_at_other_sizes():
    model = build_unet((192, 192), alpha=0.35, fixed_input=False, context="lraspp")
    assert model.get_layer("context_gate") is not None
    x = np.random.default_rng(0).uniform(0, 255, (1, 224, 160, 3)).astype(np.float32)
    assert model(x).shape == (1, 224, 160, 1)


def test_dataset_samples_have_the_asked_shape_and_range(tmp_path):
    pairs = resolve_split(str(make_data(tmp_path / "d")), "train")
    assert len(pairs) == 9
    ds = make_dataset(pairs, (64, 48), batch_size=4, training=True, augment=AugmentOptions())
    images, masks = next(iter(ds))
    assert images.shape == (4, 48, 64, 3) and masks.shape == (4, 48, 64, 1)
    assert 0 <= float(images.numpy().min()) and float(images.numpy().max()) <= 255
    assert set(np.unique(np.round(masks.numpy(), 3))) - {0.0, 1.0}  # soft edges after warping
    assert 0 <= float(masks.numpy().min()) and float(masks.numpy().max()) <= 1


def test_two_views_share_the_crop_and_differ_only_in_texture(tmp_path):
    pairs = resolve_split(str(make_data(tmp_path / "d")), "train")
    ds = make_dataset(pairs, (64, 48), batch_size=4, training=True, augment=AugmentOptions(),
                      seed=3, views=2)
    images, masks = (x.numpy() for x in next(iter(ds)))
    assert images.shape == (8, 48, 64, 3) and masks.shape == (8, 48, 64, 1)
    np.testing.assert_array_equal(masks[:4], masks[4:])  # one crop, one label
    assert len({masks[i].tobytes() for i in range(4)}) == 4  # four different crops
    assert np.abs(images[:4] - images[4:]).mean() > 1.0  # colour, light, noise on the second
    # Without texture changes the two views are the same image.
    plain = AugmentOptions(photometric=False, blur_prob=0.0, noise_prob=0.0, jpeg_prob=0.0,
                           occlusion_prob=0.0)
    ds = make_dataset(pairs, (64, 48), batch_size=4, training=True, augment=plain, seed=3,
                      views=2)
    images, _ = (x.numpy() for x in next(iter(ds)))
    np.testing.assert_allclose(images[:4], images[4:])


def test_paste_over_blends_by_the_front_mask_and_unites_the_labels():
    front = np.full((1, 3, 3), 200.0, np.float32)
    back = np.full((1, 3, 3), 40.0, np.float32)
    front_mask = np.array([[[255.0], [0.0], [127.5]]], np.float32)
    back_mask = np.array([[[0.0], [255.0], [255.0]]], np.float32)
    image, mask = paste_over(front, front_mask, back, back_mask)
    np.testing.assert_allclose(image.numpy()[0, :, 0], [200.0, 40.0, 120.0])
    np.testing.assert_allclose(mask.numpy()[0, :, 0], [255.0, 255.0, 255.0])
    _, mask = paste_over(front, front_mask, back, np.zeros_like(back_mask))
    np.testing.assert_allclose(mask.numpy()[0, :, 0], [255.0, 0.0, 127.5])


def test_pasted_samples_keep_labels_on_the_people(tmp_path):
    """Every image has one bright disc on a dark background: after pasting, pixels labelled
    person are bright and background pixels dark, and there is more person per sample."""
    pairs = resolve_split(str(make_data(tmp_path / "d")), "train")
    plain = AugmentOptions(photometric=False, blur_prob=0.0, noise_prob=0.0, jpeg_prob=0.0,
                           occlusion_prob=0.0, rotation_deg=0.0, scale_range=(0.8, 1.0))
    coverage = {}
    for prob in (0.0, 1.0):
        augment = AugmentOptions(**{**plain.__dict__, "paste_prob": prob})
        ds = make_dataset(pairs, (64, 48), batch_size=8, training=True, augment=augment, seed=5)
        images, masks = [], []
        for x, y in ds.take(6):
            images.append(x.numpy())
            masks.append(y.numpy())
        image, mask = np.concatenate(images), np.concatenate(masks)[..., 0]
        brightness = image.mean(axis=-1)
        assert brightness[mask > 0.99].mean() > 150
        assert brightness[mask < 0.01].mean() < 90
        coverage[prob] = mask.mean()
    assert coverage[1.0] > 1.3 * coverage[0.0]


def test_padding_is_grey_background_or_a_mirror_image(tmp_path):
    """Zoomed out to half size, a photo that is all person leaves a border: with constant
    padding it is one grey level per sample labelled background; mirrored, it is more person."""
    folder = tmp_path / "d"
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    for i in range(4):
        cv2.imwrite(str(folder / "images" / f"{i}.png"), np.full((64, 64, 3), 200, np.uint8))
        cv2.imwrite(str(folder / "masks" / f"{i}.png"), np.full((64, 64), 255, np.uint8))
    pairs = find_pairs(folder)
    # The greys are random: a fixed seed keeps four distinct ones from colliding by chance
    # (two of four uniform draws round to the same level about once in 40 runs).
    tf.random.set_seed(7)
    still = dict(photometric=False, blur_prob=0.0, noise_prob=0.0, jpeg_prob=0.0,
                 occlusion_prob=0.0, rotation_deg=0.0, flip=False, scale_range=(0.5, 0.5))
    crops = {}
    for pad in ("constant", "reflect"):
        ds = make_dataset(pairs, (32, 32), batch_size=4, training=True,
                          augment=AugmentOptions(**still, pad=pad), seed=1)
        crops[pad] = [t.numpy() for t in next(iter(ds))]
    images, masks = crops["constant"]
    inner, border = np.zeros((32, 32), bool), np.ones((32, 32), bool)
    inner[10:22, 10:22] = True
    border[6:26, 6:26] = False
    assert (masks[:, inner] > 0.99).all() and (masks[:, border] < 0.01).all()
    assert np.allclose(images[:, inner], 200, atol=1)
    greys = [float(np.median(image[border])) for image in images]
    assert all(np.allclose(image[border], grey, atol=1) for image, grey in zip(images, greys))
    assert len({round(g) for g in greys}) == 4  # a fresh grey per sample
    images, masks = crops["reflect"]
    assert (masks > 0.99).all() and np.allclose(images, 200, atol=1)


def test_validation_samples_are_whole_photos_framed_like_the_app(tmp_path):
    """A 3:4 photo whose person touches the top and bottom edges: validation resizes the whole
    of it to the app's input for 3:4 photos (short side 64 -> 64x96 at the stride of 32),
    nothing cut off; a photo of another shape is stretched to the same size."""
    folder = tmp_path / "d"
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    image = np.full((80, 60, 3), 30, np.uint8)
    mask = np.zeros((80, 60), np.uint8)
    mask[:, 20:40] = 255  # a vertical band from the top edge to the bottom edge
    image[mask > 0] = 220
    # JPEGs give their size from the header, other formats are decoded: the 3:4 shape wins
    # only if both are read right ("a", the square one, comes first and would win a tie).
    for name, size, ext in (("a", (80, 80), "jpg"), ("b", (60, 80), "jpg"), ("c", (60, 80), "png")):
        cv2.imwrite(str(folder / "images" / f"{name}.{ext}"), cv2.resize(image, size))
        cv2.imwrite(str(folder / "masks" / f"{name}.png"), cv2.resize(mask, size))
    ds = make_dataset(find_pairs(folder), (192, 192), 8, training=False, short_side=64)
    images, masks = next(iter(ds))
    assert images.shape == (3, 96, 64, 3) and masks.shape == (3, 96, 64, 1)
    for i in (1, 2):
        band = masks.numpy()[i, ..., 0] > 0.5
        assert band.any(axis=1).all()  # every row: the top and bottom were kept
        assert band.mean() == pytest.approx(1 / 3, abs=0.03)
        assert np.median(images.numpy()[i][band]) == pytest.approx(220, abs=4)
        assert np.median(images.numpy()[i][~band]) == pytest.approx(30, abs=4)


def test_the_validation_line_counts_one_photo_in_the_singular(tmp_path, caplog):
    """One validation photo is "1 whole photo", two are "2 whole photos" (words.counted)."""
    folder = make_data(tmp_path / "d", count=2)
    pairs = find_pairs(folder)
    for count, words in ((1, "1 whole photo at"), (2, "2 whole photos at")):
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="portrait"):
            make_dataset(pairs[:count], (64, 64), 8, training=False, short_side=64)
        lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("validation:")]
        assert len(lines) == 1 and lines[0].startswith(f"validation: {words} "), lines


def test_a_phone_photo_stored_sideways_is_trained_on_upright_as_the_app_reads_it(tmp_path,
                                                                                caplog):
    """A portrait photo stored turned a quarter with EXIF orientation 6 (as phones store them)
    and its mask drawn on the upright photo (as distill writes it from the app's reading):
    training decoded the stored pixels, warned that the mask 'is 48x64, its photo 64x48 ...
    stretching it' and stretched the upright mask over the sideways photo, so the person's label
    lay across the background. Training and validation samples now put the label on the person,
    as evaluate and the app see the photo, without a warning."""
    from PIL import Image

    from portrait.capture import read_image
    from portrait.training.data import check_masks

    upright = np.full((64, 48, 3), 30, np.uint8)
    upright[:, :24] = 220  # the person: the left half of the upright photo
    mask = np.zeros((64, 48), np.uint8)
    mask[:, :24] = 255
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    stored = Image.fromarray(np.rot90(upright, 1))  # orientation 6: turn it clockwise to view
    exif = stored.getexif()
    exif[0x0112] = 6
    stored.save(tmp_path / "images" / "phone.jpg", exif=exif, quality=95)
    cv2.imwrite(str(tmp_path / "masks" / "phone.png"), mask)
    pairs = find_pairs(tmp_path)
    assert np.abs(read_image(pairs[0][0]).astype(int) - upright).max() < 8  # the app's reading
    with caplog.at_level("WARNING", logger="portrait"):
        check_masks(pairs)
    assert caplog.text == ""
    still = AugmentOptions(scale_range=(1.0, 1.0), rotation_deg=0.0, flip=False,
                           photometric=False, blur_prob=0.0, noise_prob=0.0, jpeg_prob=0.0,
                           occlusion_prob=0.0)
    for training in (True, False):
        images, masks = next(iter(make_dataset(pairs, (32, 64), 1, training, augment=still,
                                               short_side=32)))
        images, masks = images.numpy()[0].mean(axis=-1), masks.numpy()[0, ..., 0]
        assert images[masks > 0.9].mean() > 180 and images[masks < 0.1].mean() < 70, training


def test_zoom_above_one_crops_closer(tmp_path):
    """A disc of radius 10 in the middle of a 64x64 photo, cropped to 32x32: at zoom 1 the
    whole photo fits the crop (radius 5); at zoom 2 the crop shows a quarter of the photo
    around a jittered centre, the disc at radius 10 and whole in some samples."""
    folder = tmp_path / "d"
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    mask = np.zeros((64, 64), np.uint8)
    cv2.circle(mask, (32, 32), 10, 255, -1)
    for i in range(4):
        cv2.imwrite(str(folder / "images" / f"{i}.png"), cv2.merge([mask] * 3))
        cv2.imwrite(str(folder / "masks" / f"{i}.png"), mask)
    still = dict(photometric=False, blur_prob=0.0, noise_prob=0.0, jpeg_prob=0.0,
                 occlusion_prob=0.0, rotation_deg=0.0, flip=False)
    coverage = {}
    for zoom in (1.0, 2.0):
        ds = make_dataset(find_pairs(folder), (32, 32), batch_size=16, training=True,
                          augment=AugmentOptions(**still, scale_range=(zoom, zoom)), seed=2)
        coverage[zoom] = next(iter(ds))[1].numpy().mean(axis=(1, 2, 3))
    disc = np.pi / 1024  # a disc of radius 1 as a fraction of the 32x32 crop
    np.testing.assert_allclose(coverage[1.0], 25 * disc, rtol=0.15)
    assert coverage[2.0].max() == pytest.approx(100 * disc, rel=0.1)
    assert (coverage[2.0] <= 100 * disc * 1.1).all()


STILL = dict(photometric=False, blur_prob=0.0, noise_prob=0.0, jpeg_prob=0.0, occlusion_prob=0.0,
             rotation_deg=0.0, flip=False)


def _one_photo(folder: Path, image: np.ndarray, mask: np.ndarray) -> list[tuple[str, str]]:
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    cv2.imwrite(str(folder / "images" / "a.png"), image)
    cv2.imwrite(str(folder / "masks" / "a.png"), mask)
    return find_pairs(folder)


@pytest.mark.parametrize("photo_wh", [(128, 64), (48, 96)], ids=["landscape", "portrait"])
def test_crops_at_zoom_one_and_above_lie_inside_the_photo_wherever_they_fall(tmp_path, photo_wh):
    """A photo that is all person, of either shape, cropped square, 16:9 and 9:16 at zooms 1
    to 2: zoom 1 is the photo's short side filling the crop, so no crop reaches past its edges
    (no padding, labelled background); at a fixed zoom 2 the crops fall at different places."""
    width, height = photo_wh
    texture = np.random.default_rng(0).integers(0, 255, (height, width, 3), np.uint8)
    pairs = _one_photo(tmp_path / "d", texture, np.full((height, width), 255, np.uint8))
    for size in ((32, 32), (64, 36), (36, 64)):
        ds = make_dataset(pairs, size, 16, True, seed=1,
                          augment=AugmentOptions(**STILL, scale_range=(1.0, 2.0)))
        masks = next(iter(ds))[1].numpy()
        assert masks.min() == pytest.approx(1.0), size
    ds = make_dataset(pairs, (32, 32), 16, True, seed=1,
                      augment=AugmentOptions(**STILL, scale_range=(2.0, 2.0)))
    images = next(iter(ds))[0].numpy()
    assert len({image.tobytes() for image in images}) == 16  # one photo, sixteen places


def test_single_view_samples_carry_the_texture_changes(tmp_path):
    """One view (the default): the sample is the crop with its colour, light, blur, noise, JPEG
    and occlusion changes, not the plain crop; a plain grey photo comes out varied."""
    pairs = _one_photo(tmp_path / "d", np.full((64, 64, 3), 120, np.uint8),
                       np.full((64, 64), 255, np.uint8))
    geometry_only = dict(rotation_deg=0.0, flip=False, scale_range=(1.0, 1.0))
    for augment, varied in ((AugmentOptions(**geometry_only), True),
                            (AugmentOptions(**STILL, scale_range=(1.0, 1.0)), False)):
        images = next(iter(make_dataset(pairs, (32, 32), 8, True, augment=augment, seed=2)))[0]
        assert bool(np.abs(images.numpy() - 120).max() > 20) is varied


def test_flips_mirror_the_photo_and_its_mask_together(tmp_path):
    """The person is the left third of a square photo: flipped samples have it on the right,
    in the image and the label alike; without flips every sample has it on the left. Zoom 1
    crops the whole photo, flipped or not, with no padding at an edge (a flipped crop's first
    column was read a pixel past the photo's edge: grey, labelled background)."""
    image = np.full((64, 64, 3), 30, np.uint8)
    mask = np.zeros((64, 64), np.uint8)
    image[:, :20], mask[:, :20] = 220, 255
    pairs = _one_photo(tmp_path / "d", image, mask)
    for flip in (True, False):
        augment = AugmentOptions(**{**STILL, "flip": flip}, scale_range=(1.0, 1.0))
        images, masks = (t.numpy() for t in next(iter(make_dataset(pairs, (32, 32), 16, True,
                                                                      augment=augment, seed=4))))
        left = masks[:, :, :8, 0].mean(axis=(1, 2)) > 0.99
        right = masks[:, :, -8:, 0].mean(axis=(1, 2)) > 0.99
        assert (left ^ right).all()  # the person at one side, never both
        brightness, label = images.mean(axis=-1), masks[..., 0]
        assert brightness[label > 0.99].min() > 200 and brightness[label < 0.01].max() < 50
        if flip:
            assert 0 < right.sum() < 16, right  # both ways in sixteen samples
        else:
            assert left.all()


def test_rotations_turn_a_disc_without_stretching_it(tmp_path):
    """A disc in the middle of a square photo, cropped whole at zoom 1, turned up to 45 degrees
    either way and flipped: a turn keeps its area and its roundness (a wrong sign in the
    transform would shear it into an ellipse of another area), and its label stays on it."""
    image = np.full((96, 96, 3), 30, np.uint8)
    mask = np.zeros((96, 96), np.uint8)
    cv2.circle(mask, (48, 48), 24, 255, -1)
    image[mask > 0] = 220
    pairs = _one_photo(tmp_path / "d", image, mask)
    augment = AugmentOptions(**{**STILL, "rotation_deg": 45.0, "flip": True}, scale_range=(1.0, 1.0),
                             pad="reflect")  # turned corners: more of the plain background
    images, masks = (t.numpy() for t in next(iter(make_dataset(pairs, (48, 48), 16, True,
                                                                  augment=augment, seed=6))))
    area = np.pi * 12 ** 2  # radius 24 at half size
    for image, label in zip(images, masks[..., 0]):
        assert label.sum() == pytest.approx(area, rel=0.05)
        ys, xs = np.nonzero(label > 0.5)
        assert np.var(xs) == pytest.approx(np.var(ys), rel=0.1)  # round, not an ellipse
        assert abs(np.cov(xs, ys)[0, 1]) < 0.1 * np.var(xs)  # nor one along a diagonal
        brightness = image.mean(axis=-1)  # the label on the disc
        assert brightness[label > 0.99].min() > 200 and brightness[label < 0.01].max() < 50


@pytest.mark.parametrize("orientation", range(1, 9))
def test_training_turns_a_photo_upright_as_the_app_reads_it(tmp_path, orientation):
    """Each EXIF orientation (a PNG, decoded exactly by both): the stored pixels TensorFlow
    decodes, turned by ``upright``, are the pixels the app's reader gives."""
    from PIL import Image

    from portrait.capture import read_image
    from portrait.training.data import exif_orientation, upright

    stored = np.zeros((4, 6, 3), np.uint8)
    stored[..., 0] = np.arange(24).reshape(4, 6) * 10  # every pixel its own value
    photo = Image.fromarray(stored)
    exif = photo.getexif()
    exif[0x0112] = orientation
    path = str(tmp_path / "photo.png")
    photo.save(path, exif=exif)
    assert exif_orientation(path) == orientation
    decoded = tf.io.decode_image(tf.io.read_file(path), channels=3)
    np.testing.assert_array_equal(upright(decoded, tf.constant(orientation)).numpy(),
                                  read_image(path)[..., ::-1])


def test_photos_are_cached_large_enough_for_the_largest_zoom():
    assert cache_short_side((192, 192), AugmentOptions()) == 288  # 1.5 x, zoom up to 1.35
    assert cache_short_side((192, 128), AugmentOptions(scale_range=(0.5, 2.0))) == 384


def test_unknown_padding_is_refused():
    with pytest.raises(ValueError, match=r"^AugmentOptions.pad = 'wrap': expected one of "
                                         r"'constant', 'reflect'$"):
        AugmentOptions(pad="wrap")
    with pytest.raises(ValueError, match=r"^AugmentOptions.scale_range = \(1.5, 1.0\): expected "
                                         r"\(low, high\) with low <= high, two numbers, each "
                                         r"greater than 0 and at most 10$"):
        AugmentOptions(scale_range=(1.5, 1.0))


def test_validation_split_never_uses_test(tmp_path):
    folder = make_data(tmp_path / "d")
    (folder / "val.txt").unlink()
    (folder / "train.txt").unlink()
    (folder / "test.txt").write_text("000\n001\n")
    stems = {p[0].split("/")[-1][:3] for p in resolve_split(str(folder), "train")}
    assert "000" not in stems and "001" not in stems and len(stems) == 10


def test_a_test_list_named_as_such_is_refused_for_training_and_distillation(tmp_path, capsys):
    """"test.txt is never used for training or validation" holds when one is named too."""
    from portrait.training.distill import main as distill_main

    folder = make_data(tmp_path / "d")
    (folder / "test.txt").write_text("000\n001\n")
    with pytest.raises(InputError, match="is a test list: a test set is never used"):
        resolve_split(str(folder / "test.txt"), "train")
    capsys.readouterr()
    assert train_main(["--data", str(folder / "test.txt"), "--backbone", "none",
                       "--out", str(tmp_path / "x.hdf5")]) == 2
    assert "is a test list" in capsys.readouterr().err
    teacher = constant_model(tmp_path / "teacher.keras", 0.7)
    assert distill_main(["--teacher", teacher, "--data", str(folder / "test.txt"),
                         "--out", str(tmp_path / "soft")]) == 2
    assert "is a test list" in capsys.readouterr().err
    assert not (tmp_path / "soft").exists() or not any((tmp_path / "soft").rglob("*.png"))


def test_a_test_list_is_refused_before_any_model_loads_even_when_empty(tmp_path, capsys):
    """--data or --val naming a test.txt is refused as a test list with the path checks, before
    a model loads (here one that would not), where it came after the model, and an empty one
    was refused as empty, as if filling it would do."""
    folder = make_data(tmp_path / "d")
    (tmp_path / "corrupt.h5").write_text("not a model")
    base = ["--init", str(tmp_path / "corrupt.h5"), "--out", str(tmp_path / "x.hdf5"),
            "--run-dir", str(tmp_path / "run")]
    for text in ("000\n001\n", ""):
        (folder / "test.txt").write_text(text)
        for data in (["--data", str(folder / "test.txt")],
                     ["--data", str(folder), "--val", str(folder / "test.txt")]):
            assert train_main(data + base) == 2
            err = capsys.readouterr().err.strip().splitlines()
            assert err[-1].startswith(f"error: '{folder / 'test.txt'}' is a test list: a test set "
                                      "is never used for training"), (text, data, err)
    assert not (tmp_path / "run").exists()


def test_a_folders_validation_list_that_is_broken_or_shared_is_said(tmp_path, caplog):
    """A folder's other.txt naming a missing photo is an error, as a broken train.txt is; one
    sharing pairs with training is named in a warning and not used (it was dropped silently
    after the log had announced it)."""
    from portrait.training.train import TrainOptions, _split

    folder = make_data(tmp_path / "d")
    (folder / "val.txt").unlink()
    (folder / "other.txt").write_text("000\n900001\n")
    (folder / "train.txt").write_text("\n".join(f"{i:03d}" for i in range(1, 9)))
    with pytest.raises(InputError, match="900001"):
        _split(TrainOptions(data=(str(folder),), out="x.hdf5"))
    (folder / "other.txt").write_text("001\n002\n")  # training pairs too
    with caplog.at_level("WARNING", logger="portrait"):
        train, val = _split(TrainOptions(data=(str(folder),), out="x.hdf5", val_split=0.25))
    assert "other.txt is not used for validation: 2 of its pairs are training pairs too" \
        in caplog.text
    assert len(train) + len(val) == 8 and len(val) == 2  # --val-split of the training pairs


def test_a_single_photo_without_a_validation_set_is_one_line_that_says_why(tmp_path):
    """One photo and its mask: --val-split held it out for validation (at least one always),
    and the run stopped in 'no training pairs found; check --data', of a folder that has one."""
    from portrait.errors import PortraitError
    from portrait.training.train import TrainOptions, _split

    folder = make_data(tmp_path / "d", count=1)
    (folder / "train.txt").unlink()
    (folder / "val.txt").unlink()
    with pytest.raises(PortraitError) as refused:
        _split(TrainOptions(data=(str(folder),), out="x.hdf5"))
    assert str(refused.value) == ("--data holds 1 photo with a mask, and --val-split holds out 1 "
                                  "for validation, leaving none to train on; add photos, or pass "
                                  "--val with a validation set of its own")


def test_a_validation_split_of_a_list_repeated_to_weight_it_holds_out_every_repeat(tmp_path):
    """--data A A with no validation set: --val-split holds out 5 % of A's 40 photos, each with
    all its repeats (the split was of the 80 entries, so a held-out photo's other copy trained
    and the run was refused as sharing photos); without a repeat the split is as it was."""
    import random

    from portrait.training.train import TrainOptions, _split

    folder = make_data(tmp_path / "d", count=40)
    (folder / "val.txt").unlink()
    (folder / "all.txt").write_text("\n".join(f"{i:03d}" for i in range(40)))
    spec = str(folder / "all.txt")
    train, val = _split(TrainOptions(data=(spec, spec), out="x.hdf5", seed=5))
    assert len(val) == 2 and len(set(val)) == 2
    assert len(train) == 76 and not set(train) & set(val)
    assert all(train.count(pair) == 2 for pair in train)
    once_train, once_val = _split(TrainOptions(data=(spec,), out="x.hdf5", seed=5))
    shuffled = resolve_split(spec, "train")
    random.Random(5).shuffle(shuffled)
    assert (once_val, once_train) == (shuffled[:2], shuffled[2:])


def test_missing_stem_is_a_clear_error(tmp_path):
    folder = make_data(tmp_path / "d")
    with pytest.raises(InputError, match="no image or mask"):
        find_pairs(folder, ["nope"])
    # A listed photo whose mask alone is missing is named too, not a KeyError.
    (folder / "masks" / "004.png").unlink()
    with pytest.raises(InputError, match="1 listed stem .* has no image or mask \\(first: '004', which has no mask\\)"):
        find_pairs(folder, ["003", "004"])


def test_validation_takes_val_txt_before_other_txt(tmp_path):
    folder = make_data(tmp_path / "d")  # val.txt: 009, 010, 011
    (folder / "other.txt").write_text("000\n")
    assert [Path(image).stem for image, _ in resolve_split(str(folder), "val")] == ["009", "010", "011"]
    (folder / "val.txt").unlink()
    assert [Path(image).stem for image, _ in resolve_split(str(folder), "val")] == ["000"]


@pytest.mark.slow
@pytest.mark.parametrize("context, distil, loss", [
    ("none", False, "dice+bce"), ("lraspp", True, "dice+bce"), ("none", False, "bce+2*consistency"),
])
def test_short_training_run_writes_a_model_the_app_uses(tmp_path, context, distil, loss):
    data = make_data(tmp_path / "data")
    out = tmp_path / "tiny.hdf5"
    teacher = ["--teacher", constant_model(tmp_path / "teacher.h5", 0.7)] if distil else []
    code = train_main(["--data", str(data), "--epochs", "1", "--steps-per-epoch", "2",
                       "--batch", "2", "--input-size", "64x64", "--alpha", "0.35",
                       "--backbone", "none", "--context", context, "--out", str(out),
                       "--loss", loss, "--run-dir", str(tmp_path / "run")] + teacher)
    assert code == 0 and out.is_file()
    with h5py.File(out) as written:  # the model to run; Adam's state stays in the run folder
        assert "model_weights" in written and "optimizer_weights" not in written
    assert (tmp_path / "run" / "metrics.csv").read_text().count("\n") == 2  # header + epoch
    options = json.loads((tmp_path / "run" / "train.json").read_text())
    assert options["input_size"] == [64, 64] and options["context"] == context
    assert len(options["teacher"]) == int(distil)

    result = tmp_path / "o.png"
    assert app_main(["--model", str(out), "--image", str(data / "images" / "000.jpg"),
                     "--out", str(result), "--matte", "-q"]) == 0
    matte = cv2.imread(str(result), cv2.IMREAD_UNCHANGED)
    assert matte.shape == (64, 80) and matte.dtype == np.uint8


def test_average_last_tries_the_mean_of_the_last_epochs_weights(tmp_path):
    """--average-last 2: the weights after epochs 2 and 3 are kept, their mean becomes a third
    candidate (kernels exactly the mean; batch-norm statistics re-estimated), scored on
    validation beside the best and the final weights, and each candidate is written out."""
    import keras

    data = make_data(tmp_path / "data")
    run = tmp_path / "run"
    (run / "tail").mkdir(parents=True)
    stale = run / "tail" / "epoch_009.weights.h5"  # from an earlier run in the same folder
    stale.write_bytes(b"old")
    out = tmp_path / "x.hdf5"
    assert train_main(["--data", str(data), "--epochs", "3", "--steps-per-epoch", "2",
                       "--batch", "2", "--input-size", "64x64",
                       "--init", small_model(tmp_path / "small.h5"), "--out", str(out),
                       "--run-dir", str(run), "--average-last", "2", "--bn-steps", "2"]) == 0
    tail = sorted(p.name for p in (run / "tail").iterdir())
    assert tail == ["epoch_002.weights.h5", "epoch_003.weights.h5"]  # the stale file is gone
    result = json.loads((run / "result.json").read_text())
    assert set(result["val_iou"]) == {"final", "best", "average"}
    assert result["kept"] == max(result["val_iou"], key=result["val_iou"].get)
    average = keras.models.load_model(run / "candidate_average.hdf5", compile=False)
    epochs = []
    for name in tail:
        model = keras.models.load_model(run / "candidate_final.hdf5", compile=False)
        model.load_weights(run / "tail" / name)
        epochs.append(model)
    kernels = [[w.numpy() for w in m.trainable_weights if "kernel" in w.path] for m in epochs]
    assert any(np.abs(a - b).max() > 1e-6 for a, b in zip(*kernels))  # the epochs differ
    averaged = [w.numpy() for w in average.trainable_weights if "kernel" in w.path]
    for got, first, second in zip(averaged, *kernels):
        np.testing.assert_allclose(got, (first + second) / 2, atol=1e-6)
    assert (run / "candidate_best.hdf5").is_file() and out.is_file()


@pytest.mark.parametrize("count", ["1", "4"])
def test_average_last_outside_the_run_is_one_line(tmp_path, count, capsys):
    data = make_data(tmp_path / "data")
    code = train_main(["--data", str(data), "--epochs", "3", "--backbone", "none",
                       "--out", str(tmp_path / "x.hdf5"), "--average-last", count])
    err = capsys.readouterr().err.strip().splitlines()
    # named by the flag typed, not the options' field
    assert code == 2 and err[-1] == (f"error: --average-last {count}: expected 0 "
                                     "(off) or a whole number from 2 to epochs (3)")
    assert not (tmp_path / "x.hdf5").exists()


@pytest.mark.parametrize("option", ["--init", "--teacher"])
def test_a_model_that_does_not_load_is_named_by_its_option(tmp_path, option, capsys):
    """--init and --teacher both name model files: a corrupt one is named with the option it
    came from, in one line, before any data loads."""
    data = make_data(tmp_path / "data")
    corrupt = tmp_path / "model.hdf5"
    corrupt.write_bytes(b"not a model")
    code = train_main(["--data", str(data), "--backbone", "none",
                       "--out", str(tmp_path / "x.hdf5"), option, str(corrupt)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith(f"error: {option}: cannot read model '{corrupt}': "
                                            "not a valid HDF5 file"), err
    assert not (tmp_path / "x.hdf5").exists()


def test_teachers_and_a_consistency_loss_are_one_line(tmp_path, capsys):
    data = make_data(tmp_path / "data")
    code = train_main(["--data", str(data), "--backbone", "none", "--out", str(tmp_path / "x.hdf5"),
                       "--loss", "dice+consistency",
                       "--teacher", constant_model(tmp_path / "teacher.h5", 0.7)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and "--teacher with a consistency loss" in err[-1]
    assert not (tmp_path / "x.hdf5").exists()


def test_resume_needs_the_flag(tmp_path):
    data = make_data(tmp_path / "data")
    (tmp_path / "run" / "backup").mkdir(parents=True)
    code = train_main(["--data", str(data), "--out", str(tmp_path / "x.hdf5"),
                       "--run-dir", str(tmp_path / "run"), "--backbone", "none"])
    assert code != 0


def test_a_resumed_run_keeps_a_better_checkpoint_from_before(tmp_path):
    data = make_data(tmp_path / "data")
    run = tmp_path / "run"
    args = ["--data", str(data), "--out", str(tmp_path / "x.hdf5"), "--run-dir", str(run),
            "--epochs", "1"] + small_run(tmp_path)
    assert train_main(args) == 0
    assert (run / "best.h5").is_file() and not (run / "best.tmp.h5").exists()
    # Pretend the epoch before the interruption scored better than any epoch can.
    log = (run / "metrics.csv").read_text().splitlines()
    column = log[0].split(",").index("val_iou")
    row = log[1].split(",")
    row[column] = "0.999"
    (run / "metrics.csv").write_text("\n".join([log[0], ",".join(row)]) + "\n")
    before = (run / "best.h5").read_bytes()
    (run / "backup").mkdir()  # as an interruption before the first epoch's end leaves it
    # The checkpoint is written beside best.h5, then moved over it: a run stopped while writing
    # it leaves a partial best.tmp.h5 and an intact best.h5.
    (run / "best.tmp.h5").write_bytes(before[: len(before) // 2])
    assert train_main(args + ["--resume"]) == 0
    assert (run / "best.h5").read_bytes() == before
    assert not (run / "best.tmp.h5").exists()


def test_best_logged_reads_the_highest_value(tmp_path):
    from portrait.training.train import best_logged

    log = tmp_path / "metrics.csv"
    assert best_logged(log) is None
    log.write_text("epoch,iou,val_iou\n0,0.5,0.61\n1,0.6,0.72\n2,0.7,0.70\n")
    assert best_logged(log) == pytest.approx(0.72)
    log.write_text("epoch,iou,val_iou\n")
    assert best_logged(log) is None


@pytest.mark.parametrize("args, message", [
    (["--paste-prob", "2"], "'2' must be from 0 to 1"),
    (["--input-size", "0x192"], "size '0x192' must be positive"),
    (["--zoom", "2,1"], "zoom '2,1' must have 0 < MIN <= MAX"),
    (["--zoom", "0.5,inf"], "zoom '0.5,inf' must have 0 < MIN <= MAX <= 10"),
    (["--zoom", "0.5,1e30"], "zoom '0.5,1e30' must have 0 < MIN <= MAX <= 10"),
    (["--zoom", "nan,1"], "zoom 'nan,1' must have"),
    (["--zoom", "1.5"], "zoom '1.5' is not MIN,MAX"),
    (["--loss", "dice+hinge"], "unknown loss term 'hinge' in 'dice+hinge'"),
    (["--lr", "nan"], "--lr: 'nan' must be greater than 0"),
    (["--lr", "-1"], "--lr: '-1' must be greater than 0"),
    (["--epochs", "0"], "--epochs: '0' must be greater than 0"),
    (["--steps-per-epoch", "-1"], "--steps-per-epoch: '-1' must be greater than 0"),
    (["--bn-steps", "-1"], "--bn-steps: '-1' must be 0 or more"),
    (["--batch", "0"], "--batch: '0' must be greater than 0"),
    (["--short-side", "-5"], "--short-side: short side '-5' must be a multiple of 32, greater than 0"),
    (["--alpha", "0"], "--alpha: '0' must be greater than 0"),
    (["--val-split", "nan"], "--val-split: 'nan' must be at least 0 and below 1"),
    (["--warmup-epochs", "nan"], "--warmup-epochs: 'nan' must be 0 or more"),
    (["--loss", "nan*dice"], "loss weight 'nan' in 'nan*dice' must be a finite number greater than 0"),
    (["--loss", "inf*bce"], "loss weight 'inf' in 'inf*bce' must be a finite number"),
    (["--loss", "1e400*dice"], "loss weight '1e400' in '1e400*dice' must be a finite number"),
    (["--loss", "0*dice"], "loss weight '0' in '0*dice' must be a finite number greater than 0"),
    (["--loss", "2*dice+-1*bce"], "loss weight '-1' in '2*dice+-1*bce' must be a finite number"),
    (["--short-side", "100"], "--short-side: short side '100' is not a multiple of 32, e.g. 96 or 128"),
    (["--short-side", "16"], "--short-side: short side '16' is not a multiple of 32, e.g. 32"),
    (["--seed", "-1"], "--seed: '-1' must be from 0 to 4294967295"),
    (["--seed", "4294967296"], "--seed: '4294967296' must be from 0 to 4294967295"),
    (["--seed", "1.5"], "--seed: '1.5' is not a whole number"),
    (["--teacher-weight", "1.5"], "--teacher-weight: '1.5' must be from 0 to 1"),
    (["--average-last", "-2"], "--average-last: '-2' must be 0 or more"),
    (["--output-stride", "8"], "--output-stride: invalid choice: 8 (choose from 16, 32)"),
    (["--out", ""], "--out: empty; give a value or leave the option out"),
    (["--teacher", ""], "--teacher: empty; give a value or leave the option out"),
    (["--val", "v", " "], "--val: empty; give a value or leave the option out"),
])
def test_bad_training_options_are_one_line(args, message, capsys):
    with pytest.raises(SystemExit) as stop:
        train_main(["--data", "somewhere"] + args)
    err = capsys.readouterr().err
    assert stop.value.code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_line_kernel_is_a_normalised_line_at_its_angle():
    flat = line_kernel(5.0, 0.0).numpy()
    centre = flat.shape[0] // 2
    assert flat.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(flat[centre, centre - 2:centre + 3], 0.2)  # 5 px, each 1/5
    assert np.count_nonzero(flat) == 5
    upright = line_kernel(5.0, np.pi / 2).numpy()
    np.testing.assert_allclose(upright[centre - 2:centre + 3, centre], 0.2, atol=1e-6)
    assert np.count_nonzero(upright > 1e-6) == 5
    diagonal = line_kernel(21.0, np.pi / 4).numpy()  # 21 px long: 7 px each way in x and y
    assert diagonal.sum() == pytest.approx(1.0, abs=1e-5)
    assert diagonal[centre + 7, centre + 7] > 0 and diagonal[centre - 7, centre - 7] > 0
    assert diagonal[centre + 8, centre + 8] == 0 and diagonal[centre, centre + 3] == 0


def test_motion_blur_smears_the_person_over_a_still_background():
    image = np.full((20, 30, 1), 50.0, np.float32)
    mask = np.zeros((20, 30, 1), np.float32)
    image[5:15, 10:20], mask[5:15, 10:20] = 200.0, 1.0  # the person, 10 x 10, on grey 50
    out = motion_blur(tf.constant(image), tf.constant(mask), line_kernel(5.0, 0.0)).numpy()[..., 0]
    # Moving sideways: 1 px beside the person it is 2/5 person (150 * 2/5 above grey 50), 2 px
    # beside it 1/5, 3 px beside it the background alone; above and below nothing changes.
    np.testing.assert_allclose(out[10, [9, 8, 7]], [50 + 150 * 2 / 5, 50 + 150 / 5, 50], atol=1e-3)
    np.testing.assert_allclose(out[10, [20, 21, 22]], [50 + 150 * 2 / 5, 50 + 150 / 5, 50], atol=1e-3)
    np.testing.assert_allclose(out[:5], 50.0)
    # Inside, the person itself: the photo stands in for what hides behind them.
    np.testing.assert_allclose(out[10, 10:20], 200.0, atol=1e-3)


def test_motion_samples_keep_their_sharp_labels(tmp_path):
    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    (data / "masks").mkdir()
    image = np.full((64, 64, 3), 60, np.uint8)
    image[16:48, 24:40] = 220
    mask = np.zeros((64, 64), np.uint8)
    mask[16:48, 24:40] = 255
    cv2.imwrite(str(data / "images" / "a.png"), image)
    cv2.imwrite(str(data / "masks" / "a.png"), mask)
    still = AugmentOptions(scale_range=(1.0, 1.0), rotation_deg=0.0, flip=False, photometric=False,
                           blur_prob=0.0, noise_prob=0.0, jpeg_prob=0.0, occlusion_prob=0.0)
    moving = dataclasses.replace(still, motion_prob=1.0)
    pairs = find_pairs(data)
    (a_image, a_mask), = make_dataset(pairs, (64, 64), 1, True, augment=still, seed=1).take(1)
    (b_image, b_mask), = make_dataset(pairs, (64, 64), 1, True, augment=moving, seed=1).take(1)
    np.testing.assert_array_equal(a_mask.numpy(), b_mask.numpy())  # the label stays sharp
    # The image is smeared where the person's edge is, and only there.
    changed = np.abs(a_image.numpy() - b_image.numpy()).max(axis=-1)[0] > 1.0
    edge = cv2.dilate(cv2.Canny(mask, 10, 20), np.ones((21, 21), np.uint8)) > 0
    assert changed.any() and not (changed & ~edge).any()


def test_exposure_scales_the_whole_crop_by_one_gain_and_clips_highlights():
    x = tf.constant(np.linspace(0.02, 1.0, 50, dtype=np.float32).reshape(5, 10, 1))
    gains = []
    for seed in range(20):
        tf.random.set_seed(seed)
        out = random_exposure(x).numpy()
        unclipped = out < 1.0
        ratio = out[unclipped] / x.numpy()[unclipped]
        np.testing.assert_allclose(ratio, ratio[0], rtol=1e-5)  # one gain for every pixel
        gains.append(ratio[0])
        if ratio[0] > 1.0:  # brighter: what the gain lifts past white is white
            np.testing.assert_array_equal(out[x.numpy() * ratio[0] >= 1.0], 1.0)
    assert EXPOSURE_GAIN[0] <= min(gains) and max(gains) <= EXPOSURE_GAIN[1]
    assert min(gains) < 0.7 and max(gains) > 1.2  # both a dim room and a window, in 20 draws


def _edge_cut_data(root, with_person=True):
    """One 64x256 photo whose first channel holds its row number: a person block in rows
    64..191, columns 16..47 (none if not with_person)."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    image = np.full((256, 64, 3), 60, np.uint8)
    image[..., 0] = np.arange(256, dtype=np.uint8)[:, None]
    mask = np.zeros((256, 64), np.uint8)
    if with_person:
        mask[64:192, 16:48] = 255
    cv2.imwrite(str(root / "images" / "a.png"), image)
    cv2.imwrite(str(root / "masks" / "a.png"), mask)
    return find_pairs(root)


def _edge_cut_crops(pairs, prob, n=24, side=64, rotation_deg=0.0):
    aug = AugmentOptions(scale_range=(1.0, 1.0), rotation_deg=rotation_deg, flip=False,
                         photometric=False, blur_prob=0.0, noise_prob=0.0, jpeg_prob=0.0,
                         occlusion_prob=0.0, edge_cut_prob=prob)
    ds = make_dataset(pairs, (side, side), 1, True, augment=aug, seed=3, cache_short_px=64)
    return [(image.numpy()[0], mask.numpy()[0, ..., 0]) for image, mask in ds.take(n)]


@pytest.mark.parametrize("side", [64, 32])  # 32: the photo's rows shrunk to half (zoom 1)
def test_edge_cut_crops_end_inside_the_person_at_a_drawn_depth(tmp_path, side):
    pairs = _edge_cut_data(tmp_path / "data")
    tf.random.set_seed(5)
    depths = []
    scale = side / 64  # crop pixels per photo pixel
    for image, label in _edge_cut_crops(pairs, 1.0, side=side):
        # ends in the person (columns 16..47 of the photo), not beside it
        assert label[-1, side // 4:3 * side // 4].min() > 0.99
        assert label[-1, :side * 12 // 64].max() < 0.01
        # The crop's last row shows the photo's row number, written as blue (OpenCV's BGR): the
        # row at its pixel centre, half a crop pixel above the crop's bottom edge.
        bottom_edge = float(image[-1, side // 2, 2]) + 0.5 + 0.5 / scale
        depths.append((bottom_edge - 64) / 128)  # share of the way down the person's 128 rows
    assert 0.45 - 0.01 <= min(depths) < 0.55 and 0.8 < max(depths) <= 0.9 + 0.01
    # Without it the crop's centre is anywhere in the photo: some crops end below the person.
    tf.random.set_seed(5)
    assert any(label[-1, 32] < 0.5 for _, label in _edge_cut_crops(pairs, 0.0))


def test_edge_cut_leaves_a_crop_with_no_person_as_usual(tmp_path):
    pairs = _edge_cut_data(tmp_path / "data", with_person=False)
    for image, label in _edge_cut_crops(pairs, 1.0, n=4):
        assert label.shape == (64, 64) and np.isfinite(label).all() and label.max() == 0.0
        rows = image[:, 32, 2]  # the photo's own rows, 64 of them, not the padding's grey
        assert np.isfinite(rows).all() and rows[-1] - rows[0] == pytest.approx(63, abs=0.5)


def test_edge_cut_centre_y_of_hand_made_masks():
    """Rows 10..19 marked (> 127; 127 is not): halfway down them is row 15, and a crop 8 rows
    tall ending there is centred at 11; a person in one row, 30, a quarter of the way down it:
    centre 30.25 - 4; no person: +inf."""
    from portrait.training.data import edge_cut_centre_y

    mask = np.zeros((40, 30, 1), np.uint8)
    mask[10:20, 5:8] = 255
    mask[25:40, 0] = 127
    assert float(edge_cut_centre_y(tf.constant(mask), 8.0, depth=(0.5, 0.5))) == 11.0
    one_row = np.zeros((40, 30, 1), np.uint8)
    one_row[30, 3] = 128
    assert float(edge_cut_centre_y(tf.constant(one_row), 8.0, depth=(0.25, 0.25))) == 26.25
    assert float(edge_cut_centre_y(tf.constant(np.zeros((40, 30, 1), np.uint8)), 8.0)) == np.inf
    # The default depths: 45-90 % of the way down, each drawn anew (rows 0..99, a crop 0 tall).
    tall = np.zeros((100, 4, 1), np.uint8)
    tall[:, 1] = 255
    tf.random.set_seed(2)
    depths = [float(edge_cut_centre_y(tf.constant(tall), 0.0)) for _ in range(200)]
    assert 45 <= min(depths) < 47 and 88 < max(depths) <= 90


def test_edge_cut_centre_y_counts_the_crops_columns_and_its_turn():
    """Two people, rows 10..19 in columns 0..4 and rows 30..39 in columns 20..29: a crop over
    columns 18..30 (pixel centres 18.5..29.5 inside) cuts the second one only; over columns
    0..30, both. Turned by 60 degrees, a crop 8 rows tall ends cos 60 x 4 = 2 rows below its
    centre."""
    from portrait.training.data import edge_cut_centre_y

    mask = np.zeros((40, 30, 1), np.uint8)
    mask[10:20, 0:5] = 255
    mask[30:40, 20:30] = 255
    half = (0.5, 0.5)
    assert float(edge_cut_centre_y(tf.constant(mask), 8.0, half, columns=(18.0, 30.0))) == 31.0
    assert float(edge_cut_centre_y(tf.constant(mask), 8.0, half, columns=(0.0, 30.0))) == 21.0
    # a pixel counts by its centre: column 4 (centre 4.5) is outside a crop from 4.6
    assert float(edge_cut_centre_y(tf.constant(mask), 8.0, half, columns=(4.6, 19.4))) == np.inf
    assert float(edge_cut_centre_y(tf.constant(mask), 8.0, half, columns=(4.4, 19.4))) == 11.0
    turned = float(edge_cut_centre_y(tf.constant(mask), 8.0, half, columns=(18.0, 30.0),
                                     turn=math.pi / 3))
    assert turned == pytest.approx(33.0, abs=1e-5)


def test_edge_cut_in_a_wide_photo_cuts_the_person_the_crop_shows(tmp_path):
    """A 64x256 photo with one person in rows 0..31 (columns 16..47) and another in rows
    32..63 (columns 120..151), farther apart than a crop is wide: every crop that shows one
    ends inside it (its rows alone count), where counting both people's rows put the cut at
    29..58, mostly below the first (as did counting twice the crop's width: the second's rows
    too, for a crop centred at columns 56..80)."""
    root = tmp_path / "data"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    mask = np.zeros((64, 256), np.uint8)
    mask[0:32, 16:48] = 255
    mask[32:64, 120:152] = 255
    image = np.full((64, 256, 3), 60, np.uint8)
    image[:, :84] = 100  # tells which one a crop shows
    cv2.imwrite(str(root / "images" / "a.png"), image)
    cv2.imwrite(str(root / "masks" / "a.png"), mask)
    tf.random.set_seed(7)
    shown = {"first": 0, "second": 0}
    for image, label in _edge_cut_crops(find_pairs(root), 1.0, n=40):
        columns = label.max(axis=0) > 0.99  # a crop 64 wide shows one of them at most
        if columns.any():
            person = image[label > 0.99]
            shown["first" if person[0, 0] > 80 else "second"] += 1
            assert label[-1, columns].min() > 0.99  # the bottom edge runs through the person
    assert min(shown.values()) >= 5, shown


def test_edge_cut_of_a_turned_crop_puts_its_bottom_edges_middle_at_the_drawn_depth(tmp_path):
    """Crops turned by up to 60 degrees, over a person 4 rows tall (rows 120..123, every
    column): the middle of each crop's bottom edge lies 45-90 % of the way down those rows,
    however far it is turned (read from the photo's row numbers in the crop, as the turn
    itself); a crop placed as if unturned ends up to (1 - cos 60) x 32 = 16 rows above them."""
    root = tmp_path / "data"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    image = np.full((256, 64, 3), 60, np.uint8)
    image[..., 0] = np.arange(256, dtype=np.uint8)[:, None]
    mask = np.zeros((256, 64), np.uint8)
    mask[120:124] = 255
    cv2.imwrite(str(root / "images" / "a.png"), image)
    cv2.imwrite(str(root / "masks" / "a.png"), mask)
    tf.random.set_seed(5)
    turns = []
    for image, _ in _edge_cut_crops(find_pairs(root), 1.0, rotation_deg=60.0):
        rows = image[..., 2].astype(np.float64)  # the photo's row under each crop pixel
        cos = (rows[-1, 31:33].mean() - rows[0, 31:33].mean()) / 63  # rows per crop row
        bottom_edge = rows[-1, 31:33].mean() + 0.5 + 0.5 * cos  # half a crop pixel below
        assert 120 + 0.45 * 4 - 0.3 <= bottom_edge <= 120 + 0.9 * 4 + 0.3, (cos, bottom_edge)
        turns.append(math.degrees(math.acos(min(1.0, cos))))
    assert max(turns) > 45  # turned far enough for the rows to tell


def test_edge_cut_off_draws_nothing():
    """Off (probability 0), the crop draws no more random numbers than before the option, so
    an earlier recipe's crops are drawn as they were; on, it draws two (the depth, whether to
    cut)."""
    from portrait.training.data import _affine_crop

    image, mask = tf.zeros((64, 64, 3), tf.uint8), tf.zeros((64, 64, 1), tf.uint8)

    def draws(prob):
        crop = tf.function(lambda: _affine_crop(image, mask, (32, 32),
                                                AugmentOptions(edge_cut_prob=prob)))
        graph = crop.get_concrete_function().graph
        return sum(op.type == "RandomUniform" for op in graph.get_operations())

    assert draws(0.0) + 2 == draws(0.5)


@pytest.mark.parametrize("field", ["paste_prob", "motion_prob", "exposure_prob", "edge_cut_prob"])
def test_augment_probabilities_reach_the_training_options(field):
    """From the flag to TrainOptions, and from there to the crops' AugmentOptions."""
    from portrait.training.train import TrainOptions, augment_options, build_parser

    flag = "--" + field.replace("_", "-")
    assert getattr(build_parser().parse_args(["--data", "d", flag, "0.3"]), field) == 0.3
    assert getattr(TrainOptions(data=("d",)), field) == getattr(AugmentOptions(), field) == 0.0
    assert getattr(augment_options(TrainOptions(data=("d",), **{field: 0.3})), field) == 0.3


def test_zoom_reaches_the_training_options():
    from portrait.training.train import TrainOptions, build_parser

    args = build_parser().parse_args(["--data", "d", "--zoom", "0.5,1.8"])
    assert args.zoom == (0.5, 1.8)
    assert build_parser().parse_args(["--data", "d"]).zoom == AugmentOptions().scale_range
    assert TrainOptions(data=("d",)).zoom == AugmentOptions().scale_range
    from portrait.training.train import augment_options

    chosen = augment_options(TrainOptions(data=("d",), zoom=(0.5, 1.8), pad="reflect"))
    assert chosen.scale_range == (0.5, 1.8) and chosen.pad == "reflect"


def test_a_single_number_is_a_square_training_size():
    from portrait.cli import parse_size

    assert parse_size("192") == (192, 192) and parse_size("256x144") == (256, 144)


def test_run_checks_come_before_anything_is_written_or_trained(tmp_path, capsys):
    data = make_data(tmp_path / "data")
    init = Path(constant_model(tmp_path / "init.h5", 0.6))
    before = init.read_bytes()
    run = tmp_path / "run"
    base = ["--data", str(data), "--backbone", "none", "--run-dir", str(run), "--epochs", "1"]
    (tmp_path / "a_file").write_text("not a folder")
    backbone = tmp_path / "backbone.weights.h5"
    backbone.write_bytes(b"weights")
    (tmp_path / "a_folder.hdf5").mkdir()
    (tmp_path / "corrupt.h5").write_text("not a model")
    cv2.imwrite(str(tmp_path / "photo.jpg"), np.zeros((8, 8, 3), np.uint8))
    missing = str(tmp_path / "missing.h5")
    cases = [
        (["--init", str(init), "--out", str(tmp_path / "init.h5")], "is the --init model"),
        (["--teacher", str(init), "--out", str(tmp_path / "init.h5")], "is the --teacher model"),
        (["--backbone", str(backbone), "--out", str(backbone)],
         f"--out '{backbone}' is the --backbone weights file, which the run reads"),
        (["--out", str(tmp_path / "a_folder.hdf5")],
         f"--out '{tmp_path / 'a_folder.hdf5'}' is a folder, not a model file"),
        # Model files are checked before the data loads (this --data is nowhere).
        (["--init", missing, "--out", str(tmp_path / "x.hdf5"), "--data", str(tmp_path / "nowhere")],
         f"--init '{missing}' not found"),
        (["--init", str(tmp_path / "a_folder.hdf5"), "--out", str(tmp_path / "x.hdf5")],
         f"--init '{tmp_path / 'a_folder.hdf5'}' is a folder, not a file"),
        (["--init", str(tmp_path / "corrupt.h5"), "--out", str(tmp_path / "x.hdf5")],
         "corrupt.h5"),
        (["--teacher", missing, "--out", str(tmp_path / "x.hdf5")], f"--teacher '{missing}' not found"),
        # A photo given as a model is named as no model file, not as a corrupt one.
        (["--init", str(tmp_path / "photo.jpg"), "--out", str(tmp_path / "x.hdf5")],
         f"--init '{tmp_path / 'photo.jpg'}' is not a model file: training takes Keras models "
         "(.hdf5, .h5, .keras), and its type '.jpg' is none of them; give the model file to "
         "fine-tune"),
        (["--teacher", str(tmp_path / "a_file"), "--out", str(tmp_path / "x.hdf5")],
         f"--teacher '{tmp_path / 'a_file'}' is not a model file: training takes Keras models "
         "(.hdf5, .h5, .keras), and its type '(none)' is none of them; give the teacher's model "
         "file"),
        (["--backbone", missing, "--out", str(tmp_path / "x.hdf5")], f"--backbone '{missing}' not found"),
        (["--input-size", "100x100", "--out", str(tmp_path / "x.hdf5")],
         "--input-size 100x100 must be a multiple of the output stride 16"),
        (["--input-size", "208x208", "--out", str(tmp_path / "x.hdf5")],
         "--input-size 208x208 would store a short side of 208 px, which the app cannot run "
         "models at (a multiple of 32); pass --short-side PX, e.g. --short-side 192"),
        (["--out", str(tmp_path / "a_file" / "x.hdf5")], "a_file"),
        (["--resume", "--out", str(tmp_path / "x.hdf5")], "holds no interrupted run"),
    ]
    for args, message in cases:
        assert train_main(base + args) == 2, args
        err = capsys.readouterr().err.strip().splitlines()
        assert message in err[-1] and "Traceback" not in "\n".join(err), err
    assert init.read_bytes() == before and backbone.read_bytes() == b"weights"
    assert not run.exists(), "a refused run left its run folder"


def test_data_that_is_a_video_a_photo_or_nowhere_is_refused_before_the_model_is_built(
        tmp_path, capsys, monkeypatch):
    """--data clip.avi built the MobileNetV2-UNet (loading the encoder's weights) and then
    refused the video as a list file that is not text. A video (as --data or --val), a photo
    and a path that is nowhere are each refused in one line before the model is built or any
    model loads, with nothing written."""
    from portrait.training import model as model_module

    built = []
    monkeypatch.setattr(model_module, "build_unet", lambda *a, **k: built.append(a))
    clip = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for i in range(3):
        writer.write(np.full((48, 64, 3), 40 * i, np.uint8))
    writer.release()
    assert clip.stat().st_size > 0
    data = make_data(tmp_path / "data", count=4)
    photo = data / "images" / "000.jpg"
    out, run = tmp_path / "x.hdf5", tmp_path / "run"
    base = ["--out", str(out), "--run-dir", str(run), "--epochs", "1"] + TINY
    cases = [
        (["--data", str(clip)],
         f"error: --data '{clip}' is a video; training takes labelled photos (a folder of images/ "
         "and masks/, or a list file in one): label its frames first with python -m "
         f"portrait.training.distill --teacher MODEL --video '{clip}' --out DIR, then pass "
         "--data DIR"),
        (["--data", str(data), "--val", str(clip)], f"error: --val '{clip}' is a video; "),
        (["--data", str(photo)], f"error: list file '{photo}' is not text (it holds NUL bytes"),
        (["--data", str(data), "--val", str(tmp_path / "nowhere")],
         f"error: training data '{tmp_path / 'nowhere'}' not found; pass a data folder or a "
         "list file"),
    ]
    for args, message in cases:
        assert train_main(args + base) == 2, args
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith(message) and "Traceback" not in "\n".join(err), err
        assert not built, args  # refused before the model was built
    assert not out.exists() and not run.exists()


def _other_model(kind: str, path: Path) -> str:
    """A real Keras model file that the app may run but training cannot fine-tune."""
    import keras

    inputs = keras.Input((64, 64, 3) if kind == "fixed" else (None, None, 3))
    x = inputs if kind == "unscaled" else keras.layers.Rescaling(1 / 255)(inputs)
    if kind == "classifier":  # ten classes, no map
        x = keras.layers.Dense(10, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x))
    elif kind == "softmax":  # person = channel 1, which the app reads; training has one mask
        x = keras.layers.Conv2D(2, 1, activation="softmax")(x)
    elif kind == "half":  # a map at half the input's size
        x = keras.layers.Conv2D(1, 3, strides=2, padding="same", activation="sigmoid")(x)
    else:
        x = keras.layers.Conv2D(1, 1, activation="sigmoid")(x)
    keras.Model(inputs, x).save(path)
    return str(path)


@pytest.mark.parametrize("kind, option, message", [
    ("classifier", "--init", "gives an output of shape (1, 10) for a 64x64 crop, where training "
                             "needs a one-channel person probability of the crop's size, "
                             "(1, 64, 64, 1)"),
    ("softmax", "--init", "gives an output of shape (1, 64, 64, 2) for a 64x64 crop"),
    ("half", "--teacher", "gives an output of shape (1, 32, 32, 1) for a 64x64 crop"),
    ("fixed", "--init", "has a fixed 64x64 input, and training runs it on crops and whole "
                        "validation photos of other sizes"),
    ("unscaled", "--init", "does not rescale pixels itself (no Rescaling or Normalization layer "
                           "after its input), so it expects another range than the 0..255 "
                           "pixels training feeds it"),
    ("unscaled", "--teacher", "does not rescale pixels itself (no Rescaling or Normalization "
                              "layer after its input), so it expects another range than the "
                              "0..255 pixels training feeds it"),
])
def test_a_model_training_cannot_fine_tune_or_learn_from_is_one_line(tmp_path, capsys, kind,
                                                                      option, message):
    """--init or --teacher with a classifier, a two-channel softmax, a map of another size or a
    fixed input: the first, third and fourth stopped fit in 'unexpected ValueError' (exit 1)
    after the data was read; the softmax trained both channels towards the mask and wrote a
    model that marks nobody reliably (exit 0); --init with a model that does not rescale its
    input (x/255 done outside it) was fed 0..255 and trained (exit 0), and a --teacher like it
    was taken without a word. Each is refused in one line before the data is read or the run
    folder written."""
    model = _other_model(kind, tmp_path / f"{kind}.hdf5")
    out, run = tmp_path / "x.hdf5", tmp_path / "run"
    code = train_main(["--data", no_data_yet(tmp_path), option, model, "--out", str(out),
                       "--run-dir", str(run), "--epochs", "1"] + TINY)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith(f"error: {option} '{model}' "), err
    assert message in err[-1] and "use a model as python -m portrait.training.train writes " \
        "them" in err[-1], err
    assert not out.exists() and not run.exists()


def test_a_tail_on_a_stride_32_encoder_is_one_line_before_anything_is_read(tmp_path, capsys):
    """--context tail with --output-stride 32 (the help says 'stride 16 only') stopped in
    'unexpected ValueError' (exit 1) from the model builder; it is refused in one line that
    says what to pass, before the data is read or the run folder written."""
    out, run = tmp_path / "x.hdf5", tmp_path / "run"
    code = train_main(["--data", no_data_yet(tmp_path), "--context", "tail",
                       "--output-stride", "32", "--out", str(out), "--run-dir", str(run),
                       "--epochs", "1"] + TINY)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1] == (
        "error: --context tail adds encoder blocks 13 to 16 to a stride-16 encoder, and "
        "--output-stride 32 already runs them; pass --output-stride 16 (the default) or another "
        "--context"), err
    assert not out.exists() and not run.exists()


@pytest.mark.parametrize("kind", ["model", "photo", "narrower"])
def test_a_backbone_file_of_no_encoder_weights_is_one_line(tmp_path, capsys, kind):
    """--backbone with a trained model (a plausible slip for --init), a photo, or the weights
    of a narrower MobileNetV2 stopped in 'unexpected ValueError' (exit 1), the last after one
    Keras warning per encoder layer. Each is refused in one line that says what --backbone
    takes, before the data is read or the run folder written."""
    import warnings

    import keras

    if kind == "model":
        backbone = constant_model(tmp_path / "trained.hdf5", 0.5)
        message = f"'{backbone}' is a whole Keras model, not backbone weights; "
    elif kind == "photo":
        backbone = tmp_path / "me.jpg"
        cv2.imwrite(str(backbone), np.zeros((8, 8, 3), np.uint8))
        message = f"backbone weights '{backbone}' is not an HDF5 file; "
    else:
        backbone = tmp_path / "a035.weights.h5"
        keras.applications.MobileNetV2(input_shape=(None, None, 3), alpha=0.35, include_top=False,
                                       weights=None).save_weights(backbone)
        message = f"backbone weights '{backbone}' do not fit MobileNetV2 alpha 0.5 (A total of "
    out, run = tmp_path / "x.hdf5", tmp_path / "run"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code = train_main(["--data", no_data_yet(tmp_path), "--out", str(out), "--run-dir",
                           str(run), "--epochs", "1"] + TINY + ["--alpha", "0.5", "--backbone",
                                                                str(backbone)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith(f"error: {message}"), err
    assert err[-1].endswith("--backbone expects MobileNetV2 alpha 0.5 weights (include_top=False), "
                            "as model.save_weights writes them to a .weights.h5 file, or "
                            "'imagenet', 'auto' or 'none'; to fine-tune a trained model, pass it "
                            "as --init"), err
    assert not [w for w in caught if "could not" in str(w.message) or "Skipping" in str(w.message)]
    assert not out.exists() and not run.exists()


@pytest.mark.parametrize("option, advice", [
    ("--teacher", "a teacher that runs outside Keras labels the data once instead: python -m "
                  "portrait.training.distill --teacher "),
    ("--init", "fine-tune the Keras model (.hdf5) it was exported from"),
])
def test_a_tflite_teacher_or_init_is_named_as_such_not_as_a_corrupt_file(tmp_path, capsys,
                                                                          option, advice):
    """MediaPipe's selfie model, which the README suggests as a teacher (for distill), given to
    train --teacher or --init was called "not a valid HDF5 file, it may be truncated or corrupt;
    re-download or re-export the model": a sound file, refused for what it is not."""
    model = tmp_path / "selfie_segmentation.tflite"
    model.write_bytes(b"\x1c\x00\x00\x00TFL3" + bytes(64))  # a TFLite file's first bytes
    code = train_main(["--data", no_data_yet(tmp_path), option, str(model),
                       "--out", str(tmp_path / "x.hdf5"), "--run-dir", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1] == (f"error: {option} '{model}' is a TFLite model, which "
                                     f"training cannot run; {advice}" + (
                                         f"{model} --data ... --out DIR, then train on DIR"
                                         if option == "--teacher" else "")), err
    assert not (tmp_path / "run").exists()


def test_an_interrupted_run_resumes_only_as_it_was_started_and_a_refusal_changes_nothing(
        tmp_path, capsys):
    data = make_data(tmp_path / "data")
    run = tmp_path / "run"
    run.mkdir()
    (run / "backup").mkdir()  # an interrupted run
    saved = {"epochs": 50, "lr": 0.001}
    (run / "train.json").write_text(json.dumps(saved))
    base = ["--data", str(data), "--backbone", "none", "--run-dir", str(run),
            "--out", str(tmp_path / "x.hdf5")]
    assert train_main(base + ["--epochs", "3", "--lr", "0.05"]) == 2
    err = capsys.readouterr().err
    assert "already has a backup; pass --resume" in err
    assert f"or remove '{run / 'backup'}' to start over" in err
    assert train_main(base + ["--epochs", "3", "--lr", "0.001", "--resume"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "--resume with other options" in err and "epochs 50 -> 3" in err and "lr" not in err, err
    assert json.loads((run / "train.json").read_text()) == saved
    assert not (tmp_path / "x.hdf5").exists()


def test_a_photo_training_cannot_decode_is_named_before_training(tmp_path, capsys):
    data = make_data(tmp_path / "data")
    bad = sorted((data / "images").iterdir())[3]
    bad.write_text("not an image")
    assert train_main(["--data", str(data), "--backbone", "none", "--epochs", "1",
                       "--out", str(tmp_path / "x.hdf5"), "--run-dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert bad.name in err and "is not a" in err, err


@pytest.mark.parametrize("which", ["images", "masks"])
def test_a_photo_or_mask_cut_short_is_named_before_training(tmp_path, capsys, which):
    """A JPEG photo or PNG mask cut to half its bytes (a copy that stopped) starts right, so
    only its end tells; named in one line before training, not inside fit."""
    data = make_data(tmp_path / "data")  # JPEG photos, PNG masks
    bad = sorted((data / which).iterdir())[2]
    whole = bad.read_bytes()
    bad.write_bytes(whole[:len(whole) // 2])
    assert train_main(["--data", str(data), "--backbone", "none", "--epochs", "1",
                       "--out", str(tmp_path / "x.hdf5"), "--run-dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert bad.name in err and "does not decode" in err and "cut short" in err, err
    assert "Traceback" not in err and not (tmp_path / "x.hdf5").exists()


TINY = ["--steps-per-epoch", "1", "--batch", "2", "--input-size", "64x64", "--alpha", "0.35",
        "--backbone", "none", "--bn-steps", "1"]


def no_data_yet(tmp_path: Path) -> str:
    """An empty folder given as --data: it passes the check of the data's paths, which comes
    before the models, and is refused (no images/ and masks/) only once the data is listed,
    after them; a refusal of a model with it shows the model came first."""
    folder = tmp_path / "no data yet"
    folder.mkdir(exist_ok=True)
    return str(folder)


def small_run(tmp_path: Path) -> list[str]:
    """TINY, fine-tuning a small model (conftest.small_model) instead of building the
    MobileNetV2-UNet: for the tests of how a run is stopped, resumed and finished."""
    return ["--steps-per-epoch", "1", "--batch", "2", "--input-size", "64x64", "--bn-steps", "1",
            "--init", small_model(tmp_path / "small.h5")]


def test_a_backup_stopped_while_it_is_written_keeps_the_epoch_before(tmp_path):
    """Ctrl-C while the backup's weights are written (raised here by a layer as its weights are
    saved, the file half written): the backup still holds the epoch before, whole, and a fit
    that restores it gets that epoch's weights. Keras's own callback writes in place, and the
    half-written file is what it would restore from."""
    import keras

    from portrait.training.train import make_backup

    class Stopping(keras.layers.Dense):
        stop = False

        def save_own_variables(self, store):
            super().save_own_variables(store)
            if Stopping.stop:
                raise KeyboardInterrupt

    def model():
        keras.utils.set_random_seed(0)
        made = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4), Stopping(4),
                                 keras.layers.Dense(1)])
        made.compile(optimizer="adam", loss="mse")
        return made

    x = np.random.default_rng(0).normal(size=(8, 3)).astype(np.float32)
    y = x.sum(axis=1, keepdims=True)
    backup = tmp_path / "backup"
    first = model()
    first.fit(x, y, epochs=1, callbacks=[make_backup(backup)], verbose=0)
    after_one = first.get_weights()
    Stopping.stop = True
    with pytest.raises(KeyboardInterrupt):  # epoch 2 is trained; its backup is cut off
        first.fit(x, y, epochs=3, callbacks=[make_backup(backup)], verbose=0)
    Stopping.stop = False
    assert json.loads((backup / "training_metadata.json").read_text())["epoch"] == 1
    restored = model()
    restored.fit(x, y, epochs=1, callbacks=[make_backup(backup)], verbose=0)  # epoch 1 is done
    for got, expected in zip(restored.get_weights(), after_one):
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("state, message", [
    ("truncated", "cannot be restored (Unable to"),
    ("another model's", "cannot be restored ("),
    ("missing", "records 2 finished epochs but has no weights (latest.weights.h5)"),
    ("missing after one", "records 1 finished epoch but has no weights (latest.weights.h5)"),
])
def test_resuming_a_backup_that_cannot_be_restored_is_one_line(tmp_path, capsys, state, message):
    """A backup left truncated (by a stop while an older version wrote it in place), holding
    weights of another model, or with its epoch count but no weights: --resume says so and
    that removing the backup starts over, instead of an unexpected error or a silent start
    from scratch."""
    import keras

    data = make_data(tmp_path / "data")
    backup = tmp_path / "run" / "backup"
    backup.mkdir(parents=True)
    epochs = 1 if state == "missing after one" else 2
    (backup / "training_metadata.json").write_text(json.dumps({"epoch": epochs, "batch": 0}))
    if not state.startswith("missing"):
        other = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
        other.save_weights(backup / "latest.weights.h5")
        if state == "truncated":
            whole = (backup / "latest.weights.h5").read_bytes()
            (backup / "latest.weights.h5").write_bytes(whole[: len(whole) // 2])
    out = tmp_path / "x.hdf5"
    code = train_main(["--data", str(data), "--epochs", "3", "--out", str(out),
                       "--run-dir", str(tmp_path / "run"), "--resume"] + TINY)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and f"--resume: the backup in '{backup}'" in err[-1], err
    assert message in err[-1] and "remove that folder to start the run over" in err[-1], err
    assert "Traceback" not in "\n".join(err) and not out.exists()


def test_a_new_run_in_a_used_run_folder_sets_the_earlier_run_aside(tmp_path, caplog):
    """A run (without --resume) in a finished run's folder moves that run's files to earlier-1/
    and logs it: its own metrics.csv holds only its own epochs, so a resume of it takes its own
    best score, not the earlier run's, as the one to beat."""
    from portrait.training.train import best_logged

    data = make_data(tmp_path / "data")
    run = tmp_path / "run"
    (run / "tensorboard").mkdir(parents=True)  # what a finished run leaves (no backup/)
    earlier_files = {"train.json": "{}", "metrics.csv": "epoch,iou,val_iou\n0,0.9,0.999\n",
                     "result.json": "{}", "best.h5": "the earlier run's best model"}
    for name, text in earlier_files.items():
        (run / name).write_text(text)
    with caplog.at_level("INFO", logger="portrait"):
        assert train_main(["--data", str(data), "--epochs", "1", "--out", str(tmp_path / "x.hdf5"),
                           "--run-dir", str(run)] + small_run(tmp_path)) == 0
    earlier = run / "earlier-1"
    assert f"moved its train.json, metrics.csv, result.json, best.h5, tensorboard to '{earlier}'" \
        in caplog.text
    assert {name: (earlier / name).read_text() for name in earlier_files} == earlier_files
    assert len((run / "metrics.csv").read_text().splitlines()) == 2  # header + this run's epoch
    assert best_logged(run / "metrics.csv") < 0.999
    assert (run / "best.h5").read_bytes() != b"the earlier run's best model"
    assert json.loads((run / "train.json").read_text())["epochs"] == 1


def test_a_training_loss_that_becomes_nan_stops_the_run_in_one_line(tmp_path, capsys):
    """Fine-tuning a model whose weights are nan: the first step's loss is nan; the run stops
    there, names the epoch, suggests a lower --lr, and writes no model."""
    import keras

    inputs = keras.Input((None, None, 3))
    conv = keras.layers.Conv2D(1, 1, bias_initializer=keras.initializers.Constant(float("nan")))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    keras.Model(inputs, keras.layers.Activation("sigmoid")(conv(x))).save(tmp_path / "nan.h5")
    data = make_data(tmp_path / "data")
    out = tmp_path / "x.hdf5"
    code = train_main(["--data", str(data), "--epochs", "2", "--init", str(tmp_path / "nan.h5"),
                       "--out", str(out), "--run-dir", str(tmp_path / "run")] + TINY)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    assert ("the training loss became nan in epoch 1 (step 1), so no model was written; start the "
            "run again with a lower --lr than 0.001") in err[-1], err
    assert not out.exists() and not (tmp_path / "run" / "best.h5").exists()


@pytest.mark.parametrize("val", ["dotdot", "link"])
def test_validation_naming_the_training_files_by_another_path_is_refused(tmp_path, capsys, val):
    data = make_data(tmp_path / "data")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "link").symlink_to(data)
    other = {"dotdot": tmp_path / "elsewhere" / ".." / "data", "link": tmp_path / "link"}[val]
    code = train_main(["--data", str(data / "train.txt"), "--val", str(other / "train.txt"),
                       "--epochs", "1", "--out", str(tmp_path / "x.hdf5"),
                       "--run-dir", str(tmp_path / "run")] + TINY)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and "training and validation sets share 9 photos" in err[-1], err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("seed", ["1", "3"])
def test_overlapping_sets_are_refused_whatever_max_items_keeps(tmp_path, capsys, seed):
    """The same list for both: the 4 training pairs --max-items keeps hold the one validation
    pair it keeps with seed 3, not with seed 1; both are refused."""
    data = make_data(tmp_path / "data")
    code = train_main(["--data", str(data / "train.txt"), "--val", str(data / "train.txt"),
                       "--max-items", "4", "--seed", seed, "--epochs", "1",
                       "--out", str(tmp_path / "x.hdf5"), "--run-dir", str(tmp_path / "run")] + TINY)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and "training and validation sets share 9 photos" in err[-1], err


def test_one_shared_photo_is_named_in_the_singular(tmp_path):
    from portrait.errors import PortraitError
    from portrait.training.train import check_disjoint

    folder = make_data(tmp_path / "data", count=2)
    pairs = [(str(folder / "images" / f"{i:03d}.jpg"), str(folder / "masks" / f"{i:03d}.png"))
             for i in range(2)]
    with pytest.raises(PortraitError) as refused:
        check_disjoint(pairs, pairs[:1])
    assert str(refused.value) == ("training and validation sets share 1 photo, e.g. "
                                  f"'{pairs[0][0]}'; check --data and --val")


def test_options_that_do_nothing_are_named_only_when_typed(tmp_path, caplog):
    missing = str(tmp_path / "missing.h5")
    base = ["--data", str(tmp_path / "data"), "--out", str(tmp_path / "x.hdf5"), "--init", missing]
    with caplog.at_level("WARNING", logger="portrait"):
        assert train_main(base + ["--alpha", "0.5", "--context", "lraspp", "--output-stride", "32",
                                  "--backbone", "none", "--teacher-weight", "0.3",
                                  "--schedule", "constant", "--warmup-epochs", "1"]) == 2
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warned == [f"--{name} is ignored with --init (the model comes from the file)"
                      for name in ("alpha", "context", "output-stride", "backbone")] + [
        "--teacher-weight is ignored without --teacher",
        "--warmup-epochs is ignored with --schedule constant"]
    caplog.clear()
    with caplog.at_level("WARNING", logger="portrait"):
        assert train_main(base + ["--teacher", missing, "--teacher-weight", "0.3",
                                  "--warmup-epochs", "1"]) == 2  # both mean something here
        assert train_main(base) == 2  # defaults are never named
    assert "is ignored" not in caplog.text


def test_sigterm_stops_training_as_ctrl_c_does_and_the_run_resumes(tmp_path, caplog):
    """A real SIGTERM once the first epoch is backed up: the run stops with the backup kept,
    says how to resume, exits 143 (128 + SIGTERM, as Ctrl-C's 130) without a model; --resume
    then trains the epochs left and writes it."""
    import os
    import signal
    import threading
    import time

    data = make_data(tmp_path / "data")
    run, out = tmp_path / "run", tmp_path / "x.hdf5"
    args = ["--data", str(data), "--epochs", "8", "--out", str(out),
            "--run-dir", str(run)] + small_run(tmp_path)
    done = threading.Event()

    def terminate_after_the_first_backup():
        while not done.is_set():
            if (run / "backup" / "training_metadata.json").exists():
                os.kill(os.getpid(), signal.SIGTERM)
                return
            time.sleep(0.02)

    killer = threading.Thread(target=terminate_after_the_first_backup, daemon=True)
    killer.start()
    try:
        with caplog.at_level("INFO", logger="portrait"):
            code = train_main(args)
    finally:
        done.set()
        killer.join()
    backed_up = json.loads((run / "backup" / "training_metadata.json").read_text())["epoch"]
    assert code == 128 + signal.SIGTERM and not out.exists()
    assert 1 <= backed_up < 8 and (run / "backup" / "latest.weights.h5").is_file()
    assert (f"SIGTERM: training stopped with {backed_up} of 8 epochs backed up in "
            f"'{run / 'backup'}'; run the same command with --resume to continue") in caplog.text
    assert train_main(args + ["--resume"]) == 0
    assert out.is_file() and not (run / "backup").exists()
    epochs = [int(line.split(",")[0]) for line in (run / "metrics.csv").read_text().splitlines()[1:]]
    assert epochs[-1] == 7 and sorted(set(epochs)) == list(range(8))  # a stopped one may be twice


FILL_AFTER_THE_FIRST_BACKUP = r"""
import os, shutil, sys, threading, time
from portrait.training.train import main

disk = sys.argv[1]
def fill():  # the disk fills up (another program's files) once the first epoch is backed up
    while not os.path.exists(os.path.join(disk, "run", "backup", "training_metadata.json")):
        time.sleep(0.01)
    with open(os.path.join(disk, "filler"), "wb") as filler:
        filler.write(bytes(shutil.disk_usage(disk).free - 512 * 1024))
threading.Thread(target=fill, daemon=True).start()
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.slow
def test_a_disk_that_fills_up_stops_training_in_one_line_and_the_run_resumes(tmp_path):
    """A real disk (a 24 MB tmpfs in a user namespace of its own, as the app's full-disk tests
    use) that another program fills once the first epoch is backed up: the next epoch's
    checkpoint and backup used to run into it, and HDF5 printed some 170 unraisable errors,
    the run ended in 'unexpected OSError' and a segmentation fault (exit 139), with a partial
    backup file left on the full disk. It stops before writing anything of that epoch, in one
    line saying what is free and needed and to --resume; the backup before is whole, and once
    there is room --resume finishes the run."""
    import subprocess
    import sys

    from conftest import ROOT

    data = make_data(tmp_path / "data")
    disk, held = tmp_path / "disk", tmp_path / "disk.held"
    disk.mkdir()
    held.mkdir()
    args = ["--data", str(data), "--epochs", "3", "--out", str(disk / "x.hdf5"),
            "--run-dir", str(disk / "run")] + small_run(tmp_path)
    script = ('mount -t tmpfs -o size=24m tmpfs "$1" || exit 99; disk=$1 held=$2; shift 2; '
              '"$@"; code=$?; rm -f "$disk/filler"; cp -a "$disk"/. "$held"/; exit $code')
    done = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script,
                           "sh", str(disk), str(held), sys.executable, "-c",
                           FILL_AFTER_THE_FIRST_BACKUP, str(disk), *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    if done.returncode == 99 or "unshare:" in done.stderr:
        pytest.skip(f"no tmpfs in a user namespace here: {done.stderr.strip()[:200]}")
    disk.rmdir()
    held.rename(disk)
    backup = disk / "run" / "backup"
    epochs = json.loads((backup / "training_metadata.json").read_text())["epoch"]
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert done.returncode == 2 and len(errors) == 1, done.stderr[-3000:]
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr
    assert errors[0].startswith(f"error: the disk of run folder '{disk / 'run'}' has ") \
        and "MB free, and epoch " in errors[0] and "nothing of it was written: free some " \
        f"space, then run the same command with --resume to continue from the " \
        f"{'1 epoch' if epochs == 1 else f'{epochs} epochs'} backed up" in errors[0], errors
    assert 1 <= epochs < 3 and sorted(p.name for p in backup.iterdir()) == [
        "latest.weights.h5", "training_metadata.json"]
    assert not (disk / "x.hdf5").exists() and not list(disk.glob("run/*tmp*"))
    assert train_main(args + ["--resume"]) == 0
    assert (disk / "x.hdf5").is_file() and not backup.exists()


def test_a_moved_run_folder_resumes_and_paths_compare_by_the_files_they_name(tmp_path, capsys):
    """train.json of a run started in another folder, naming the data by a link: resuming it
    from here with the data's own path continues it; another data folder is refused."""
    data = make_data(tmp_path / "data")
    (tmp_path / "alias").symlink_to(data)
    run = tmp_path / "moved" / "run"
    (run / "backup").mkdir(parents=True)  # stopped before its first epoch's end
    (run / "train.json").write_text(json.dumps({
        "data": [str(tmp_path / "alias")], "run_dir": str(tmp_path / "old" / "run"),
        "out": str(tmp_path / "old.hdf5"), "epochs": 1}))
    args = ["--epochs", "1", "--out", str(tmp_path / "x.hdf5"), "--run-dir", str(run),
            "--resume"] + small_run(tmp_path)
    other = make_data(tmp_path / "other")
    assert train_main(["--data", str(other)] + args) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "--resume with other options" in err and "data [" in err, err
    assert "run_dir '" not in err and "out '" not in err, err
    assert train_main(["--data", str(data)] + args) == 0
    assert (tmp_path / "x.hdf5").is_file()


def test_auto_backbone_without_pretrained_weights_warns_that_the_encoder_starts_random(caplog):
    from portrait.training.train import _resolve_backbone

    with caplog.at_level("WARNING", logger="portrait.training.train"):
        assert _resolve_backbone("auto", 0.35) is None
    assert "starts from random weights (the shared weights are for alpha 1.0, not 0.35)" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="portrait.training.train"):
        assert _resolve_backbone("none", 0.35) is None
    assert caplog.text == ""


def test_imagenet_backbone_that_cannot_be_downloaded_is_one_line(tmp_path):
    """Offline (as here), Keras' fetch fails; the run says so in one line and writes nothing."""
    import subprocess
    import sys

    data = make_data(tmp_path / "data")
    env = dict(os.environ, KERAS_HOME=str(tmp_path / "keras"))  # no cached download
    # As a user runs it: the tests' TF_CPP_MIN_LOG_LEVEL had hidden the CUDA probe's error line
    # (where TensorFlow has CUDA and the machine no driver) that came before the run's own.
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    command = [sys.executable, "-m", "portrait.training.train", "--data", str(data), "--backbone",
               "imagenet", "--alpha", "0.35", "--input-size", "64x64", "--short-side", "64",
               "--epochs", "1", "--max-items", "2", "--out", str(tmp_path / "x.hdf5"),
               "--run-dir", str(tmp_path / "run")]
    result = subprocess.run(command, cwd=Path(__file__).resolve().parents[1], env=env,
                            capture_output=True, text=True, timeout=600)
    if result.returncode == 0:
        pytest.skip("ImageNet's weights downloaded: this machine is online")
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.strip().splitlines() if not line.startswith("INFO ")]
    assert len(lines) == 1, lines  # no Keras warning about the input shape, no CUDA line
    last = lines[0]
    assert last.startswith("error: cannot download ImageNet's MobileNetV2 weights"), last
    assert "--backbone none" in last and "Traceback" not in result.stderr
    assert not (tmp_path / "x.hdf5").exists()


def _conv_bn_model(nested: bool):
    """Rescaling, then Conv2D(8) -> BN -> ReLU -> Conv2D(1): the tensors a weight gradient
    needs are the first conv's input (3 channels), the BN's (8) and the last conv's (8)."""
    import keras

    def body(x):
        x = keras.layers.Conv2D(8, 3, padding="same")(x)
        x = keras.layers.ReLU()(keras.layers.BatchNormalization()(x))
        return keras.layers.Conv2D(1, 1, activation="sigmoid")(x)

    inputs = keras.Input((None, None, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    if nested:
        inner = keras.Input((None, None, 3))
        return keras.Model(inputs, keras.Model(inner, body(inner), name="inner")(x))
    return keras.Model(inputs, body(x))


def test_the_memory_a_sample_keeps_for_the_backward_pass_is_counted_by_hand():
    """Each float32 tensor that feeds a layer with weights, once; a nested model's own input
    is left out (a lower bound)."""
    from portrait.training.train import kept_bytes_per_sample

    pixels = 32 * 48
    assert kept_bytes_per_sample(_conv_bn_model(False), (48, 32)) == 4 * pixels * (3 + 8 + 8)
    assert kept_bytes_per_sample(_conv_bn_model(True), (48, 32)) == 4 * pixels * (8 + 8)


def test_the_estimate_stays_below_what_the_shipped_architecture_keeps():
    """Measured: one α=1.0 192x192 crop more in a batch raised a step's peak memory by about
    73 MB on the development machine; the bound must not claim more."""
    from portrait.training.train import kept_bytes_per_sample

    model = build_unet((192, 192), 1.0, 16, backbone_weights=None, fixed_input=False)
    assert 40e6 < kept_bytes_per_sample(model, (192, 192)) < 73e6


def test_a_batch_that_cannot_fit_in_memory_is_one_line_before_the_data_is_read(tmp_path, capsys,
                                                                              monkeypatch):
    """--batch 10000000 of 64x64 crops needs terabytes: it was read, cached and killed by the
    system without a line. Now it is refused, with the largest batch the bound allows, before
    the data (an empty folder here) is read or the run folder written."""
    from portrait.training import train
    from portrait.training.train import TrainOptions, check_batch_memory

    # The system's memory, also where TensorFlow sees a GPU (training_memory then checks
    # nothing, and the run would go on to the missing data).
    monkeypatch.setattr(train, "training_memory", lambda: 16 * 10**9)
    out, run = tmp_path / "x.hdf5", tmp_path / "run"
    args = ["--data", no_data_yet(tmp_path), "--out", str(out), "--run-dir", str(run),
            "--epochs", "1"] + TINY
    code = train_main(args + ["--batch", "10000000"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("error: --batch 10000000 at 64x64 needs at least "), err
    assert "of memory is available; pass --batch " in err[-1], err
    assert not out.exists() and not run.exists()

    model = _conv_bn_model(False)
    per_crop = 4 * 64 * 64 * 19
    weights = 4 * 4 * sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    options = TrainOptions(data=("x",), input_size=(64, 64), batch=10)
    check_batch_memory(model, options, 1, 10 * per_crop + weights)  # fits exactly: no error
    with pytest.raises(Exception, match=r"\(0.6 MB a crop, two views each\).*pass --batch 5 or "
                                        r"less, or a smaller --input-size"):
        check_batch_memory(model, options, 2, 10 * per_crop + weights)
    with pytest.raises(Exception, match="available; pass a smaller --input-size$"):
        check_batch_memory(model, options, 1, weights + per_crop - 1)


@pytest.mark.parametrize("schedule", ["cosine", "constant"])
def test_the_compiled_model_makes_no_variable_while_its_first_step_is_traced(schedule):
    """Adam's state exists before the first step: a variable made while the step is traced
    made TensorFlow trace the step twice (half of a short run's start)."""
    import keras

    from portrait.training.losses import make_loss
    from portrait.training.train import TrainOptions, compile_for_training

    inputs = keras.Input((None, None, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(x)
    model = keras.Model(inputs, keras.layers.Conv2D(1, 1, activation="sigmoid")(x))
    options = TrainOptions(data=("unused",), schedule=schedule, epochs=2)
    compile_for_training(model, make_loss("dice+bce"), options, steps=3)
    made = [v.path for v in model.optimizer.variables]
    moments = [path for path in made if path.endswith(("_momentum", "_velocity"))]
    assert len(moments) == 2 * len(model.trainable_variables)  # Adam's two for each weight
    images = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype(np.float32)
    masks = (images[..., :1] > 128).astype(np.float32)
    model.fit(images, masks, batch_size=2, epochs=1, verbose=0)
    assert [v.path for v in model.optimizer.variables] == made
    assert int(model.optimizer.iterations.numpy()) == 2


def test_a_fine_tune_that_would_store_another_short_side_than_its_init_model_is_named(tmp_path):
    """weights/unet_live.hdf5 runs at 160 px; a fine-tune at the default 192x192 crop stored
    192 without a word, and the app ran the result at 192. The warning names both and the fix;
    it is quiet where they agree, where --short-side is given, or where the model names none."""
    from conftest import build_small_model
    from portrait.training.train import TrainOptions, init_short_side_note, save_model

    noted = tmp_path / "live.hdf5"
    save_model(build_small_model(), noted, short_px=160)
    options = TrainOptions(data=("d",), init=str(noted))
    assert init_short_side_note(options) == (
        f"--init '{noted}' runs at a short side of 160 px, and this run stores 192 (the "
        "--input-size crop's), which the app will run the result at; pass --short-side 160 to "
        "keep the model's")
    assert init_short_side_note(dataclasses.replace(options, short_side=192)) is None
    assert init_short_side_note(dataclasses.replace(options, input_size=(224, 160))) is None
    assert init_short_side_note(TrainOptions(data=("d",))) is None
    assert init_short_side_note(TrainOptions(data=("d",),
                                             init=small_model(tmp_path / "plain.hdf5"))) is None


def test_an_epoch_that_beats_the_best_moves_its_checkpoint_and_logs_where_it_is(tmp_path, caplog):
    """Keras's checkpoint line named runs/X/best.tmp.h5, a file gone a moment later; the log
    names best.h5, the one a user finds, and an epoch that wrote none changes nothing."""
    from portrait.training.train import promote_best

    best_tmp, best_h5 = tmp_path / "best.tmp.h5", tmp_path / "best.h5"
    best_h5.write_bytes(b"epoch 1")
    with caplog.at_level("INFO", logger="portrait.training.train"):
        assert not promote_best(best_tmp, best_h5, 1, {"val_iou": 0.5})
        best_tmp.write_bytes(b"epoch 3")
        assert promote_best(best_tmp, best_h5, 2, {"val_iou": 0.71234})
    assert best_h5.read_bytes() == b"epoch 3" and not best_tmp.exists()
    assert [r.getMessage() for r in caplog.records] == [
        f"epoch 3: validation IoU 0.7123, the best so far, saved to {best_h5}"]


def test_an_empty_list_is_refused_before_any_model_loads(tmp_path, capsys):
    """An empty list file, given or the folder's own train.txt/val.txt, was refused only after
    the model had loaded or the encoder been built (20 s and more on 2 cores); a model file
    that would not load shows it now comes first."""
    data = make_data(tmp_path / "data")
    (tmp_path / "corrupt.h5").write_text("not a model")
    (data / "empty.txt").write_text("# nothing yet\n")
    other = make_data(tmp_path / "other")
    (other / "val.txt").write_text("\n")
    base = ["--init", str(tmp_path / "corrupt.h5"), "--out", str(tmp_path / "x.hdf5"),
            "--run-dir", str(tmp_path / "run")] + TINY
    for args, empty in ((["--data", str(data / "empty.txt")], data / "empty.txt"),
                        (["--data", str(data), "--val", str(other)], other / "val.txt")):
        assert train_main(args + base) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1] == f"error: list file '{empty}' lists no stems; put one image stem per line"
        assert "Traceback" not in "\n".join(err)
    assert not (tmp_path / "run").exists()
