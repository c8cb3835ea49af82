"""The live path's shortcuts give the frames of the plain computation, bit for bit, on a real
720p clip through the camera-default model (a webcam clip of ../shared, skipped without it):
the refinement bounded to the person and applied in bands, against the same stage over the
whole frame at once."""

import cv2
import numpy as np
import pytest

from conftest import ROOT, shared_path
from portrait.capture import VideoFileSource
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

