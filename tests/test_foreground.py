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
    # a cut-out's hidden pixels (alpha 0) take the colours it shows beside them, the estimate's
    shown = alpha > 0 if kind == "transparent" else np.ones_like(mixed)
    assert changed.any()
    assert not changed[~mixed & shown].any()
    if kind == "transparent":
        np.testing.assert_array_equal(estimated[:, :, 3], alpha)
        np.testing.assert_array_equal(estimated[shown][:, :3],
                                      estimate_foreground(frame, alpha)[shown])


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
    kept = (matte > 0) & ((matte < FAINT) | (matte > 255 - FAINT))  # alpha 0 hides the room
    assert recoloured.any() and not recoloured[kept].any()


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


def whole_frame_reference(frame, alpha, scale=4, wide_px=45, narrow_px=4, faint=4):
    """The estimate as the module's docstring describes it, done plainly: both passes over the
    whole frame's 1/4 grid, the means upsampled to every pixel by cv2.resize, the formula
    everywhere, kept where alpha is soft. No crop, no strips, no sampling at points."""
    height, width = alpha.shape
    low_w, low_h = max(1, width // scale), max(1, height // scale)
    image = frame.astype(np.float32) / 255
    a = alpha.astype(np.float32)[:, :, None] / 255
    cells = np.s_[:low_h * scale, :low_w * scale]
    image_low = cv2.resize(frame[cells], (low_w, low_h), interpolation=cv2.INTER_AREA) / np.float32(255)
    a_low = cv2.resize(alpha[cells], (low_w, low_h), interpolation=cv2.INTER_AREA)[:, :, None] / np.float32(255)
    image_low, a_low = image_low.astype(np.float32), a_low.astype(np.float32)

    def mean(x, radius):
        return cv2.boxFilter(x, cv2.CV_32F, (2 * radius + 1,) * 2, borderType=cv2.BORDER_REFLECT)

    def means(person, room, radius):
        weight = mean(a_low, radius)[:, :, None]
        return (mean(person * a_low, radius) / (weight + 1e-5),
                mean(room * (1 - a_low), radius) / (1 - weight + 1e-5))

    def formula(i, alpha_, fm, bm):
        return np.clip(fm + alpha_ * (i - alpha_ * fm - (1 - alpha_) * bm), 0, 1)

    fm, bm = means(image_low, image_low, round(wide_px / scale))
    fm, bm = means(formula(image_low, a_low, fm, bm), bm, max(1, round(narrow_px / scale)))

    def up(x):  # to the cells' full-resolution size, then the last partial row/column repeated
        full = cv2.resize(x, (low_w * scale, low_h * scale), interpolation=cv2.INTER_LINEAR)
        full = full[:height, :width]
        return np.pad(full, ((0, height - full.shape[0]), (0, width - full.shape[1]), (0, 0)), mode="edge")

    estimate = (formula(image, a, up(fm), up(bm)) * 255 + 0.5).astype(np.uint8)
    soft = (alpha >= faint) & (alpha <= 255 - faint)
    return np.where(soft[:, :, None], estimate, frame)


@pytest.mark.parametrize("seed", range(6))
def test_equals_the_plain_whole_frame_estimate(seed):
    """Sizes that are not multiples of 4, soft regions inside the frame and at its edges, and a
    person whose colour changes across the frame (so the second pass matters): the cropped,
    strip-wise, point-sampled estimate equals the plain one within one grey level (float sums
    in another order)."""
    rng = np.random.default_rng(seed)
    height, width = (int(v) for v in rng.integers(37, 260, 2))
    yy, xx = np.mgrid[:height, :width]
    person = np.stack([40 + 150 * xx / width, 200 - 120 * yy / height, 90 + 60 * (xx + yy) / (width + height)], -1)
    room = np.stack([220 - 60 * yy / height, 210 + 0 * xx, 90 + 120 * xx / width], -1)
    alpha = np.zeros((height, width), np.uint8)
    for _ in range(3):
        centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        cv2.circle(alpha, centre, int(rng.integers(8, 40)), 255, -1)
    alpha = cv2.GaussianBlur(alpha, (0, 0), float(rng.uniform(1.5, 6)))
    a = alpha[:, :, None] / 255
    frame = np.clip(a * person + (1 - a) * room + rng.normal(0, 4, person.shape), 0, 255).astype(np.uint8)
    estimate = estimate_foreground(frame, alpha)
    reference = whole_frame_reference(frame, alpha)
    difference = np.abs(estimate.astype(int) - reference)
    assert difference.max() <= 1
    assert difference.mean() < 0.01
    soft = (alpha >= FAINT) & (alpha <= 255 - FAINT)
    assert (estimate[soft] != frame[soft]).any()


def test_a_non_contiguous_out_is_refused():
    frame, alpha, _, _ = known_scene()
    canvas = np.zeros((H, W + 10, 3), np.uint8)
    with pytest.raises(ValueError, match="C-contiguous"):
        estimate_foreground(frame, alpha, out=canvas[:, :W])


def test_equals_the_plain_estimate_for_a_person_inside_a_large_frame():
    """One soft person far from every edge of the frame (so the crop around it is not the
    frame's, and its rows and columns start inside it), in colours near the top of the range
    with noise (so the estimate must be clipped), before a patterned room: the same as the plain
    whole-frame estimate."""
    rng = np.random.default_rng(7)
    height, width = 301, 419
    yy, xx = np.mgrid[:height, :width]
    person = np.stack([250 + 0 * xx, 60 + 100 * yy / height, 30 + 150 * xx / width], -1)
    # a room of squares: a crop that fell short of the passes' reach would mirror them wrongly
    squares = np.where((yy // 13 + xx // 17) % 2 == 0, 0.2, 1.0)
    room = np.stack([30 + 200 * squares, 230 - 180 * squares, 200 + 0 * xx], -1)
    alpha = np.zeros((height, width), np.uint8)
    cv2.ellipse(alpha, (250, 190), (45, 30), 20, 0, 360, 255, -1)
    alpha = cv2.GaussianBlur(alpha, (0, 0), 4)
    alpha[150:160, 160:200] = 128  # half see-through up to the soft region's box: the most reach
    a = alpha[:, :, None] / 255
    frame = np.clip(a * person + (1 - a) * room + rng.normal(0, 8, person.shape), 0, 255).astype(np.uint8)
    soft = (alpha >= FAINT) & (alpha <= 255 - FAINT)
    ys, xs = np.nonzero(soft)
    assert ys.min() > 100 and xs.min() > 140 and height - ys.max() > 60 and width - xs.max() > 60
    estimate = estimate_foreground(frame, alpha)
    difference = np.abs(estimate.astype(int) - whole_frame_reference(frame, alpha))
    assert difference.max() <= 1
    assert difference.mean() < 0.01
