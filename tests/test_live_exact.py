"""The live path's shortcuts give the frames of the plain computation, bit for bit, on a real
720p clip through the camera-default model (a webcam clip of ../shared, skipped without it):
the refinement bounded to the person and applied in bands, against the same stage over the
whole frame at once, and the blurred background, against its formula in numpy."""

import cv2
import numpy as np
import pytest

from conftest import ROOT, shared_path
from portrait.capture import VideoFileSource
from portrait.composite import _NO_WEIGHT, _halve, blur_background
from portrait.options import LIVE_MODEL, RefineOptions, SegmentOptions, SmoothOptions, SubjectOptions
from portrait.refine import Refiner, refine_alpha
from portrait.segment import create_segmenter
from portrait.smooth import TemporalSmoother
from portrait.subject import SubjectSelector

SIZE = (1280, 720)  # the camera default
EVERY = 4  # every 4th frame of the clip's 58: a person who moves, and a second of test time


@pytest.fixture(scope="module")
def clip():
    """(frame, smoothed person probability) for every ``EVERY``th frame of ``asl_help.mkv`` at
    720p, the probability as the pipeline hands it to refinement (smoothed, subject kept)."""
    path = shared_path("data", "videos", "asl_help.mkv")
    smoother, subject = TemporalSmoother(SmoothOptions()), SubjectSelector(SubjectOptions())
    scenes = []
    with create_segmenter(SegmentOptions(model=str(ROOT / LIVE_MODEL), threads=1)) as segmenter, \
            VideoFileSource(str(path), quiet=True) as source:
        for frame in source:
            image = cv2.resize(frame.image, SIZE, interpolation=cv2.INTER_LINEAR)
            prob = subject(smoother(segmenter.segment(image)))
            if frame.index % EVERY == 0:
                scenes.append((image, prob))
    assert len(scenes) >= 10
    return scenes


@pytest.mark.parametrize("guide", ["colour", "grey"])
def test_refinement_in_bands_is_the_whole_frame_s_on_a_real_clip(clip, guide):
    options = RefineOptions(guide=guide)
    refiner = Refiner(options)  # its buffers kept from frame to frame, as in the pipeline
    out = np.empty(SIZE[::-1], np.uint8)
    for image, prob in clip:
        alpha = refiner(image, prob, out=out)
        np.testing.assert_array_equal(alpha, refine_alpha(image, prob, options, bounded=False))
        assert 0 < (alpha > 0).mean() < 0.6  # the person fills part of the frame: bounds matter



def plain_blur_background(frame_bgr, alpha, blur_px):
    """:func:`blur_background`'s normalised convolution as numpy writes it, one weight plane
    broadcast over the three channels (as the app computed it until OpenCV did)."""
    halvings = 2 if blur_px >= 12 else 1 if blur_px >= 6 else 0
    frame_low = _halve(frame_bgr, halvings).astype(np.float32)
    weight = cv2.dilate(_halve(alpha, halvings), np.ones((3, 3), np.uint8)).astype(np.float32)
    weight *= np.float32(-1 / 255)
    weight += np.float32(1)
    ksize = 2 * max(1, round(blur_px / (1 << halvings))) + 1
    numerator = cv2.stackBlur(frame_low * weight[:, :, None], (ksize, ksize))
    denominator = cv2.stackBlur(weight, (ksize, ksize))
    numerator += _NO_WEIGHT * frame_low
    denominator += _NO_WEIGHT
    numerator /= denominator[:, :, None]
    numerator += np.float32(0.5)
    return cv2.resize(numerator.astype(np.uint8), frame_bgr.shape[1::-1],
                      interpolation=cv2.INTER_LINEAR)


@pytest.mark.parametrize("blur_px", [3, 8, 21, 40])  # no halving, one, two, two and wider
def test_the_blurred_background_is_its_numpy_formula_s_on_a_real_clip(clip, blur_px):
    refiner = Refiner(RefineOptions())
    out = np.empty(SIZE[::-1] + (3,), np.uint8)
    noise = np.random.default_rng(0).integers(0, 256, SIZE[::-1], dtype=np.uint8)
    workspace = {}  # its scratch buffers kept from frame to frame, as a background keeps them
    for image, prob in clip:
        alpha = refiner(image, prob)
        for matte in (alpha, noise):  # the person's, and every weight at once
            blurred = blur_background(image, matte, blur_px, out=out, workspace=workspace)
            np.testing.assert_array_equal(blurred, plain_blur_background(image, matte, blur_px))

