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


@pytest.mark.parametrize("width_px", [1, 3])
@pytest.mark.parametrize("strength", [1.0, 0.5])
@pytest.mark.parametrize("level", [0, 100, 200])
def test_light_wrap_equals_the_plain_formula(width_px, strength, level):
    """At full resolution (a width under 8 px) the wrap is the docstring's formula to a grey
    level or so (uint8 rounding at each step): a composite of a flat ``level`` gains
    light * (255 - level) / 255, the light weighted by alpha squared."""
    _, alpha, background = scene()
    composite_bgr = np.full((H, W, 3), level, np.uint8)
    wrapped = light_wrap(composite_bgr.copy(), alpha, background, strength, width_px)
    expected = plain_light_wrap(composite_bgr.astype(np.float64), alpha,
                                background.astype(np.float64), strength, width_px)
    assert np.abs(wrapped - expected).max() <= 1.5
    assert (wrapped.astype(np.int32) - level).max() > 10  # there was light to compare


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
