"""Tests for portrait.smooth: less flicker on a still person, no ghost behind a moving edge."""

import numpy as np
import pytest

from portrait.options import SmoothOptions
from portrait.smooth import TemporalSmoother, smooth_probability

H, W = 72, 128


def _still_disc():
    yy, xx = np.mgrid[0:H, 0:W]
    dist = np.hypot(xx - W / 2, yy - H / 2)
    # a soft-edged disc, 0.1..0.9 like an unsure model, so added noise is rarely clipped
    return (0.1 + 0.8 * np.clip((30 - dist) / 4 + 0.5, 0, 1)).astype(np.float32)


def _edge_at(position: float) -> np.ndarray:
    """A vertical person edge: 1 left of ``position``, a 3 px ramp, 0 to the right."""
    xx = np.arange(W, dtype=np.float32)
    row = np.clip((position - xx) / 3 + 0.5, 0, 1)
    return np.repeat(row[None, :], H, axis=0).astype(np.float32)


def _noisy(prob, rng, sigma=0.06):
    return np.clip(prob + rng.normal(0, sigma, prob.shape), 0, 1).astype(np.float32)


def _flicker(frames):
    return float(np.mean([np.abs(b - a).mean() for a, b in zip(frames, frames[1:])]))


def test_smoothing_lowers_flicker_on_still_person():
    rng = np.random.default_rng(0)
    raw = [_noisy(_still_disc(), rng) for _ in range(40)]
    smoother = TemporalSmoother(SmoothOptions())
    smoothed = [smoother(p) for p in raw]
    # skip the first frames while the average settles
    assert _flicker(smoothed[5:]) < 0.45 * _flicker(raw[5:]), (_flicker(smoothed[5:]), _flicker(raw[5:]))
    # and it averages the noise away instead of drifting
    truth = _still_disc()
    err_smoothed = np.mean([np.abs(p - truth).mean() for p in smoothed[5:]])
    err_raw = np.mean([np.abs(p - truth).mean() for p in raw[5:]])
    assert err_smoothed < 0.75 * err_raw, (err_smoothed, err_raw)


def test_smoothing_follows_a_moving_edge_without_ghost():
    rng = np.random.default_rng(1)
    smoother = TemporalSmoother(SmoothOptions())
    speed_px = 6
    # an arm reaching out 6 px per frame for 10 frames, then pulling back
    top = 30 + speed_px * 9
    positions = [30 + speed_px * t for t in range(10)] + [top - speed_px * t for t in range(1, 10)]
    previous = None
    for position in positions:
        out = smoother(_noisy(_edge_at(position), rng, sigma=0.03))
        if previous is not None:
            # edge position where the smoothed probability crosses 0.5, per row
            crossing = np.median((out > 0.5).sum(axis=1))
            assert abs(crossing - position) <= 1.0, (crossing, position)
            if position > previous:  # the region just entered is filled at once
                assert out[:, previous + 1:position - 1].mean() > 0.92
            else:  # the region just vacated shows no ghost after one frame
                assert out[:, position + 2:previous - 1].mean() < 0.08
        previous = position


def test_function_equals_class_and_state_is_separate():
    rng = np.random.default_rng(2)
    options = SmoothOptions(min_weight=0.3, change_full=0.4)
    smoother = TemporalSmoother(options)
    state = None
    for _ in range(6):
        prob = _noisy(_still_disc(), rng)
        prob_copy = prob.copy()
        expected, state = smooth_probability(prob, state, options)
        got = smoother(prob)
        np.testing.assert_array_equal(got, expected)
        np.testing.assert_array_equal(prob, prob_copy)  # input untouched
        assert got.dtype == np.float32 and got.shape == prob.shape
        assert not np.shares_memory(expected, state)
        expected[:] = -1  # a caller scribbling on its output must not corrupt the state
        assert state.min() >= 0


def test_weight_rule_min_weight_when_still_full_when_changed():
    options = SmoothOptions(min_weight=0.25, change_full=0.35)
    state = np.full((2, 2), 0.5, np.float32)
    prob = np.array([[0.5, 0.6], [0.9, 0.0]], np.float32)
    out, _ = smooth_probability(prob, state, options)
    change = np.abs(prob - state)
    weight = np.minimum(0.25 + 0.75 * change / 0.35, 1.0)
    np.testing.assert_allclose(out, state + weight * (prob - state), atol=1e-6)
    assert out[1, 0] == pytest.approx(0.9) and out[1, 1] == pytest.approx(0.0)  # change >= change_full


def test_shape_change_restarts_and_reset_forgets():
    smoother = TemporalSmoother(SmoothOptions())
    smoother(np.zeros((10, 10), np.float32))
    bigger = np.full((20, 30), 0.8, np.float32)
    np.testing.assert_array_equal(smoother(bigger), bigger)  # no crash, taken as is
    _, state = smooth_probability(bigger, np.zeros((10, 10), np.float32), SmoothOptions())
    assert state.shape == (20, 30)
    smoother(np.zeros((20, 30), np.float32) + 0.7)
    smoother.reset()
    fresh = np.full((20, 30), 0.1, np.float32)
    np.testing.assert_array_equal(smoother(fresh), fresh)


def test_disabled_passes_through():
    prob = _still_disc()
    out, state = smooth_probability(prob, np.zeros_like(prob), SmoothOptions(enabled=False))
    np.testing.assert_array_equal(out, prob)
    assert state is None


@pytest.mark.parametrize("bad, match", [
    (np.zeros((4, 4), np.float64), "float64"),
    (np.zeros((4, 4, 1), np.float32), r"\(4, 4, 1\)"),
    ([[0.0]], "list"),
])
def test_rejects_bad_prob(bad, match):
    with pytest.raises(ValueError, match=match):
        smooth_probability(bad, None, SmoothOptions())


def test_the_state_is_not_the_callers_array():
    """A segmenter may hand back the same output buffer every frame: writing the next frame's
    probability into it must not rewrite the history the first frame left."""
    options = SmoothOptions(min_weight=0.25, change_full=0.35)
    buffer = np.full((2, 2), 0.5, np.float32)
    _, state = smooth_probability(buffer, None, options)
    buffer[:] = 0.6  # the next frame, written into the same array
    out, _ = smooth_probability(buffer, state, options)
    # From 0.5: change 0.1, weight 0.25 + 0.75 * 0.1 / 0.35 = 0.4643 -> 0.5 + 0.04643.
    np.testing.assert_allclose(out, 0.5 + (0.25 + 0.75 * 0.1 / 0.35) * 0.1, atol=1e-6)


def test_min_weight_at_its_bounds_and_outside_them():
    state = np.full((1, 2), 0.5, np.float32)
    prob = np.array([[0.6, 0.0]], np.float32)  # a change of 0.1 and of 0.5 (>= change_full)
    # 1: every pixel takes the new frame.
    out, _ = smooth_probability(prob, state, SmoothOptions(min_weight=1.0, change_full=0.35))
    np.testing.assert_allclose(out, prob, atol=1e-6)
    # 0: weight 0 + 0.1 / 0.35 where the change is 0.1, 1 where it is 0.5.
    out, _ = smooth_probability(prob, state, SmoothOptions(min_weight=0.0, change_full=0.35))
    np.testing.assert_allclose(out, [[0.5 + 0.1 / 0.35 * 0.1, 0.0]], atol=1e-6)
    # Outside 0..1 (below 0 the average moved away from the new frame) the options refuse it.
    for weight in (1.5, -0.5):
        with pytest.raises(ValueError, match=rf"^SmoothOptions.min_weight = {weight}: expected a "
                                             "number, from 0 to 1$"):
            SmoothOptions(min_weight=weight)


def test_span_shares_a_step_out_over_the_frames_a_mask_is_given_for():
    """A mask given for ``span`` frames takes ``w / span`` on each: a full step (``w`` 1) lands
    over the frames instead of on the first, and a small one is divided alike."""
    options = SmoothOptions(min_weight=0.25, change_full=0.35)
    state = np.array([[0.0, 0.5]], np.float32)
    prob = np.array([[1.0, 0.6]], np.float32)  # a change of 1 (weight 1) and of 0.1
    first, state = smooth_probability(prob, state, options, span=2)
    # Weight 1 / 2 -> 0.5; weight (0.25 + 0.75 * 0.1 / 0.35) / 2 = 0.2321 -> 0.5232.
    np.testing.assert_allclose(first, [[0.5, 0.5 + 0.1 * (0.25 + 0.75 * 0.1 / 0.35) / 2]], atol=1e-6)
    second, _ = smooth_probability(prob, state, options, span=2)
    assert second[0, 0] == pytest.approx(0.75)  # change 0.5, still weight 1: half of it again
    smoother = TemporalSmoother(options)
    smoother(np.zeros((1, 2), np.float32))
    # From 0: changes of 1 and 0.6, both past change_full (weight 1): a quarter of each.
    np.testing.assert_allclose(smoother(prob, span=4), [[0.25, 0.15]], atol=1e-6)


@pytest.mark.parametrize("span", [0, -1])
def test_span_below_one_frame_is_refused(span):
    prob = np.zeros((2, 2), np.float32)
    with pytest.raises(ValueError, match=f"span must be at least 1 frame, got {span}"):
        smooth_probability(prob, prob, SmoothOptions(), span=span)


def test_the_first_frame_is_a_new_array_not_the_callers():
    """The first frame (and the first after a reset or a size change) is taken as it is, but
    as a copy: a segmenter that writes the next frame into the same buffer must not rewrite
    the frame already handed on."""
    smoother = TemporalSmoother(SmoothOptions())
    buffer = np.full((2, 3), 0.4, np.float32)
    first = smoother(buffer)
    np.testing.assert_array_equal(first, buffer)
    assert not np.shares_memory(first, buffer)
    buffer[:] = 0.9  # the next frame, written into the same array
    np.testing.assert_array_equal(first, np.full((2, 3), 0.4, np.float32))
