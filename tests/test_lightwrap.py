"""Tests for portrait.lightwrap: where the light lands (only within its width of the matte's
edge, on the person), plain frames and strength 0 untouched, every background kind, and the
app's --light-wrap end to end."""

import math

import cv2
import numpy as np
import pytest

from portrait.cli import main
from portrait.composite import composite, make_background
from portrait.lightwrap import LightWrap, light_wrap, reach
from portrait.options import CompositeOptions
from test_cli import person_image

H, W = 96, 160


def scene(h=H, w=W, seed=0):
    """A dark textured person (a soft-edged disc and a hard-edged block) and a bright background."""
    rng = np.random.default_rng(seed)
    frame = rng.integers(0, 80, (h, w, 3), dtype=np.uint8)
    alpha = np.zeros((h, w), np.uint8)
    cv2.circle(alpha, (w // 3, h // 2), min(h, w) // 4, 255, -1)
    alpha = cv2.GaussianBlur(alpha, (7, 7), 2)
    alpha[h // 4:h - 10, 2 * w // 3:w - 12] = 255
    background = np.empty((h, w, 3), np.uint8)
    background[:] = np.linspace(120, 250, w, dtype=np.uint8)[None, :, None]
    return frame, alpha, background


def edge_distance(alpha):
    """Chebyshev distance of every pixel to the matte's edge (where alpha isn't locally flat)."""
    kernel = np.ones((3, 3), np.uint8)
    edge = cv2.dilate(alpha, kernel) != cv2.erode(alpha, kernel)
    return cv2.distanceTransform(np.where(edge, 0, 255).astype(np.uint8), cv2.DIST_C, 3)


@pytest.mark.parametrize("width_px", [3, 8, 12, 16, 24])
@pytest.mark.parametrize("size", [(H, W), (97, 163)])
def test_light_reaches_only_its_width_from_the_edge_and_only_brightens(width_px, size):
    frame, alpha, background = scene(*size)
    plain = composite(frame, alpha, background)
    wrapped = light_wrap(plain.copy(), alpha, background, 1.0, width_px)
    changed = (wrapped != plain).any(axis=2)
    assert changed.sum() > 20, "the light should reach the person's rim"
    assert edge_distance(alpha)[changed].max() <= width_px
    assert (wrapped >= plain).all(), "a screen blend never darkens"
    # it lands on the person: most of the light is where alpha is high
    gain = (wrapped.astype(np.int32) - plain).sum(axis=2)
    assert gain[alpha >= 128].sum() > 4 * gain[alpha < 128].sum()


def plain_light_wrap(composite_bgr, alpha, background, strength, width_px, faint=12):
    """The module docstring's light wrap at full resolution, in float: the background masked to
    where the person is not, box-blurred over the width, weighted by alpha squared and the
    strength, screen-blended. Alpha within ``faint`` of 0 or 255 counts as clear or opaque."""
    a = alpha.astype(np.float64)
    person = np.maximum(a - faint, 0) / 255
    outside = np.maximum(255 - a - faint, 0) / 255
    size = 2 * width_px + 1
    light = cv2.blur(background * outside[:, :, None], (size, size), borderType=cv2.BORDER_REFLECT)
    light *= (person ** 2 * strength)[:, :, None]
    return composite_bgr + light * (255 - composite_bgr) / 255


def edge_scene(h, w):
    """:func:`scene` with the block run out over the frame's right and bottom edges."""
    frame, alpha, background = scene(h, w)
    alpha[h // 4:, 2 * w // 3:] = 255
    return frame, alpha, background


@pytest.mark.parametrize("width_px", [1, 3])
@pytest.mark.parametrize("strength", [1.0, 0.5])
@pytest.mark.parametrize("level", [0, 100, 200])
@pytest.mark.parametrize("size, make", [((H, W), scene), ((97, 163), scene), ((97, 163), edge_scene)],
                         ids=["96x160", "97x163", "97x163-at-the-edges"])
def test_light_wrap_equals_the_plain_formula(width_px, strength, level, size, make):
    """At full resolution (a width under 8 px) the wrap is the docstring's formula to a grey
    level or so (uint8 rounding at each step): a composite of a flat ``level`` gains
    light * (255 - level) / 255, the light weighted by alpha squared. So it is at a size that
    4 does not divide (the box of the band's parts, found at a quarter of it, still holds every
    pixel of the rim) and where the person runs out over the frame's edges (the blur mirrors
    the background there, as the formula's does)."""
    _, alpha, background = make(*size)
    composite_bgr = np.full((*size, 3), level, np.uint8)
    wrapped = light_wrap(composite_bgr.copy(), alpha, background, strength, width_px)
    expected = plain_light_wrap(composite_bgr.astype(np.float64), alpha,
                                background.astype(np.float64), strength, width_px)
    assert np.abs(wrapped - expected).max() <= 1.5
    assert (wrapped.astype(np.int32) - level).max() > 10  # there was light to compare


def low_res_light_wrap(composite_bgr, alpha, background, strength, width_px):
    """The module docstring's light wrap at its working scale, step by step in uint8 as OpenCV
    rounds, over the whole frame (no boxes): alpha halved in 2x steps, the background scaled
    at once, light = blur(background * outside) * person² * strength, upsampled bilinearly
    and screen-blended; a right or bottom rim under the scale is left as it is."""
    scale, radius = reach(width_px)
    h, w = (alpha.shape[0] // scale) * scale, (alpha.shape[1] // scale) * scale
    alpha_low = alpha[:h, :w]
    for _ in range(int(math.log2(scale))):
        alpha_low = cv2.resize(alpha_low, (alpha_low.shape[1] // 2, alpha_low.shape[0] // 2),
                               interpolation=cv2.INTER_LINEAR)
    size = (w // scale, h // scale)
    background_low = cv2.resize(background[:h, :w], size, interpolation=cv2.INTER_LINEAR)
    person = cv2.cvtColor(cv2.subtract(alpha_low, 12), cv2.COLOR_GRAY2BGR)
    outside = cv2.cvtColor(cv2.subtract(255 - alpha_low, 12), cv2.COLOR_GRAY2BGR)
    light = cv2.blur(cv2.multiply(background_low, outside, scale=1 / 255),
                     (2 * radius + 1, 2 * radius + 1), borderType=cv2.BORDER_REFLECT)
    light = cv2.multiply(cv2.multiply(light, person, scale=1 / 255), person, scale=strength / 255)
    light = cv2.resize(light, (w, h), interpolation=cv2.INTER_LINEAR)
    out = composite_bgr.copy()
    region = out[:h, :w]
    cv2.add(region, cv2.multiply(255 - region, light, scale=1 / 255), dst=region)
    return out


def aligned_scene(h, w):
    """A hard-edged block whose edges lie on multiples of 64 px: the band's box then ends on
    whole cells of the parts' coarse grid, with nothing to spare around it."""
    frame, _, background = scene(h, w)
    alpha = np.zeros((h, w), np.uint8)
    alpha[64:h - 64, 64:w - 64] = 255
    return frame, alpha, background


@pytest.mark.parametrize("width_px", [8, 12, 16, 24, 40])
@pytest.mark.parametrize("size, make", [((H, W), scene), ((97, 163), scene), ((181, 322), edge_scene),
                                        ((256, 384), aligned_scene)],
                         ids=["96x160", "97x163", "181x322-at-the-edges", "256x384-aligned"])
def test_the_wrap_within_its_boxes_is_the_wrap_over_the_whole_frame(width_px, size, make):
    """At 1/2 and 1/4 scale the work is done only within the box of the band (and the blur's
    reach around it), upsampled bilinearly: bit for bit the same as over the whole frame."""
    frame, alpha, background = make(*size)
    plain = composite(frame, alpha, background)
    expected = low_res_light_wrap(plain, alpha, background, 0.8, width_px)
    assert (expected != plain).any()
    np.testing.assert_array_equal(light_wrap(plain.copy(), alpha, background, 0.8, width_px), expected)


def test_parts_are_weighed_by_their_rim_not_their_area():
    """A second person 80 px across beside one 192 px across (0.42 of the side, 0.17 of the
    area): the band a 16 px wrap lights is a rim, so theirs is about 0.4 of the first's, past
    the quarter that makes a part big, and it gets its light."""
    frame, _, background = scene(256, 384)
    alpha = np.zeros((256, 384), np.uint8)
    alpha[32:224, 32:224] = 255
    alpha[96:176, 256:336] = 255
    plain = composite(frame, alpha, background)
    wrapped = light_wrap(plain.copy(), alpha, background, 1.0, 16)
    np.testing.assert_array_equal(wrapped, low_res_light_wrap(plain, alpha, background, 1.0, 16))
    assert (wrapped[96:176, 256:264] != plain[96:176, 256:264]).any()  # the second one's rim


def test_a_matte_a_few_levels_off_0_and_255_is_wrapped_only_at_its_edge():
    """A model's matte is rarely exactly 0 or 255: a person at 250 in a room at 4 gets light only
    within the width of the edge, not over their whole inside and the room."""
    frame, alpha, background = scene()
    alpha = np.clip(alpha, 4, 250).astype(np.uint8)
    plain = composite(frame, alpha, background)
    changed = (light_wrap(plain.copy(), alpha, background, 1.0, 16) != plain).any(axis=2)
    assert changed.sum() > 20
    assert edge_distance(alpha)[changed].max() <= 16


def test_both_people_get_light_and_a_far_speck_does_not():
    frame, alpha, background = scene()
    alpha[4:8, 4:8] = 255  # a speck of matte in the corner, far from the two people
    plain = composite(frame, alpha, background)
    changed = (light_wrap(plain.copy(), alpha, background, 1.0, 12) != plain).any(axis=2)
    assert changed[:, :W // 2].any() and changed[:, W // 2:].any()  # the disc and the block
    assert not changed[:16, :16].any()


@pytest.mark.parametrize("value", [0, 255])
def test_a_plain_frame_is_left_alone(value):
    frame, _, background = scene()
    alpha = np.full((H, W), value, np.uint8)
    plain = composite(frame, alpha, background)
    np.testing.assert_array_equal(light_wrap(plain.copy(), alpha, background, 1.0, 16), plain)


@pytest.mark.parametrize("kind", ["blur", "#ffcc00"])
def test_strength_zero_is_identical_to_no_wrap(kind):
    frame, alpha, _ = scene()
    with make_background(CompositeOptions(background=kind), (W, H)) as background:
        without = background.render(frame, alpha)
        with_zero = background.render(frame, alpha, light_wrap=LightWrap(0.0))
    np.testing.assert_array_equal(with_zero, without)
    assert LightWrap.from_options(CompositeOptions(light_wrap=0.0)) is None


def test_stronger_wrap_brings_more_light():
    frame, alpha, background = scene()
    plain = composite(frame, alpha, background)
    gains = [int((light_wrap(plain.copy(), alpha, background, s, 16).astype(np.int32)
                  - plain).sum()) for s in (0.25, 0.5, 1.0)]
    assert 0 < gains[0] < gains[1] < gains[2]


@pytest.fixture
def image_path(tmp_path):
    path = tmp_path / "background.png"
    cv2.imwrite(str(path), np.full((50, 80, 3), (40, 220, 250), np.uint8))
    return path


@pytest.mark.parametrize("kind", ["blur", "colour", "image", "transparent"])
def test_every_background_takes_the_hook(kind, image_path):
    frame, alpha, _ = scene()
    frame[alpha < 128] = 240  # a bright room, so its blur has light to give
    spec = {"blur": "blur", "colour": "#f0f0f0", "image": str(image_path),
            "transparent": "transparent"}[kind]
    with make_background(CompositeOptions(background=spec), (W, H)) as background:
        plain = background.render(frame, alpha)
        wrapped = background.render(frame, alpha, light_wrap=LightWrap(1.0, 12))
    changed = (wrapped != plain).reshape(H, W, -1).any(axis=2)
    if kind == "transparent":
        assert not changed.any()  # no background, no light
    else:
        assert changed.any()
        assert edge_distance(alpha)[changed].max() <= 12


def test_bad_input_says_what_was_expected():
    """LightWrap is checked as CompositeOptions checks the two fields it stands for (one rule:
    a width of 2.5 or NaN px is refused too, not cut to 2 or a crash in int())."""
    frame, alpha, background = scene()
    for strength, width_px, error, message in (
            (1.5, 16, ValueError, "CompositeOptions.light_wrap = 1.5: expected a number, from 0 to 1"),
            (math.nan, 16, ValueError, "CompositeOptions.light_wrap = nan: expected a number, "
                                       "from 0 to 1"),
            (0.5, 0, ValueError, "CompositeOptions.light_wrap_px = 0: expected a whole number, "
                                 "at least 1"),
            (0.5, 2.5, TypeError, "CompositeOptions.light_wrap_px = 2.5 (float): expected a whole "
                                  "number, at least 1"),
            (0.5, math.nan, TypeError, "CompositeOptions.light_wrap_px = nan (float): expected a "
                                       "whole number, at least 1")):
        with pytest.raises(error) as info:
            LightWrap(strength, width_px)
        assert str(info.value) == message
    with pytest.raises(ValueError, match="unexpected alpha"):
        light_wrap(frame, alpha[:10], background, 0.5, 8)


def test_the_function_refuses_bad_arrays_and_values_itself():
    """light_wrap, called without LightWrap's options, checks its own input."""
    frame, alpha, background = scene()
    for args, message in (
            ((np.zeros((H, W, 4), np.uint8), alpha, background, 0.5, 8),
             "unexpected composite: uint8 (96, 160, 4) != uint8 (H, W, 3)"),
            ((frame, alpha.astype(np.float32), background, 0.5, 8),
             "unexpected alpha: float32 (96, 160) != uint8 (96, 160)"),
            ((frame, alpha, background.astype(np.float32), 0.5, 8),
             "unexpected background: float32 (96, 160, 3) != uint8 (96, 160, 3)"),
            ((frame, alpha, background, 1.5, 8), "light-wrap strength 1.5 is not between 0 and 1"),
            ((frame, alpha, background, -0.1, 8), "light-wrap strength -0.1 is not between 0 and 1"),
            ((frame, alpha, background, 0.5, 0), "light-wrap width 0 px must be at least 1")):
        with pytest.raises(ValueError) as info:
            light_wrap(*args)
        assert str(info.value) == message


@pytest.mark.parametrize("shape", [(96, 3), (3, 96), (2, 2)])
def test_a_frame_narrower_than_the_working_scale_is_left_alone(shape):
    """Under 4 px (the scale for a 16 px width) on a side there is no cell to work on."""
    _, alpha, background = scene()
    alpha, background = np.ascontiguousarray(alpha[:shape[0], 50:50 + shape[1]]), \
        np.ascontiguousarray(background[:shape[0], :shape[1]])
    alpha[:, : max(1, shape[1] // 2)] = 255
    plain = np.full((*shape, 3), 40, np.uint8)
    np.testing.assert_array_equal(light_wrap(plain.copy(), alpha, background, 1.0, 16), plain)


def test_reach_is_the_coarsest_scale_that_leaves_a_radius_of_two():
    """width // scale - 2 at scale 4, else 2, else the width itself at full resolution."""
    for width_px, expected in ((1, (1, 1)), (7, (1, 7)), (8, (2, 2)), (12, (2, 4)), (15, (2, 5)),
                               (16, (4, 2)), (19, (4, 2)), (20, (4, 3)), (64, (4, 14))):
        assert reach(width_px) == expected, width_px


def test_a_wrap_from_options_is_the_wrap_of_their_values():
    """from_options takes the options' checked values as they are: the same settings and the
    same composite as the wrap built from the values."""
    frame, alpha, background = scene()
    plain = composite(frame, alpha, background)
    options = CompositeOptions(light_wrap=0.6, light_wrap_px=12)
    from_options, direct = LightWrap.from_options(options), LightWrap(0.6, 12)
    assert (from_options.strength, from_options.width_px) == (direct.strength, direct.width_px) == (0.6, 12)
    wrapped = from_options(plain.copy(), alpha, background)
    assert (wrapped != plain).any()
    np.testing.assert_array_equal(wrapped, direct(plain.copy(), alpha, background))


def test_reach_keeps_the_bound_within_the_width():
    for width_px in range(1, 64):
        scale, radius = reach(width_px)
        assert radius >= 1
        bound = radius if scale == 1 else (radius + 2) * scale - 1
        assert bound <= width_px


def test_app_light_wrap_changes_only_the_rim(brightness_model, tmp_path):
    image = person_image(tmp_path / "me.png")
    outputs = {}
    for name, extra in {"plain": [], "wrapped": ["--light-wrap"], "matte": ["--matte"],
                        "matte_wrapped": ["--matte", "--light-wrap", "1"]}.items():
        out = tmp_path / f"{name}.png"
        assert main(["--image", str(image), "--out", str(out), "--model", str(brightness_model),
                     "--background", "#ffffff", "-q", *extra]) == 0
        outputs[name] = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(outputs["matte_wrapped"], outputs["matte"])
    changed = (outputs["wrapped"] != outputs["plain"]).any(axis=2)
    assert changed.any()
    assert edge_distance(outputs["matte"])[changed].max() <= CompositeOptions.light_wrap_px
