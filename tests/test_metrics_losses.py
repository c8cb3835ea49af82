"""Metrics and losses on tiny hand-computed arrays, with exact expected values.

The worked examples are in the comments; every expected number is derived by hand from them.
"""

import math
import re

import numpy as np
import pytest

from portrait.training import losses, metrics

# Truth and prediction on 3x3: 4 pixels each, 3 shared.
#   T = 1 1 0    P = 1 0 0
#       1 1 0        1 1 1
#       0 0 0        0 0 0
T3 = np.array([[1, 1, 0], [1, 1, 0], [0, 0, 0]], bool)
P3 = np.array([[1, 0, 0], [1, 1, 1], [0, 0, 0]], bool)


def square(size, top, left, side):
    mask = np.zeros((size, size), bool)
    mask[top:top + side, left:left + side] = True
    return mask


# A 4x4 square in a 6x6 image (rows and columns 1..4), and the same square shifted one column
# right (columns 2..5, touching the image's right edge).
T6 = square(6, 1, 1, 4)
P6 = square(6, 1, 2, 4)


def test_iou_dice_pixel_accuracy_on_3x3():
    # intersection 3, union 5; |T| + |P| = 8; 2 of 9 pixels differ: (0, 1) and (1, 2).
    assert metrics.iou(T3, P3) == pytest.approx(3 / 5)
    assert metrics.dice(T3, P3) == pytest.approx(6 / 8)
    assert metrics.pixel_accuracy(T3, P3) == pytest.approx(7 / 9)
    assert metrics.iou(T3, T3) == 1.0 and metrics.dice(T3, T3) == 1.0


def test_probabilities_are_thresholded_strictly_above():
    prob = np.where(P3, 0.9, 0.2).astype(np.float32)
    prob[2, 2] = 0.5  # exactly at the threshold: not person
    assert metrics.iou(T3, prob) == pytest.approx(3 / 5)
    # A higher threshold drops the 0.9 pixels too: nothing predicted, IoU 0, accuracy 5/9.
    assert metrics.iou(T3, prob, threshold=0.95) == 0.0
    assert metrics.pixel_accuracy(T3, prob, threshold=0.95) == pytest.approx(5 / 9)


def test_empty_mask_conventions():
    empty = np.zeros((3, 3), bool)
    # Nothing to find and nothing found: a perfect score.
    assert metrics.iou(empty, empty) == 1.0
    assert metrics.dice(empty, empty) == 1.0
    assert metrics.boundary_f(empty, empty) == 1.0
    # Something found where there is nothing (or the reverse): zero.
    for truth, pred in ((empty, T3), (T3, empty)):
        assert metrics.iou(truth, pred) == 0.0
        assert metrics.dice(truth, pred) == 0.0
        assert metrics.boundary_f(truth, pred) == 0.0
    assert metrics.pixel_accuracy(empty, T3) == pytest.approx(5 / 9)


def test_boundary_pixels_skip_the_image_edge():
    # T6's boundary is its ring of 12 pixels. P6 touches the right edge, which is not a boundary
    # (the border replicates): row 1 and row 4 at columns 2..5, plus column 2 at rows 2..3 = 10.
    assert np.count_nonzero(metrics._boundary(T6)) == 12
    expected = np.zeros((6, 6), bool)
    expected[1, 2:6] = expected[4, 2:6] = True
    expected[2:4, 2] = True
    np.testing.assert_array_equal(metrics._boundary(P6), expected)


def test_boundary_f_with_and_without_tolerance():
    # Tolerance 0: shared boundary pixels are rows 1 and 4 at columns 2..4 = 6.
    # precision 6/10, recall 6/12, F = 2 * 0.6 * 0.5 / 1.1 = 6/11.
    assert metrics.boundary_f(T6, P6, tolerance_px=0) == pytest.approx(6 / 11)
    # Tolerance 1: every boundary pixel of each lies within one pixel of the other's.
    assert metrics.boundary_f(T6, P6, tolerance_px=1) == pytest.approx(1.0)
    assert metrics.boundary_f(T6, T6, tolerance_px=0) == 1.0


def test_far_fraction_counts_only_what_lies_beyond_the_margin():
    truth = np.zeros((100, 200), bool)
    truth[20:90, 60:100] = True  # the person
    pred = truth.copy()
    pred[20:90, 100:105] = True  # the outline 1..5 px out: within a 10 px margin, not far
    pred[5:15, 170:190] = True  # a chair 70 px to the right: 10 x 20 = 200 px, far
    assert metrics.far_fraction(truth, pred, margin_px=10) == 200 / 20000
    # A margin wider than the chair's distance takes it in.
    assert metrics.far_fraction(truth, pred, margin_px=100) == 0.0
    # Probabilities are thresholded like the other metrics.
    assert metrics.far_fraction(truth, pred.astype(np.float32) * 0.6, margin_px=10) == 200 / 20000
    assert metrics.far_fraction(truth, pred.astype(np.float32) * 0.4, margin_px=10) == 0.0


def test_far_is_strictly_beyond_the_margin():
    truth = np.zeros((5, 30), bool)
    truth[:, 5] = True  # the person: one column
    pred = np.zeros_like(truth)
    pred[2, 15] = True  # exactly 10 px from the person: at the margin, not beyond it
    assert metrics.far_fraction(truth, pred, margin_px=10) == 0.0
    pred[2, 16] = True  # 11 px: beyond
    assert metrics.far_fraction(truth, pred, margin_px=10) == 1 / 150


def test_far_fp_pixels_counts_beyond_a_share_of_the_short_side():
    truth = np.zeros((100, 300), bool)  # short side 100: the default margin is 1 px
    truth[40:60, 10:30] = True
    pred = truth.copy()
    pred[40:60, 30] = True  # 1 px out: at the margin, not beyond it
    pred[40:60, 31] = True  # 2 px out: beyond (20 px)
    pred[0, 100:150] = True  # a thin line far away: 50 px
    assert metrics.far_fp_pixels(truth, pred) == 70
    assert metrics.far_fp_pixels(truth, pred, share=0.02) == 50  # a 2 px margin keeps column 31
    assert metrics.far_fp_pixels(truth, truth) == 0


def test_far_fraction_of_a_photo_without_people_is_everything_marked():
    empty = np.zeros((10, 10), bool)
    pred = empty.copy()
    pred[:2] = True
    assert metrics.far_fraction(empty, pred, margin_px=3) == 0.2
    assert metrics.far_fraction(empty, empty, margin_px=3) == 0.0


def _feet_scene():
    """A 40 x 50 photo: the person's matte (rows 5-34, columns 10-19, alpha 255, also the
    label) and flecks of ground beside it:
      a: 2 x 2 at alpha 30, columns 30-31 (11 and 12 px from the label): speckle, 4 px
      b: 2 x 2 at alpha 25, columns 40-41: not above the level 25, not matte
      c: 1 px at alpha 200 touching the person diagonally (row 35, column 20): the person's region
      d: 3 x 3 at alpha 255, columns 22-24 (3 px from the label): within a 5 px margin
      e: 1 x 10 at alpha 100, row 38, columns 30-39: 10 px, an island not under 10 px
    """
    truth = np.zeros((40, 50), bool)
    truth[5:35, 10:20] = True
    alpha = np.zeros((40, 50), np.uint8)
    alpha[truth] = 255
    alpha[10:12, 30:32] = 30  # a
    alpha[10:12, 40:42] = 25  # b
    alpha[35, 20] = 200  # c
    alpha[20:23, 22:25] = 255  # d
    alpha[38, 30:40] = 100  # e
    return truth, alpha


def test_speckle_is_small_islands_apart_from_the_person_and_the_label():
    truth, alpha = _feet_scene()
    speckle = metrics.speckle_mask(truth, alpha, level=25, max_island_px=10, margin_px=5)
    expected = np.zeros_like(truth)
    expected[10:12, 30:32] = True  # only a: b is not above 25, c is the person's, d is near, e is 10 px
    assert (speckle == expected).all()
    # A larger size bound takes in e; an 11 px margin keeps a's far column, 12 px neither.
    assert metrics.speckle_mask(truth, alpha, 25, 11, 5).sum() == 4 + 10
    assert metrics.speckle_mask(truth, alpha, 25, 10, 11).sum() == 2
    assert metrics.speckle_mask(truth, alpha, 25, 10, 12).sum() == 0
    # A lower level takes in b (4 px).
    assert metrics.speckle_mask(truth, alpha, 24, 10, 5).sum() == 8
    # As a share: island size 10 px = 0.005 of 2000 px, margin 5 px = 0.1 of the long side 50.
    assert metrics.speckle_fraction(truth, alpha, 25, 0.005, 0.1) == 4 / 2000


def test_speckle_keeps_the_largest_region_and_counts_all_without_a_label():
    truth, alpha = _feet_scene()
    empty = np.zeros_like(truth)
    # No labelled person: every region under 400 px other than the person's (300 + c's 1 px)
    # counts: a 4, d 9, e 10.
    assert metrics.speckle_mask(empty, alpha, 25, 400, 5).sum() == 4 + 9 + 10
    # The largest region is the person's even when it is under the size bound.
    assert metrics.speckle_mask(empty, alpha, 25, 10_000, 5).sum() == 4 + 9 + 10
    assert metrics.speckle_fraction(truth, np.zeros_like(alpha)) == 0.0
    with pytest.raises(ValueError, match="bool"):
        metrics.speckle_mask(alpha, alpha, 25, 10, 5)


def test_iou_with_the_outline_right_closes_a_shift_but_not_a_chair():
    truth = np.zeros((50, 50), bool)
    truth[10:30, 10:30] = True  # 400 px
    pred = np.zeros_like(truth)
    pred[10:30, 12:32] = True  # the outline drawn 2 px to the right
    pred[40:45, 40:45] = True  # a chair 15.6 px or more from the person: 25 px
    # Wrong: columns 10 and 11 inside (1 and 2 px from the background), 30 and 31 outside
    # (1 and 2 px from the person), and the chair.
    assert metrics.outline_distance(truth)[20, 10:12].tolist() == [1.0, 2.0]
    assert metrics.outline_distance(truth)[20, 30:32].tolist() == [1.0, 2.0]
    assert metrics.iou(truth, pred) == pytest.approx(360 / 465)
    # Within 1 px: columns 10 and 30, and column 11's two pixels on the top and bottom rows;
    # within 2 and 5 px the whole shift, but not the chair; within 100 px everything.
    assert metrics.iou_edges_right(truth, pred, (1, 2, 5, 100)) == pytest.approx(
        [382 / 445, 400 / 425, 400 / 425, 1.0])
    # A photo without people has no outline: nothing is counted right.
    empty = np.zeros_like(truth)
    assert metrics.iou_edges_right(empty, pred, (5,)) == [0.0]


def test_keras_metrics_agree_with_numpy_per_image_means():
    empty = np.zeros((6, 6), bool)
    pad = lambda m: np.pad(m, ((0, 3), (0, 3)))  # noqa: E731: 3x3 cases in a 6x6 batch
    pairs = [(T6, P6), (pad(T3), pad(P3)), (empty, empty), (T6, empty), (T6, T6)]
    y_true = np.stack([t for t, _ in pairs])[..., None].astype(np.float32)
    y_pred = np.stack([np.where(p, 0.8, 0.1) for _, p in pairs])[..., None].astype(np.float32)
    expected = {
        "iou": np.mean([metrics.iou(t, p) for t, p in pairs]),
        "dice": np.mean([metrics.dice(t, p) for t, p in pairs]),
        "pixel_accuracy": np.mean([metrics.pixel_accuracy(t, p) for t, p in pairs]),
        "boundary_f": np.mean([metrics.boundary_f(t, p) for t, p in pairs]),
    }
    # Hand check of the first: IoU (12/20 + 3/5 + 1 + 0 + 1) / 5.
    assert expected["iou"] == pytest.approx((0.6 + 0.6 + 1 + 0 + 1) / 5)
    found = {}
    for metric in metrics.training_metrics():
        metric.update_state(y_true[:2], y_pred[:2])  # two batches: the mean covers both
        metric.update_state(y_true[2:], y_pred[2:])
        found[metric.name] = float(metric.result())
    assert set(found) == set(expected)
    for name in expected:
        assert found[name] == pytest.approx(expected[name], abs=1e-5), name


def test_keras_boundary_f_matches_within_its_two_pixel_tolerance():
    # A 4x4 square shifted two columns: each ring pixel lies within 2 px (but not all within
    # 1 px) of the other ring, so boundary F is 1 at the default tolerance of 2.
    truth, pred = square(8, 1, 1, 4), square(8, 1, 3, 4)
    assert metrics.boundary_f(truth, pred) == 1.0
    assert metrics.boundary_f(truth, pred, tolerance_px=1) < 1.0
    y_true = truth[None, ..., None].astype(np.float32)
    y_pred = pred[None, ..., None].astype(np.float32)
    assert float(metrics._batch_boundary_f(y_true, y_pred)[0]) == pytest.approx(1.0)


# Losses. One image of 2x2 pixels: truth 1 1 / 0 0, prediction 0.8 0.6 / 0.2 0.0.
Y_TRUE = np.array([1, 1, 0, 0], np.float32).reshape(1, 2, 2, 1)
Y_PRED = np.array([0.8, 0.6, 0.2, 0.0], np.float32).reshape(1, 2, 2, 1)
# BCE per pixel: -ln 0.8, -ln 0.6, -ln 0.8, and -ln(1 - 1e-6) for the clipped 0.0.
BCE_PIXELS = np.array([-math.log(0.8), -math.log(0.6), -math.log(0.8), -math.log(1 - 1e-6)])
BCE = BCE_PIXELS.mean()  # 0.239278...
# Dice (smooth 1): intersection 0.8 + 0.6 = 1.4, sums 2 + 1.6 = 3.6 → 1 - 3.8 / 4.6.
DICE = 1 - 3.8 / 4.6


def value(loss, y_true=Y_TRUE, y_pred=Y_PRED) -> float:
    return float(loss(y_true, y_pred))


def test_dice_and_bce_losses():
    assert value(losses.DiceLoss()) == pytest.approx(DICE, abs=1e-6)
    assert value(losses.BCELoss()) == pytest.approx(BCE, abs=1e-6)
    assert value(losses.DiceLoss(), Y_TRUE, Y_TRUE) == pytest.approx(0.0, abs=1e-6)


def test_losses_average_per_image_values_over_the_batch():
    batch_true = np.concatenate([Y_TRUE, Y_TRUE])
    batch_pred = np.concatenate([Y_PRED, Y_TRUE])  # second image perfect: Dice loss 0
    assert value(losses.DiceLoss(), batch_true, batch_pred) == pytest.approx(DICE / 2, abs=1e-6)


def test_focal_with_gamma_0_is_alpha_weighted_bce():
    # alpha_t = 0.25 on person pixels, 0.75 on background pixels.
    weighted = np.mean(np.array([0.25, 0.25, 0.75, 0.75]) * BCE_PIXELS)
    assert value(losses.FocalLoss(gamma=0.0, alpha=0.25)) == pytest.approx(weighted, abs=1e-6)
    # With alpha 0.5 it is exactly half the BCE.
    assert value(losses.FocalLoss(gamma=0.0, alpha=0.5)) == pytest.approx(BCE / 2, abs=1e-6)


def test_focal_down_weights_easy_pixels():
    # One person pixel predicted 0.8: 0.25 * (1 - 0.8)^2 * -ln 0.8.
    y_true = np.ones((1, 1, 1, 1), np.float32)
    y_pred = np.full((1, 1, 1, 1), 0.8, np.float32)
    expected = 0.25 * 0.2 ** 2 * -math.log(0.8)
    assert value(losses.FocalLoss(gamma=2.0, alpha=0.25), y_true, y_pred) == pytest.approx(expected, rel=1e-5)


# An 8x8 image with a 4x4 square at rows and columns 2..5.
SQUARE = square(8, 2, 2, 4).astype(np.float32).reshape(1, 8, 8, 1)


def test_boundary_band_is_dilation_minus_erosion():
    band = np.asarray(losses.boundary_band(SQUARE, width_px=1))[0, ..., 0]
    # Dilated: rows/cols 1..6 (36 pixels); eroded: rows/cols 3..4 (4 pixels); band: 32.
    expected = square(8, 1, 1, 6) & ~square(8, 3, 3, 2)
    np.testing.assert_array_equal(band > 0.5, expected)
    assert band.sum() == 32


def test_boundary_loss_looks_only_at_the_band():
    # Everywhere 0.5: BCE ln 2 on each of the 32 band pixels, divided by (32 + 1).
    half = np.full_like(SQUARE, 0.5)
    expected = 32 * math.log(2) / 33
    assert value(losses.BoundaryBCELoss(width_px=1), SQUARE, half) == pytest.approx(expected, rel=1e-5)
    # Right inside the band, wrong everywhere else: (almost) no loss.
    band = square(8, 1, 1, 6) & ~square(8, 3, 3, 2)
    wrong_outside = np.where(band[None, ..., None], SQUARE, 1 - SQUARE).astype(np.float32)
    assert value(losses.BoundaryBCELoss(width_px=1), SQUARE, wrong_outside) < 1e-5
    assert value(losses.BCELoss(), SQUARE, wrong_outside) > 1.0


def test_far_from_people_is_beyond_a_square_window_of_everyone():
    far = np.asarray(losses.far_from_people(SQUARE, width_px=1))[0, ..., 0]
    # The square (rows/cols 2..5) dilated by one pixel covers rows/cols 1..6: 36 near, 28 far.
    np.testing.assert_array_equal(far > 0.5, ~square(8, 1, 1, 6))
    # Nobody in the crop: everything is far.
    assert np.asarray(losses.far_from_people(np.zeros_like(SQUARE), width_px=1)).min() == 1.0


def test_far_loss_looks_only_beyond_everyone():
    # Everywhere 0.5: BCE ln 2 on each of the 28 far pixels, divided by (28 + 1).
    half = np.full_like(SQUARE, 0.5)
    assert value(losses.FarBCELoss(width_px=1), SQUARE, half) == pytest.approx(
        28 * math.log(2) / 29, rel=1e-5)
    # Wrong only near the person (the square and its one-pixel ring): no far loss, though
    # the plain BCE is large.
    near = square(8, 1, 1, 6)
    wrong_near = np.where(near[None, ..., None], 1 - SQUARE, SQUARE).astype(np.float32)
    assert value(losses.FarBCELoss(width_px=1), SQUARE, wrong_near) < 1e-5
    assert value(losses.BCELoss(), SQUARE, wrong_near) > 1.0
    # A chair far from the person costs more than the same chair under the plain BCE's mean.
    chair = SQUARE.copy()
    chair[0, 7, 7, 0] = 1.0
    assert value(losses.FarBCELoss(width_px=1), SQUARE, chair) > value(losses.BCELoss(), SQUARE, chair)


def test_far_loss_default_window_is_the_suites_far_margin_on_a_training_crop():
    """The loss spends itself on what the suite's "far" measure counts: beyond FAR_MARGIN of the
    long side of the default training crop (0.05 x 192 = 9.6 px)."""
    from portrait.training.evaluate import FAR_MARGIN
    from portrait.training.train import TrainOptions

    assert losses.FAR_PX == round(FAR_MARGIN * max(TrainOptions.input_size))
    assert losses.FarBCELoss().width_px == losses.FAR_PX


def as_image(values):
    return np.asarray(values, np.float32).reshape(1, 1, -1, 1)


def test_lovasz_of_a_hard_prediction_is_one_minus_iou():
    # 4 true pixels, 4 predicted, 3 shared (T3, P3): IoU 3/5, loss 2/5.
    t, p = T3.astype(np.float32).reshape(1, 3, 3, 1), P3.astype(np.float32).reshape(1, 3, 3, 1)
    assert value(losses.LovaszLoss(), t, p) == pytest.approx(2 / 5, abs=1e-6)
    assert value(losses.LovaszLoss(), t, t) == pytest.approx(0.0, abs=1e-6)


def test_lovasz_on_probabilities_by_hand():
    # t = 1 1 0 0, p = 0.9 0.4 0.3 0: errors 0.1 0.6 0.3 0, sorted 0.6(t1) 0.3(t0) 0.1(t1) 0(t0).
    # Along that order: intersection 1 1 0 0, union 2 3 3 4, Jaccard loss 1/2 2/3 1 1,
    # increments 1/2 1/6 1/3 0 -> 0.6/2 + 0.3/6 + 0.1/3 = 0.38333...
    t, p = as_image([1, 1, 0, 0]), as_image([0.9, 0.4, 0.3, 0.0])
    assert value(losses.LovaszLoss(), t, p) == pytest.approx(0.3 + 0.05 + 0.1 / 3, abs=1e-6)
    # Per image, then the batch mean: with a perfect second image, half of it.
    both = value(losses.LovaszLoss(), np.concatenate([t, t]), np.concatenate([p, t]))
    assert both == pytest.approx((0.3 + 0.05 + 0.1 / 3) / 2, abs=1e-6)


def test_lovasz_gradient_pushes_each_pixel_towards_its_truth():
    import tensorflow as tf

    t = as_image([1, 1, 0, 0])
    p = tf.Variable(as_image([0.9, 0.4, 0.3, 0.0]))
    with tf.GradientTape() as tape:
        loss = losses.LovaszLoss()(t, p)
    grad = tape.gradient(loss, p).numpy().ravel()
    # d loss / d p = -increment on person pixels, +increment on background pixels.
    np.testing.assert_allclose(grad, [-1 / 3, -1 / 2, 1 / 6, 0.0], atol=1e-6)


def test_consistency_pays_the_kl_from_the_first_view_on_the_second():
    # Two rows, one crop in two views (the same mask): the first view predicts 0.5 everywhere,
    # the second 0.8. KL(0.5 || 0.8) = 0.5 ln(0.5/0.8) + 0.5 ln(0.5/0.2) = 0.5 ln(2.5/1.6)
    # = 0.22314; the first row scores 0, so the batch mean is half of it.
    import tensorflow as tf

    t = np.concatenate([as_image([1, 1, 0, 0])] * 2)
    p = tf.Variable(np.concatenate([as_image([0.5] * 4), as_image([0.8] * 4)]))
    per_row = losses.ConsistencyLoss().call(t, p).numpy()
    np.testing.assert_allclose(per_row, [0.0, 0.5 * math.log(2.5 / 1.6)], atol=1e-6)
    with tf.GradientTape() as tape:
        loss = losses.ConsistencyLoss()(t, p)
    assert float(loss) == pytest.approx(0.5 * math.log(2.5 / 1.6) / 2, abs=1e-6)
    grad = tape.gradient(loss, p).numpy()
    # The first view is the target, held fixed; the second is pulled towards it:
    # d/dq [0.5 ln(0.5/q) + 0.5 ln(0.5/(1-q))] = -0.5/q + 0.5/(1-q) = 1.875 at q = 0.8,
    # over 4 pixels and 2 rows.
    np.testing.assert_allclose(grad[0], 0.0, atol=1e-7)
    np.testing.assert_allclose(grad[1], 1.875 / 4 / 2, atol=1e-6)
    # Agreeing views cost nothing.
    same = np.concatenate([as_image([0.3] * 4)] * 2)
    np.testing.assert_allclose(losses.ConsistencyLoss().call(t, same).numpy(), 0.0, atol=1e-6)


def test_consistency_ignores_batches_that_are_not_pairs():
    # Validation's whole photos: the halves' masks differ, so nothing is compared; an odd row
    # left over has no partner.
    t = np.concatenate([as_image([1, 1, 0, 0]), as_image([0, 1, 1, 0])])
    p = np.concatenate([as_image([0.5] * 4), as_image([0.8] * 4)])
    np.testing.assert_allclose(losses.ConsistencyLoss().call(t, p).numpy(), [0.0, 0.0])
    t3 = np.concatenate([as_image([1, 1, 0, 0])] * 3)
    p3 = np.concatenate([as_image([0.5] * 4), as_image([0.8] * 4), as_image([0.1] * 4)])
    np.testing.assert_allclose(losses.ConsistencyLoss().call(t3, p3).numpy(),
                               [0.0, 0.5 * math.log(2.5 / 1.6), 0.0], atol=1e-6)


def test_only_a_consistency_term_asks_for_two_views():
    assert losses.uses_views(losses.make_loss("dice+bce+2*consistency"))
    assert losses.uses_views(losses.make_loss("consistency"))
    assert losses.uses_views(losses.make_loss("2*consistency+dice"))
    assert not losses.uses_views(losses.make_loss("dice+bce+0.5*boundary+far"))


def test_losses_combine_with_plus_and_times():
    assert value(losses.DiceLoss() + losses.BCELoss()) == pytest.approx(DICE + BCE, abs=1e-6)
    assert value(0.5 * losses.BCELoss()) == pytest.approx(BCE / 2, abs=1e-6)
    assert value(losses.BCELoss() * 3) == pytest.approx(3 * BCE, abs=1e-6)


@pytest.mark.parametrize("spec, expected", [
    ("dice+bce", lambda: DICE + BCE),
    ("dice + bce", lambda: DICE + BCE),
    ("2*bce", lambda: 2 * BCE),
    ("dice+bce+0.5*boundary",
     lambda: DICE + BCE + 0.5 * value(losses.BoundaryBCELoss())),
    ("dice+focal", lambda: DICE + value(losses.FocalLoss())),
    ("bce+lovasz", lambda: BCE + value(losses.LovaszLoss())),
    ("bce+0.5*far", lambda: BCE + 0.5 * value(losses.FarBCELoss())),
])
def test_make_loss_combinations(spec, expected):
    assert value(losses.make_loss(spec)) == pytest.approx(expected(), abs=1e-6)


@pytest.mark.parametrize("spec, bad", [("dice+hinge", "hinge"), ("dice+", ""), ("0.5*iou", "iou")])
def test_make_loss_rejects_unknown_terms(spec, bad):
    with pytest.raises(ValueError, match=f"unknown loss term '{bad}'"):
        losses.make_loss(spec)


@pytest.mark.parametrize("spec, bad", [("nan*dice", "nan"), ("inf*bce", "inf"), ("1e400*dice", "1e400"),
                                       ("0*dice", "0"), ("2*dice+-1*bce", "-1")])
def test_make_loss_rejects_weights_that_are_not_finite_and_positive(spec, bad):
    message = f"loss weight '{bad}' in '{spec}' must be a finite number greater than 0"
    with pytest.raises(ValueError, match=re.escape(message)):
        losses.make_loss(spec)


def test_make_loss_names_a_weight_that_is_no_number():
    with pytest.raises(ValueError, match=r"loss weight 'half' in 'half\*dice' is not a number"):
        losses.make_loss("half*dice")
