"""Tests for portrait.foreground: the person's own colour recovered at a soft edge with a known
answer, clear and solid pixels untouched, the work local to the edge, bad input named, every
background kind through ``render``, and the app's --decontaminate end to end."""

import cv2
import numpy as np
import pytest

from portrait.cli import main
from portrait.composite import composite, make_background
from portrait.foreground import FAINT, NARROW_PX, SCALE, WIDE_PX, ForegroundEstimator, estimate_foreground
from portrait.options import CompositeOptions
from test_cli import person_image

H, W = 120, 200


def known_scene(seed=0):
    """A dark blue textured person left, a bright textured wall right, a 16 px soft edge between
    (about what the camera model's edge is at 720p):
    returns (frame, alpha, person F, wall B) with frame = alpha F + (1 - alpha) B."""
    rng = np.random.default_rng(seed)
    person = np.clip(np.array([150, 60, 30]) + rng.normal(0, 8, (H, W, 3)), 0, 255)
    wall = np.clip(np.array([225, 230, 235]) + rng.normal(0, 6, (H, W, 3)), 0, 255)
    ramp = np.clip((116 - np.arange(W)) / 16, 0, 1)  # 1 up to x = 100, 0 from x = 116
    alpha = np.round(np.tile(ramp, (H, 1)) * 255).astype(np.uint8)
    a = alpha[:, :, None] / 255
    frame = np.round(a * person + (1 - a) * wall).astype(np.uint8)
    return frame, alpha, person, wall


def test_a_soft_edge_gets_the_persons_colour_back():
    frame, alpha, person, _ = known_scene()
    estimate = estimate_foreground(frame, alpha)
    mixed = (alpha >= 26) & (alpha <= 229)  # 10-90 %: where the wall is in the pixel for sure
    frame_error = np.abs(frame.astype(float) - person)[mixed].mean()
    estimate_error = np.abs(estimate.astype(float) - person)[mixed].mean()
    assert frame_error > 40  # the wall is really there
    assert estimate_error < frame_error / 5, (estimate_error, frame_error)
    # and over a new background the composite is nearer the truth
    green = np.zeros_like(frame)
    green[:] = (0, 255, 0)
    a = alpha[:, :, None] / 255
    truth = a * person + (1 - a) * green
    before = np.abs(composite(frame, alpha, green) - truth)[mixed].mean()
    after = np.abs(composite(estimate, alpha, green) - truth)[mixed].mean()
    assert after < before / 3, (after, before)


def test_clear_and_solid_pixels_are_the_frames():
    frame, alpha, _, _ = known_scene(1)
    alpha[:, :20] = 255 - (np.arange(20) % FAINT)  # solid within FAINT levels
    alpha[:, -20:] = np.arange(20) % FAINT  # clear within FAINT levels
    estimate = estimate_foreground(frame, alpha)
    kept = (alpha < FAINT) | (alpha > 255 - FAINT)
    assert kept.any() and (~kept).any()
    np.testing.assert_array_equal(estimate[kept], frame[kept])
    assert (estimate[~kept] != frame[~kept]).any()


@pytest.mark.parametrize("value", [0, 255])
def test_a_frame_without_an_edge_is_copied(value):
    frame = np.random.default_rng(2).integers(0, 256, (H, W, 3), dtype=np.uint8)
    out = np.zeros_like(frame)
    result = estimate_foreground(frame, np.full((H, W), value, np.uint8), out=out)
    assert result is out
    np.testing.assert_array_equal(out, frame)


def test_the_work_is_local_to_the_edge():
    """Pixels farther from the edge than the passes reach don't change the estimate (the low
    resolution passes run only around the edge's box, which must give the whole frame's cells)."""
    rng = np.random.default_rng(3)
    frame = rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)
    alpha = np.zeros((240, 320), np.uint8)
    cv2.circle(alpha, (160, 120), 30, 255, -1)
    alpha = cv2.GaussianBlur(alpha, (0, 0), 3)
    before = estimate_foreground(frame, alpha)
    reach_px = ((round(WIDE_PX / SCALE) + round(NARROW_PX / SCALE) + 3) * SCALE)
    ys, xs = np.nonzero((alpha >= FAINT) & (alpha <= 255 - FAINT))
    far = np.ones((240, 320), bool)
    far[max(0, ys.min() - reach_px):ys.max() + reach_px + 1,
        max(0, xs.min() - reach_px):xs.max() + reach_px + 1] = False
    assert far.any()
    changed = frame.copy()
    changed[far] = 255 - changed[far]
    after = estimate_foreground(changed, alpha)
    np.testing.assert_array_equal(after[~far], before[~far])


def test_bad_input_says_what_was_expected():
    frame, alpha, _, _ = known_scene()
    with pytest.raises(ValueError, match="unexpected frame"):
        estimate_foreground(frame[:, :, 0], alpha)
    with pytest.raises(ValueError, match="unexpected alpha"):
        estimate_foreground(frame, alpha[:-1])
    with pytest.raises(ValueError, match="of its own"):
        estimate_foreground(frame, alpha, out=frame)


@pytest.mark.parametrize("kind", ["blur", "#00ff00", "transparent"])
def test_every_background_takes_the_estimate_only_at_the_edge(kind):
    frame, alpha, _, _ = known_scene(4)
    with make_background(CompositeOptions(background=kind), (W, H)) as background:
        plain = background.render(frame, alpha)
        estimated = background.render(frame, alpha, foreground=ForegroundEstimator())
    changed = (plain != estimated).any(axis=2)
    mixed = (alpha >= FAINT) & (alpha <= 255 - FAINT)
    assert changed.any()
    assert not changed[~mixed].any()
    if kind == "transparent":
        np.testing.assert_array_equal(estimated[:, :, 3], alpha)
        np.testing.assert_array_equal(estimated[:, :, :3], estimate_foreground(frame, alpha))


def test_app_decontaminate_changes_only_the_soft_edge(brightness_model, tmp_path):
    image = person_image(tmp_path / "me.png")
    outputs = {}
    for name, extra in {"plain": [], "estimated": ["--decontaminate"],
                        "cutout": ["--decontaminate", "--background", "transparent"],
                        "matte": ["--matte"]}.items():
        out = tmp_path / f"{name}.png"
        extra = extra if "--background" in extra else [*extra, "--background", "#00ff00"]
        assert main(["--image", str(image), "--out", str(out), "--model", str(brightness_model),
                     "-q", *extra]) == 0
        outputs[name] = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    matte = outputs["matte"]
    changed = (outputs["estimated"] != outputs["plain"]).any(axis=2)
    assert changed.any()
    assert not changed[(matte < FAINT) | (matte > 255 - FAINT)].any()
    np.testing.assert_array_equal(outputs["cutout"][:, :, 3], matte)
    photo = cv2.imread(str(image))
    recoloured = (outputs["cutout"][:, :, :3] != photo).any(axis=2)
    assert recoloured.any() and not recoloured[(matte < FAINT) | (matte > 255 - FAINT)].any()


@pytest.mark.parametrize("shape", [(1, 1), (3, 3), (2, 100), (100, 2), (5, 7)])
def test_frames_smaller_than_a_cell_work(shape):
    rng = np.random.default_rng(5)
    frame = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    alpha = rng.integers(0, 256, shape, dtype=np.uint8)
    alpha.flat[0] = 128  # at least one soft pixel
    estimate = estimate_foreground(frame, alpha)
    kept = (alpha < FAINT) | (alpha > 255 - FAINT)
    assert estimate.shape == frame.shape
    np.testing.assert_array_equal(estimate[kept], frame[kept])
