"""Tests for portrait.refine: the guided filter against OpenCV, and the fast matte refiner."""

import cv2
import numpy as np
import pytest

from portrait.options import RefineOptions
from portrait.refine import (Refiner, _support, confine_to_model, drop_islands, guided_filter, reach_box,
                             refine_alpha, sharpen_probability)


def _structured(shape, seed):
    """A float32 image in [0, 1] with a sharp diagonal edge, a disc and some noise."""
    rng = np.random.default_rng(seed)
    h, w = shape[:2]
    yy, xx = np.mgrid[0:h, 0:w]
    base = ((xx + 0.5 * yy) > w * 0.5).astype(np.float32) * 0.6
    base += ((xx - w * 0.3) ** 2 + (yy - h * 0.6) ** 2 < (min(h, w) * 0.2) ** 2) * 0.3
    img = base[..., None] if len(shape) == 3 else base
    img = img + rng.normal(0, 0.05, shape).astype(np.float32)
    return np.clip(img, 0, 1).astype(np.float32)


def _person_scene(h=360, w=640):
    """A bright, textured 'person' (ellipse) with a sharp edge on a dark textured background."""
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:h, 0:w]
    mask = ((xx - w / 2) / (w * 0.22)) ** 2 + ((yy - h * 0.65) / (h * 0.5)) ** 2 < 1
    frame = np.where(mask[..., None], 200, 40) + rng.integers(-15, 16, (h, w, 3))
    return np.clip(frame, 0, 255).astype(np.uint8), mask.astype(np.float32)


@pytest.mark.parametrize("radius", [1, 4, 8])
@pytest.mark.parametrize("guide_kind", ["grey_f32", "grey_u8", "colour_f32", "colour_u8"])
@pytest.mark.parametrize("shape", [(48, 64), (37, 91)])
def test_guided_filter_matches_opencv(radius, guide_kind, shape):
    colour = guide_kind.startswith("colour")
    guide = _structured(shape + ((3,) if colour else ()), seed=1)
    eps = 1e-2
    if guide_kind.endswith("u8"):
        guide = (guide * 255).astype(np.uint8)
        eps = 1e-2 * 255 * 255  # cv2 uses eps on the guide's own scale
    src = _structured(shape, seed=2)
    expected = cv2.ximgproc.guidedFilter(guide, src, radius, eps)
    got = guided_filter(guide, src, radius, eps)
    assert got.dtype == np.float32 and got.shape == src.shape
    # Borders included: we use the same BORDER_REFLECT box means as OpenCV.
    np.testing.assert_allclose(got, expected, atol=2e-4)


def test_guided_filter_multichannel_src_matches_opencv():
    guide = _structured((40, 50), seed=4)
    src = np.random.default_rng(5).random((40, 50, 3), dtype=np.float32)
    expected = cv2.ximgproc.guidedFilter(guide, src, 3, 1e-3)
    np.testing.assert_allclose(guided_filter(guide, src, 3, 1e-3), expected, atol=2e-4)


@pytest.mark.parametrize("guide_kind", ["float32", "uint8"])
def test_a_one_channel_guide_is_the_grey_guide(guide_kind):
    guide = _structured((40, 56), 8)
    if guide_kind == "uint8":
        guide = np.rint(guide * 255).astype(np.uint8)
    src = _structured((40, 56), 9)
    np.testing.assert_array_equal(guided_filter(guide[:, :, None], src, 3, 1e-2),
                                  guided_filter(guide, src, 3, 1e-2))


def test_guided_filter_preserves_edge_and_smooths_flat_regions():
    guide = np.zeros((40, 40), np.float32)
    guide[:, 20:] = 1.0
    noisy = guide + np.random.default_rng(6).normal(0, 0.1, guide.shape).astype(np.float32)
    out = guided_filter(guide, noisy, 4, 1e-3)
    assert abs(out[:, 19].mean() - 0.0) < 0.05 and abs(out[:, 20].mean() - 1.0) < 0.05
    assert out[:, 5:15].std() < 0.5 * noisy[:, 5:15].std()


@pytest.mark.parametrize(
    "guide, src, radius, eps, match",
    [
        (np.zeros((8, 8), np.float64), np.zeros((8, 8), np.float32), 2, 0.1, "guide dtype: float64"),
        (np.zeros((8, 8), np.float32), np.zeros((8, 8), np.uint8), 2, 0.1, "src dtype: uint8"),
        (np.zeros((8, 8, 2), np.float32), np.zeros((8, 8), np.float32), 2, 0.1, r"guide shape: \(8, 8, 2\)"),
        (np.zeros((8, 8), np.float32), np.zeros((8, 9), np.float32), 2, 0.1, r"src shape: \(8, 9\)"),
        (np.zeros((8, 8), np.float32), np.zeros((8, 8), np.float32), 0, 0.1, "radius: 0"),
        (np.zeros((8, 8), np.float32), np.zeros((8, 8), np.float32), 2.5, 0.1,
         r"radius: 2.5 != an integer >= 1"),
        (np.zeros((8, 8), np.float32), np.zeros((8, 8), np.float32), 2, 0.0, "eps: 0.0"),
    ],
)
def test_guided_filter_rejects_bad_input(guide, src, radius, eps, match):
    with pytest.raises(ValueError, match=match):
        guided_filter(guide, src, radius, eps)


def test_fast_variant_with_scale_1_equals_plain_guided_filter():
    frame, mask = _person_scene(120, 160)
    prob = cv2.GaussianBlur(mask, (9, 9), 3)
    grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY).astype(np.float32) / 255
    for k in (0.5, 1.0, 3.0):  # the filter runs on the sharpened (below 1: softened) probability
        alpha = refine_alpha(frame, prob, RefineOptions(radius_px=5, eps=1e-3, scale=1, sharpen=k,
                                                       guide="grey", confine=0))
        guided = guided_filter(grey, sharpen_probability(prob.copy(), k), 5, 1e-3)
        expected = np.clip(np.rint(guided * 255), 0, 255)
        assert np.abs(alpha.astype(np.int16) - expected.astype(np.int16)).max() <= 1


def test_fast_colour_variant_with_scale_1_equals_plain_colour_guided_filter():
    frame, mask = _person_scene(120, 160)
    frame[:, :80, 0] //= 2  # hue differs between the halves
    prob = cv2.GaussianBlur(mask, (9, 9), 3)
    alpha = refine_alpha(frame, prob, RefineOptions(radius_px=5, eps=1e-3, scale=1, sharpen=1,
                                                   guide="colour", confine=0))
    expected = guided_filter(frame.astype(np.float32) / 255, prob, 5, 1e-3)
    expected = np.clip(np.rint(expected * 255), 0, 255)
    assert np.abs(alpha.astype(np.int16) - expected.astype(np.int16)).max() <= 1


def test_colour_guide_follows_an_edge_of_hue_that_grey_cannot_see():
    # A skin-coloured face on a wall of the same luma but another hue: the grey filter sees no
    # edge and keeps the model's blur; the colour filter snaps to the face's outline.
    h, w = 180, 320
    yy, xx = np.mgrid[0:h, 0:w]
    face = (xx - 160) ** 2 + (yy - 90) ** 2 < 50 ** 2
    skin = np.array([150, 180, 220], np.float32)  # BGR, luma ~188.6
    wall = np.full(3, float(skin @ [0.114, 0.587, 0.299]), np.float32)  # grey of the same luma
    frame = np.where(face[..., None], skin, wall).astype(np.uint8)
    prob = cv2.resize(face.astype(np.float32), (80, 45), interpolation=cv2.INTER_AREA)
    prob = cv2.GaussianBlur(prob, (5, 5), 1.5)
    band = cv2.dilate(face.astype(np.uint8), np.ones((13, 13))) != cv2.erode(
        face.astype(np.uint8), np.ones((13, 13)))
    truth = face * 255.0
    err = {g: np.abs(refine_alpha(frame, prob, RefineOptions(guide=g)).astype(np.float32)
                     - truth)[band].mean() for g in ("grey", "colour")}
    assert err["colour"] < 0.5 * err["grey"], err


def test_sharpen_probability_hand_computed():
    p = np.array([0.0, 0.2, 0.5, 0.9, 1.0], np.float32)
    np.testing.assert_allclose(sharpen_probability(p.copy(), 1.0), p, atol=1e-6)
    # k = 2: 0.2 -> 0.04 / (0.04 + 0.64); 0.9 -> 0.81 / (0.81 + 0.01)
    np.testing.assert_allclose(sharpen_probability(p.copy(), 2.0),
                               [0.0, 0.04 / 0.68, 0.5, 0.81 / 0.82, 1.0], atol=1e-6)
    out = np.empty_like(p)
    assert sharpen_probability(p, 3.0, out) is out
    np.testing.assert_array_equal(p, np.array([0.0, 0.2, 0.5, 0.9, 1.0], np.float32))  # untouched
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="sharpen"):
            sharpen_probability(p.copy(), bad)


def test_sharpen_clamps_a_probability_outside_0_1():
    """A probability a little outside [0, 1] is taken as 0 or 1: unclamped, 1.2 sharpened by
    1.5 came out 0.94 (a see-through patch in the person) and -0.2 by 1 came out -0.2."""
    p = np.array([-0.2, 1.2, 1.0001, -1e-6], np.float32)
    for k in (1.0, 1.5, 3.0):
        np.testing.assert_array_equal(sharpen_probability(p.copy(), k), [0, 1, 1, 0], err_msg=str(k))


def test_a_very_steep_sharpen_becomes_the_threshold_and_keeps_the_person():
    """p^k and (1 - p)^k both underflow float32 for large k; the person must not vanish."""
    p = np.array([0.0, 1e-30, 0.2, 0.49, 0.5, 0.51, 0.9, 1.0], np.float32)
    with np.errstate(all="raise"):  # nor warn
        for k in (1e3, 1e6, float("inf")):
            np.testing.assert_allclose(sharpen_probability(p.copy(), k),
                                       [0, 0, 0, 0, 0.5, 1, 1, 1], atol=1e-12, err_msg=str(k))


def test_sharpening_narrows_the_glow_where_the_frame_has_no_edge():
    # A flat grey frame gives the filter no edge to follow: it falls back to the model's soft
    # disc, whose rim (alpha 10-50 %) is the glow; sharpening keeps the 0.5 contour and narrows it.
    frame = np.full((180, 320, 3), 128, np.uint8)
    yy, xx = np.mgrid[0:45, 0:80]
    prob = 1 / (1 + np.exp((np.hypot(xx - 40, yy - 22) - 12) / 2.5)).astype(np.float32)
    prob = prob.astype(np.float32)
    soft = refine_alpha(frame, prob, RefineOptions(sharpen=1.0))
    sharp = refine_alpha(frame, prob, RefineOptions(sharpen=3.0))
    rim = lambda a: int(((a >= 26) & (a < 128)).sum())
    assert rim(sharp) < 0.6 * rim(soft), (rim(sharp), rim(soft))
    assert abs(int((sharp > 127).sum()) - int((soft > 127).sum())) < 0.05 * (soft > 127).sum()


def test_refine_snaps_to_image_edge_better_than_bilinear():
    frame, mask = _person_scene()
    prob = cv2.resize(mask, (160, 90), interpolation=cv2.INTER_AREA)  # a blurry 1/4-res model output
    truth = mask * 255
    band = cv2.dilate(mask, np.ones((15, 15))) != cv2.erode(mask, np.ones((15, 15)))
    refined = refine_alpha(frame, prob, RefineOptions(radius_px=8, eps=1e-3, scale=4))
    bilinear = refine_alpha(frame, prob, RefineOptions(enabled=False))
    err_refined = np.abs(refined.astype(np.float32) - truth)[band].mean()
    err_bilinear = np.abs(bilinear.astype(np.float32) - truth)[band].mean()
    assert err_refined < 0.35 * err_bilinear, (err_refined, err_bilinear)


def test_disabled_is_bilinear_upscale():
    frame = np.zeros((90, 160, 3), np.uint8)
    prob = np.random.default_rng(7).random((18, 32), dtype=np.float32)
    alpha = refine_alpha(frame, prob, RefineOptions(enabled=False))
    expected = np.rint(cv2.resize(prob, (160, 90), interpolation=cv2.INTER_LINEAR) * 255)
    assert np.abs(alpha.astype(np.int16) - expected).max() <= 1


@pytest.mark.parametrize("shape", [(1, 1), (1, 2), (2, 1), (4, 1)])
def test_disabled_refine_of_a_one_pixel_photo_is_one_pixel(shape):
    """--no-refine on a 1x1 photo: OpenCV took the 1x1 probability for the scalar of
    cv2.multiply(prob, 255.0) and returned a (4, 1) matte, and the photo (and with it the whole
    batch) ended in 'unexpected ValueError: unexpected alpha: uint8 (4, 1) != uint8 (1, 1)'."""
    frame = np.full((*shape, 3), 200, np.uint8)
    prob = np.full((8, 8), 0.8, np.float32)
    alpha = refine_alpha(frame, prob, RefineOptions(enabled=False))
    assert alpha.shape == shape and alpha.dtype == np.uint8 and (alpha == 204).all()
    out = np.empty(shape, np.uint8)
    assert refine_alpha(frame, prob, RefineOptions(enabled=False), out=out) is out


@pytest.mark.parametrize("sharpen", [3.0, 1.0])
def test_output_dtype_shape_out_buffer_and_inputs_unchanged(sharpen):
    """Unsharpened (1), the probability at the low resolution is used as it is: the
    flush of its near-zero values must still be done on a copy, not the caller's array."""
    frame, mask = _person_scene(72, 128)
    prob = cv2.resize(mask, (32, 18), interpolation=cv2.INTER_AREA)  # 1/4, the low resolution
    prob[0, :4] = 1e-7  # below the flush threshold
    frame_copy, prob_copy = frame.copy(), prob.copy()
    out = np.empty((72, 128), np.uint8)
    alpha = refine_alpha(frame, prob, RefineOptions(sharpen=sharpen), out=out)
    assert alpha is out and alpha.dtype == np.uint8 and alpha.shape == (72, 128)
    assert alpha[36, 64] > 200 and alpha[5, 5] < 50
    np.testing.assert_array_equal(frame, frame_copy)
    np.testing.assert_array_equal(prob, prob_copy)


def test_refine_rejects_bad_arrays():
    frame = np.zeros((20, 30, 3), np.uint8)
    prob = np.zeros((5, 5), np.float32)
    with pytest.raises(ValueError, match="float32 \\(H, W\\)|uint8 \\(H, W, 3\\)"):
        refine_alpha(frame.astype(np.float32), prob, RefineOptions())
    with pytest.raises(ValueError, match="float64"):
        refine_alpha(frame, prob.astype(np.float64), RefineOptions())
    with pytest.raises(ValueError, match=r"\(20, 30\)"):
        refine_alpha(frame, prob, RefineOptions(), out=np.empty((30, 20), np.uint8))
    with pytest.raises(ValueError, match=r"^unexpected frame: uint8 \(20, 30, 4\) != uint8 \(H, W, 3\)$"):
        refine_alpha(np.zeros((20, 30, 4), np.uint8), prob, RefineOptions())
    with pytest.raises(ValueError, match=r"^unexpected out: float32 \(20, 30\) != uint8 \(20, 30\)$"):
        refine_alpha(frame, prob, RefineOptions(), out=np.empty((20, 30), np.float32))


def test_class_equals_function_across_size_changes():
    options = RefineOptions(radius_px=6, scale=2)
    refiner = Refiner(options)
    for h, w in [(60, 80), (60, 80), (45, 100), (3, 2)]:
        frame, mask = _person_scene(h, w)
        prob = cv2.resize(mask, (16, 12), interpolation=cv2.INTER_AREA)
        np.testing.assert_array_equal(refiner(frame, prob), refine_alpha(frame, prob, options))


def _part_frame_scene(h, w, seed):
    """A noisy frame and a model-like probability: a soft blob over part of it, a faint speck."""
    rng = np.random.default_rng(seed)
    frame = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    frame = cv2.GaussianBlur(frame, (5, 5), 0)
    ph, pw = max(1, h // 4), max(1, w // 4)
    yy, xx = np.mgrid[0:ph, 0:pw]
    cx, cy = rng.uniform(0.3, 0.7) * pw, rng.uniform(0.4, 0.9) * ph
    prob = 1 / (1 + np.exp((np.hypot((xx - cx) / 1.5, yy - cy) - ph * 0.25) / 1.2))
    prob[int(ph * 0.1), int(pw * 0.9)] = 0.3  # a speck far from the person
    return frame, prob.astype(np.float32)


@pytest.mark.parametrize("guide", ["grey", "colour"])
@pytest.mark.parametrize("shape, scale", [((180, 320), 4), ((720, 1280), 4), ((90, 160), 2),
                                          ((181, 322), 4), ((97, 131), 4)])
def test_bounded_refine_is_bit_identical_and_bounded(guide, shape, scale):
    options = RefineOptions(guide=guide, scale=scale)
    for seed in range(3):
        frame, prob = _part_frame_scene(*shape, seed)
        bounded = refine_alpha(frame, prob, options, workspace={})
        whole = refine_alpha(frame, prob, options, bounded=False)
        np.testing.assert_array_equal(bounded, whole)
        assert 0 < (whole > 0).mean() < 0.9  # the scene leaves part of the frame at 0
    # the same workspace across sizes and guides keeps the results exact
    workspace = {}
    for seed, size in enumerate([(180, 320), (90, 160), (180, 320)]):
        frame, prob = _part_frame_scene(*size, seed)
        np.testing.assert_array_equal(refine_alpha(frame, prob, options, workspace=workspace),
                                      refine_alpha(frame, prob, options, bounded=False))


def test_reach_box_from_hand_made_coefficients():
    a = np.zeros((45, 80), np.float32)
    b255 = np.zeros((45, 80), np.float32)
    assert reach_box(a, b255, (320, 180)) is None  # nothing can light up
    b255[10, 20] = 3.0  # lit whatever the guide
    assert reach_box(a, b255, (320, 180)) == (19 * 4, 9 * 4, 22 * 4, 12 * 4)  # one cell wider
    a[30, 70] = 0.001  # 255 * 0.001 = 0.255: can just reach a quarter level on a white pixel
    assert reach_box(a, b255, (320, 180)) == (19 * 4, 9 * 4, 72 * 4, 32 * 4)
    a[44, 0], b255[44, 0] = -0.5, 0.2  # a negative slope can only lower it; 0.2 stays dark
    assert reach_box(a, b255, (320, 180)) == (19 * 4, 9 * 4, 72 * 4, 32 * 4)
    a3 = np.zeros((45, 80, 3), np.float32)
    a3[0, 79] = (0.0005, 0.0005, -1)  # the positive channels add up: 255 * 0.001
    assert reach_box(a3, np.zeros((45, 80), np.float32), (320, 180)) == (78 * 4, 0, 320, 2 * 4)
    assert reach_box(a, b255, (321, 180)) == (0, 0, 321, 180)  # not a whole multiple: all of it
    b255 = np.zeros((45, 80), np.float32)
    b255[20, 40] = 0.25  # exactly a quarter level counts
    assert reach_box(np.zeros((45, 80), np.float32), b255, (320, 180)) == (39 * 4, 19 * 4, 42 * 4, 22 * 4)


def test_a_faint_probability_that_makes_a_grey_level_is_kept():
    """Near-zero probabilities are flushed to 0 only where they cannot make a quarter grey level:
    0.003 (0.77 of a level) over a flat frame gives alpha 1 inside its patch, 0 far from it."""
    frame = np.full((180, 320, 3), 128, np.uint8)
    prob = np.zeros((45, 80), np.float32)
    prob[10:35, 20:60] = 0.003
    alpha = refine_alpha(frame, prob, RefineOptions(sharpen=1.0))
    assert (alpha[60:120, 120:200] == 1).all(), np.unique(alpha[60:120, 120:200])
    assert not alpha[:, :40].any() and not alpha[:, 280:].any()


def test_probabilities_in_the_thousandths_still_add_up_to_a_grey_level():
    """Only what cannot make a grey level is flushed: columns of 0.0035 and 0.0009 over a flat
    frame average 0.0022 in the filter's boxes (radius 2 at 1/4: 5 columns, 3 of one and 2 of
    the other, twice), 0.55 to 0.57 of a grey level, so alpha 1; without the 0.0009 columns
    it would be 0.43 to 0.46, and 0."""
    frame = np.full((180, 320, 3), 128, np.uint8)
    prob = np.zeros((45, 80), np.float32)
    prob[:, 0::2], prob[:, 1::2] = 0.0035, 0.0009
    for guide in ("grey", "colour"):
        alpha = refine_alpha(frame, prob, RefineOptions(sharpen=1.0, guide=guide))
        assert (alpha[16:-16, 16:-16] == 1).all(), (guide, np.unique(alpha[16:-16, 16:-16]))


def test_a_probability_too_faint_for_a_grey_level_gives_a_zero_matte():
    """1e-4 is kept by the flush but makes 0.03 of a grey level: nothing can reach the matte,
    which is 0, written into the given buffer."""
    frame = np.full((180, 320, 3), 90, np.uint8)
    out = np.full((180, 320), 7, np.uint8)
    for guide in ("grey", "colour"):
        alpha = refine_alpha(frame, np.full((45, 80), 1e-4, np.float32),
                             RefineOptions(sharpen=1.0, guide=guide), out=out)
        assert alpha is out and not alpha.any()


@pytest.mark.parametrize("shape", [(1, 1), (3, 3), (2, 7), (3, 700)])
def test_a_frame_smaller_than_the_scale_is_refined_at_one_cell(shape):
    """A frame under 4 px (the scale) on a side is refined on one cell that way: a flat
    probability of 0.6 is 0.6 * 255 = 153 everywhere."""
    frame = np.full((*shape, 3), 200, np.uint8)
    for guide in ("grey", "colour"):
        alpha = refine_alpha(frame, np.full((8, 8), 0.6, np.float32),
                             RefineOptions(sharpen=1.0, guide=guide))
        assert alpha.shape == shape and (alpha == 153).all(), (guide, np.unique(alpha))


def test_empty_frame_gives_a_zero_matte():
    frame = np.full((180, 320, 3), 90, np.uint8)
    out = np.full((180, 320), 7, np.uint8)
    alpha = refine_alpha(frame, np.zeros((45, 80), np.float32), RefineOptions(), out=out)
    assert alpha is out and not alpha.any()


def _box(x, radius):
    return cv2.boxFilter(x, cv2.CV_64F, (2 * radius + 1,) * 2, borderType=cv2.BORDER_REFLECT)


def _plain_coefficients(guide, src, radius, eps):
    """He et al.'s box-averaged a and b in float64, written out plainly: a 3x3 solve per pixel
    for a colour guide."""
    mean_p = _box(src, radius)
    if guide.ndim == 2:
        mean_i = _box(guide, radius)
        a = (_box(guide * src, radius) - mean_i * mean_p) / (
            _box(guide * guide, radius) - mean_i * mean_i + eps)
        return _box(a, radius), _box(mean_p - a * mean_i, radius)
    mean_i = np.dstack([_box(guide[:, :, c], radius) for c in range(3)])
    cov = np.dstack([_box(guide[:, :, c] * src, radius) - mean_i[:, :, c] * mean_p
                     for c in range(3)])
    sigma = np.empty(guide.shape[:2] + (3, 3))
    for i in range(3):
        for j in range(3):
            sigma[:, :, i, j] = (_box(guide[:, :, i] * guide[:, :, j], radius)
                                 - mean_i[:, :, i] * mean_i[:, :, j])
    a = np.linalg.solve(sigma + eps * np.eye(3), cov[..., None])[..., 0]
    b = mean_p - (a * mean_i).sum(axis=2)
    return np.dstack([_box(a[:, :, c], radius) for c in range(3)]), _box(b, radius)


def _plain_fast_guided(frame, prob, options):
    """The module docstring's fast guided filter, plainly: the sharpened probability and the
    guide (grey or BGR) area-averaged to 1/scale, a and b computed there over the whole frame,
    upsampled bilinearly, alpha = a·I + b at full resolution."""
    height, width = frame.shape[:2]
    low = (width // options.scale, height // options.scale)
    prob = sharpen_probability(prob.copy(), options.sharpen)
    prob = cv2.resize(prob, low, interpolation=cv2.INTER_LINEAR).astype(np.float64)
    guide = frame if options.guide == "colour" else cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    guide_low = cv2.resize(guide, low, interpolation=cv2.INTER_AREA) / 255.0
    a, b = _plain_coefficients(guide_low, prob, max(1, round(options.radius_px / options.scale)),
                               options.eps)
    a = cv2.resize(a.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
    b = cv2.resize(b.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
    alpha = a * (guide / 255.0)
    alpha = (alpha.sum(axis=2) if alpha.ndim == 3 else alpha) + b
    return np.clip(np.rint(alpha * 255), 0, 255)


@pytest.mark.parametrize("guide", ["grey", "colour"])
@pytest.mark.parametrize("shape, scale", [((180, 320), 4), ((90, 160), 2), ((99, 162), 3),
                                          ((97, 131), 4), ((181, 322), 4)])
def test_refine_equals_the_plain_fast_guided_filter(guide, shape, scale):
    """At the scales and sizes the app meets (a frame not a multiple of the scale included),
    the matte is the plain fast guided filter's within a grey level or so (the fast code rounds
    its grey guide to uint8 at each 2x step); a guide sampled or upsampled otherwise (nearest,
    misaligned, not averaged) is off by many levels along the person's edge."""
    options = RefineOptions(guide=guide, scale=scale, confine=0)  # the filter alone
    for seed in range(2):
        frame, prob = _part_frame_scene(*shape, seed)
        alpha = refine_alpha(frame, prob, options)
        difference = np.abs(alpha.astype(np.int16) - _plain_fast_guided(frame, prob, options))
        assert difference.max() <= 3, (seed, difference.max())
        assert (difference > 1).mean() < 0.002, (seed, (difference > 1).mean())


@pytest.mark.parametrize("guide", ["grey", "colour"])
@pytest.mark.parametrize("radius_px", [1, 2, 3])
def test_a_radius_under_half_a_cell_is_one_cell(guide, radius_px):
    """At 1/4, radii of 1 and 2 px round to no cell (2 / 4 = 0.5 rounds to even, 0): the filter
    still averages over one cell each way, as the plain fast filter does; 3 px rounds to 1."""
    options = RefineOptions(guide=guide, scale=4, radius_px=radius_px, confine=0)
    frame, prob = _part_frame_scene(180, 320, 0)
    difference = np.abs(refine_alpha(frame, prob, options).astype(np.int16)
                        - _plain_fast_guided(frame, prob, options))
    assert difference.max() <= 3 and (difference > 1).mean() < 0.002, difference.max()


def test_the_support_is_the_person_and_a_margin_not_a_sigmoids_tail():
    """A model's sigmoid is never exactly 0: values under 1e-6 are flushed to 0 (in place), so
    the coefficients are computed only over the cells with a probability and 2r + 1 around
    them, clipped to the frame, and not over the whole frame; nothing left gives None."""
    prob = np.full((45, 80), 1e-7, np.float32)
    prob[20:25, 30:40] = 0.9
    prob[22, 45] = 2e-6  # kept: above the flush
    assert _support(prob, 2) == (slice(15, 30), slice(25, 51))
    assert (prob[prob < 0.9] == 0).sum() == 45 * 80 - 50 - 1  # flushed in place
    prob[0:2, 78:80] = 0.5  # at the corner: the margin is clipped
    assert _support(prob, 1) == (slice(0, 28), slice(27, 80))
    assert _support(np.full((45, 80), 9e-7, np.float32), 2) is None


def _islands():
    """A 30 x 40 matte: the person (20 x 10 = 200 px at 255), a fleck of 1 px at alpha 26, a fleck
    of 2 x 2 = 4 px at alpha 60, a faint 3 px at alpha 25 (not above the level), and a 1 px
    corner touching the person diagonally at 120."""
    alpha = np.zeros((30, 40), np.uint8)
    alpha[5:25, 5:15] = 255
    alpha[2, 30] = 26
    alpha[10:12, 25:27] = 60
    alpha[20, 30:33] = 25
    alpha[25, 15] = 120
    return alpha


def test_drop_islands_clears_only_islands_under_the_share_of_the_largest():
    alpha = _islands()
    before = alpha.copy()
    # 1 % of the person's 201 px is 2.01: the 1 px fleck goes, the 4 px one stays.
    assert drop_islands(alpha, 0.01) is alpha
    expected = before.copy()
    expected[2, 30] = 0
    assert (alpha == expected).all()
    # 2.5 % is 5.025 px: both flecks go; the faint pixels and the touching corner stay.
    alpha = before.copy()
    drop_islands(alpha, 0.025)
    expected[10:12, 25:27] = 0
    assert (alpha == expected).all()
    # At a lower level the faint 3 px are an island too.
    alpha = before.copy()
    drop_islands(alpha, 0.025, level=24)
    expected[20, 30:33] = 0
    assert (alpha == expected).all()


def test_drop_islands_off_or_with_one_region_changes_nothing():
    alpha = _islands()
    before = alpha.copy()
    drop_islands(alpha, 0.0)
    assert (alpha == before).all()
    one = np.zeros((10, 10), np.uint8)
    one[2:4, 2:4] = 39  # one region: nothing to compare it with
    assert (drop_islands(one.copy(), 0.9) == one).all()
    assert not drop_islands(np.zeros((5, 5), np.uint8), 0.5).any()


@pytest.mark.parametrize("alpha, share, level, message", [
    (np.zeros((4, 4), np.float32), 0.01, 25, "uint8"),
    (np.zeros((4, 4, 1), np.uint8), 0.01, 25, "uint8"),
    (np.zeros((4, 4), np.uint8), 1.0, 25, "min_share"),
    (np.zeros((4, 4), np.uint8), -0.1, 25, "min_share"),
    (np.zeros((4, 4), np.uint8), 0.01, 255, "level"),
])
def test_drop_islands_refuses_what_it_cannot_use(alpha, share, level, message):
    with pytest.raises(ValueError, match=message):
        drop_islands(alpha, share, level)


def test_refine_alpha_with_min_island_clears_a_fleck_the_filter_leaves():
    """A fleck of probability apart from the person survives the filter as a small island; with
    min_island it is cleared and the rest is the same matte, bit for bit; without it (camera and
    video) the matte is the one drop_islands never saw."""
    frame, person = _person_scene()
    prob = cv2.resize(person, (160, 90), interpolation=cv2.INTER_AREA)
    prob[5:7, 5:7] = 0.9  # a fleck in the top-left corner, far from the person
    plain = refine_alpha(frame, prob, RefineOptions())
    assert plain[:40, :40].max() > 25  # the fleck is there as an island
    cleared = refine_alpha(frame, prob, RefineOptions(min_island=0.01))
    assert (cleared == drop_islands(plain.copy(), 0.01)).all()
    assert cleared[:40, :40].max() <= 25
    assert (cleared[:, 60:] == plain[:, 60:]).all()
    assert (Refiner(RefineOptions(min_island=0.01))(frame, prob) == cleared).all()
    # --no-refine's plain upscale is left as it is.
    upscale = refine_alpha(frame, prob, RefineOptions(enabled=False))
    assert upscale[:40, :40].max() > 25
    assert (refine_alpha(frame, prob, RefineOptions(enabled=False, min_island=0.01)) == upscale).all()


def _grout_scene():
    """A skin-coloured forearm (columns 60..79) before a bright tiled wall whose grout (rows
    58..60, as dark as a shadow) runs across it; the model marks the arm only (1/4 size)."""
    frame = np.full((120, 160, 3), 225, np.uint8)
    frame[58:61, :] = 150
    frame[:, 60:80] = (90, 120, 170)
    prob = np.zeros((30, 40), np.float32)
    prob[:, 15:20] = 1.0
    return frame, cv2.GaussianBlur(prob, (5, 5), 1.0)


def test_confine_stops_the_filter_carrying_the_matte_along_an_edge_of_the_room():
    """The guided filter alone carries the arm's matte along the grout as a faint line (alpha 29
    to 45 at 8 to 11 px from the arm: the room shows through a replaced background there); capped
    at the sharpened probability over 0.05 (the camera and video default) the line ends within
    6 px of the arm, while the arm's own edge keeps the filter's alpha."""
    frame, prob = _grout_scene()
    free = refine_alpha(frame, prob, RefineOptions(confine=0))
    capped = refine_alpha(frame, prob, RefineOptions())
    assert RefineOptions().confine == 0.05
    assert free[59, 88:92].min() >= 25  # the line
    assert capped[59, 86:].max() <= 2 and capped[:, 86:].max() <= 2
    np.testing.assert_array_equal(capped[:, 58:84], free[:, 58:84])  # the arm and its edge
    assert (capped <= free).all()  # a cap: never more matte


def test_confine_to_model_hand_computed():
    """alpha becomes min(alpha, 255 * p / level), p upsampled as cv2.resize does (within a grey
    level: warpAffine interpolates in 1/32 steps), only inside the box of nonzero alpha; a matte
    with no alpha is left as it is."""
    prob = np.array([[0.0, 0.01, 0.02], [0.04, 0.2, 1.0]], np.float32)
    alpha = np.zeros((20, 30), np.uint8)
    alpha[3:17, 4:29] = 200
    expected = np.minimum(alpha, np.clip(np.rint(
        cv2.resize(prob, (30, 20), interpolation=cv2.INTER_LINEAR) * 255 / 0.05), 0, 255))
    out = confine_to_model(alpha, prob, 0.05)
    assert out is alpha
    assert np.abs(alpha.astype(int) - expected).max() <= 1
    assert alpha[:3].max() == alpha[17:].max() == alpha[:, :4].max() == 0
    assert alpha[10, 25] == 200 and alpha[4, 5] < 20  # sure of the person: kept; of nobody: cut
    empty = np.zeros((20, 30), np.uint8)
    assert not confine_to_model(empty, prob, 0.05).any()


def test_confine_caps_at_the_probability_given_not_the_filters_coarser_cells():
    """A probability finer than the filter's cells (here the frame's own size, scale 4) caps the
    matte at its own resolution: where it is 0 (beside the arm), alpha is 0, though the filter's
    1/4-size copy of it, upsampled, is not 0 there and the filter alone leaves matte there."""
    frame, _ = _grout_scene()
    prob = np.zeros((120, 160), np.float32)
    prob[:, 60:80] = 1.0
    free = refine_alpha(frame, prob, RefineOptions(confine=0))
    capped = refine_alpha(frame, prob, RefineOptions())
    assert free[:, 56:60].max() > 0 and free[:, 80:84].max() > 0  # the filter's spill
    assert capped[:, :60].max() == 0 and capped[:, 80:].max() == 0
    np.testing.assert_array_equal(capped[:, 60:80], free[:, 60:80])
