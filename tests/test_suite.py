"""The product suite: stray, bottom-edge gap and flicker measures on hand-made sequences, the
held-out split rule, and one quick suite run on the shared data."""

import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import pytest

from portrait.errors import InputError
from portrait.training import suite
from portrait.training.conditions import CAMERA_CONDITIONS
from portrait.training.video_metrics import (
    SequenceScore,
    alpha_change,
    bottom_edge_gap,
    motion_lag,
    still_change,
    stray_fraction,
)

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
SELFIE = SHARED / "models" / "selfie_segmentation.tflite"
needs_shared = pytest.mark.skipif(not (SHARED / "data" / "videos").is_dir() or not SELFIE.is_file(),
                                  reason="../shared (data and MediaPipe's selfie model) not present")


def matte_with_blob(blob: bool) -> np.ndarray:
    alpha = np.zeros((100, 200), np.uint8)
    alpha[20:90, 60:140] = 255  # the person: 70 x 80 = 5,600 px
    if blob:
        alpha[5:15, 170:190] = 200  # a chair: 10 x 20 = 200 px, apart from the person
    return alpha


def test_stray_fraction_counts_what_lies_outside_the_largest_region():
    assert stray_fraction(matte_with_blob(False)) == 0.0
    assert stray_fraction(matte_with_blob(True)) == pytest.approx(200 / 20_000)
    assert stray_fraction(np.zeros((10, 10), np.uint8)) == 0.0
    # A blob touching the person diagonally is one 8-connected region with it.
    alpha = matte_with_blob(False)
    alpha[90:95, 140:145] = 255
    assert stray_fraction(alpha) == 0.0
    # At the threshold (127) a pixel is not person; just above it is.
    alpha = matte_with_blob(False)
    alpha[0, 0] = 127
    assert stray_fraction(alpha) == 0.0
    alpha[0, 0] = 128
    assert stray_fraction(alpha) == pytest.approx(1 / 20_000)


def test_stray_fraction_refuses_a_float_matte():
    with pytest.raises(ValueError, match=r"float32 \(100, 200\) != uint8 \(H, W\)"):
        stray_fraction(matte_with_blob(True).astype(np.float32))


def test_flicker_is_measured_on_still_pairs_only():
    still = np.full((100, 200, 3), 120, np.uint8)
    moved = still.copy()
    moved[:, :100] = 160  # mean grey change 20: not a still pair
    a, b = matte_with_blob(False), matte_with_blob(False)
    b[20:90, 60:70] = 0  # 700 px drop from 255 to 0 on a still scene
    score = SequenceScore()
    score.add(still, a)
    score.add(still, b)  # still: counts
    score.add(moved, np.zeros_like(a))  # the picture changed: skipped (its matte change is 0.245)
    assert score.frames == 3
    assert score.flickers == [pytest.approx(700 * 255 / 20_000 / 255)]
    assert score.flicker == pytest.approx(0.035)
    assert still_change(still, moved) == pytest.approx(20.0, abs=0.6)
    assert alpha_change(a, a) == 0.0


def test_stray_fraction_counts_every_region_but_the_largest():
    alpha = matte_with_blob(True)  # the person (5,600 px) and a chair (200 px)
    alpha[80:90, 160:170] = 255  # and a lamp: 100 px, apart from both
    assert stray_fraction(alpha) == pytest.approx(300 / 20_000)


def test_still_change_is_the_grey_level_of_bgr_frames():
    """Frames are BGR: a change in blue alone moves the grey level by 0.114 of it, in red by
    0.299 (an RGB reading would swap the two)."""
    black = np.zeros((10, 10, 3), np.uint8)
    blue, red = black.copy(), black.copy()
    blue[:, :, 0] = 100
    red[:, :, 2] = 100
    assert still_change(black, blue) == pytest.approx(11.4, abs=0.6)
    assert still_change(black, red) == pytest.approx(29.9, abs=0.6)


def test_sequence_score_keeps_its_own_copy_of_the_last_frame():
    """A caller that decodes into the same buffers each frame still gets the flicker measured."""
    image = np.full((100, 200, 3), 120, np.uint8)
    alpha = matte_with_blob(False)
    score = SequenceScore()
    score.add(image, alpha)
    alpha[20:90, 60:70] = 0  # the next matte, written over the last: 700 px from 255 to 0
    score.add(image, alpha)
    assert score.flickers == [pytest.approx(700 / 20_000)]


def test_sequence_score_stray_frames_and_means():
    score = SequenceScore()
    image = np.zeros((100, 200, 3), np.uint8)
    for blob in (True, True, False, False):
        score.add(image, matte_with_blob(blob))
    # 200 / 20,000 = 1 % stray > 0.2 % in two frames of four.
    assert score.stray_frames == 2
    assert score.stray_mean == pytest.approx(0.005)
    assert SequenceScore().flicker is None
    with pytest.raises(ValueError, match="does not match the frame"):
        score.add(np.zeros((50, 50, 3), np.uint8), matte_with_blob(False))


def cut_person(bottom: int = 160) -> np.ndarray:
    """A 160 x 200 matte (band: the bottom 10 rows, 150..159; the row above it: 149) with a person
    80 columns wide (60..139) from row 40 down to ``bottom`` (160: cut by the frame's edge)."""
    alpha = np.zeros((160, 200), np.uint8)
    alpha[40:bottom, 60:140] = 255
    return alpha


def test_bottom_edge_gap_counts_the_holes_under_a_person_cut_by_the_edge():
    alpha = cut_person()
    assert bottom_edge_gap(alpha) == 0  # whole down to the edge
    alpha[155:160, 80:100] = 0  # the legs made transparent at the edge: 5 x 20 px
    assert bottom_edge_gap(alpha) == 100
    alpha[100:110, 60:140] = 0  # a hole above the band is not the edge's
    assert bottom_edge_gap(alpha) == 100
    alpha[150, 60] = 127  # not person (alpha >= 128 is), in the band under a person column
    assert bottom_edge_gap(alpha) == 101
    alpha[150, 60] = 128
    assert bottom_edge_gap(alpha) == 100
    alpha[149, 139] = 128  # person on the row above (alpha >= 128): its band under it counts
    alpha[150:160, 139] = 0
    assert bottom_edge_gap(alpha) == 110
    alpha[149, 139] = 127  # not person above: its band adds nothing
    assert bottom_edge_gap(alpha) == 100
    # A column that is not person on row 149 adds nothing, whatever its band holds.
    alpha[149, 80:90] = 0
    assert bottom_edge_gap(alpha) == 50
    with pytest.raises(ValueError, match=r"float32 \(160, 200\) != uint8 \(H, W\)"):
        bottom_edge_gap(alpha.astype(np.float32))


def test_bottom_edge_gap_of_a_person_ending_above_the_band_is_zero():
    assert bottom_edge_gap(cut_person(140)) == 0
    assert bottom_edge_gap(cut_person(149)) == 0  # ends on row 148: row 149 is not person
    # Ending on row 149 itself, the row the band is judged from: the whole band under it.
    assert bottom_edge_gap(cut_person(150)) == 10 * 80
    # Under 16 rows there is no band: a person ending a row above the edge of 15 rows adds
    # nothing; 16 rows have a band of one.
    short = np.zeros((15, 20), np.uint8)
    short[:14, 5:15] = 255
    assert bottom_edge_gap(short) == 0
    assert bottom_edge_gap(np.vstack([short[:1], short])) == 10  # a row more on top


def test_bottom_edge_gap_of_a_hand_ending_inside_the_band():
    """A hand reaching down past row 149 and ending on row 153 leaves the band's rows 154..159
    under it empty: 6 x 12 px, counted as a gap (the measure cannot tell a hand ending there
    from a cut body the matte lets go of). A shape that starts inside the band adds nothing."""
    alpha = np.zeros((160, 200), np.uint8)
    alpha[120:154, 20:32] = 255
    assert bottom_edge_gap(alpha) == 6 * 12
    alpha[152:158, 150:170] = 255
    assert bottom_edge_gap(alpha) == 6 * 12


def test_a_frame_drops_the_edge_above_0_1_percent_of_its_pixels():
    """0.1 % of 160 x 200 = 32 px: a gap of 32 px is not a frame that drops the edge, 33 is."""
    image = np.zeros((160, 200, 3), np.uint8)
    at, over = cut_person(), cut_person()
    at[156:160, 80:88] = 0  # 4 x 8 = 32 px
    over[156:160, 80:88] = 0
    over[155, 80] = 0  # 33 px
    score = SequenceScore()
    for alpha in (at, over, cut_person()):
        score.add(image, alpha)
    assert score.edge_gaps == [32 / 32_000, 33 / 32_000, 0.0]
    assert score.edge_gap_frames == 1
    assert score.edge_gap_mean == pytest.approx(65 / 32_000 / 3)
    assert SequenceScore().edge_gap_mean == 0.0 and SequenceScore().edge_gap_frames == 0


def square_frame(left: int) -> tuple[np.ndarray, np.ndarray]:
    """A 64 x 64 frame with a bright 16 x 16 square whose left edge is at ``left``, and its matte."""
    image = np.full((64, 64, 3), 40, np.uint8)
    image[24:40, left:left + 16] = 240
    alpha = np.zeros((64, 64), np.uint8)
    alpha[24:40, left:left + 16] = 255
    return image, alpha


def test_motion_lag_counts_a_trail_and_a_late_matte():
    """A square moves 8 px a frame: a matte one frame late misses its leading 8 x 16 px and keeps
    its trailing 8 x 16 px; a matte that also keeps the last position misses nothing."""
    _, now = square_frame(16)
    _, before = square_frame(8)
    assert motion_lag(now, now) == 0.0
    assert motion_lag(before, now) == pytest.approx(2 * 8 * 16 / 4096)  # 6.25 %
    assert motion_lag(np.maximum(before, now), now) == pytest.approx(8 * 16 / 4096)  # a trail
    # Across 127, not by how much: 128 is person, 127 is not.
    assert motion_lag(np.where(now > 0, 128, 127).astype(np.uint8), now) == 0.0
    assert motion_lag(np.where(now > 0, 127, 0).astype(np.uint8), now) == pytest.approx(256 / 4096)
    with pytest.raises(ValueError, match=r"mattes differ in size: \(64, 64\) != \(32, 64\)"):
        motion_lag(now, now[:32])
    with pytest.raises(ValueError, match=r"unexpected own alpha: float32"):
        motion_lag(now, now.astype(np.float32))


def test_motion_lag_of_an_average_with_weight_0_4_on_a_moving_square():
    """The matte is an average of the square's own mattes with weight 0.4 on the new frame, the
    first taken whole. A pixel the square reaches reads 0.4 (102, not person), then 0.64 (163);
    one it left reads 0.6 times what it had. Frame 1: the spot left at frame 0 reads 0.6 (a
    trail of 128 px) and the leading 128 px read 0.4; frame 2: the spot left reads 0.6 again
    (it had 1.0), a trail, and the lead misses; from frame 3 on a spot left reads 0.384, only
    the lead misses. The last frame repeats the one before: a still pair, no motion lag."""
    score = SequenceScore()
    average = None
    for left in (0, 8, 16, 24, 32, 32):
        image, own = square_frame(left)
        new = own / 255.0
        average = new if average is None else 0.4 * new + 0.6 * average
        score.add(image, np.round(average * 255).astype(np.uint8), own)
    assert score.lags == pytest.approx([256 / 4096, 256 / 4096, 128 / 4096, 128 / 4096])
    assert score.motion_lag == pytest.approx(0.046875)
    assert len(score.flickers) == 1  # the repeated frame
    assert SequenceScore().motion_lag is None


def test_motion_lag_needs_each_frame_own_matte():
    """Without the frame's own matte a moving pair is not scored."""
    score = SequenceScore()
    for left in (0, 8, 16):
        image, alpha = square_frame(left)
        score.add(image, alpha)
    assert score.lags == [] and score.motion_lag is None and score.frames == 3


def test_score_clip_compares_each_moving_frame_with_its_own_matte(tmp_path, brightness_model):
    """Through the app's video path a hard-edged square moving 3 px a frame changes the
    probability by nearly 1 where it moves, so smoothing takes the new frame whole there: every
    moving pair is scored and the app's matte is each frame's own (a matte one frame late, the
    last frame's model output given again, would miss 3 x 32 px and keep 3 x 32)."""
    from portrait.options import SegmentOptions

    from conftest import write_video

    score = suite.score_clip(SegmentOptions(model=str(brightness_model)),
                             write_video(tmp_path / "moving.avi", 8, size=(64, 64)))
    assert score.frames == 8 and len(score.lags) == 7 and score.flickers == []
    assert score.lags == [0.0] * 7


def test_score_clip_finds_the_lag_of_a_smoothed_step(tmp_path, brightness_model):
    """A uniform grey frame that steps from 121 to 128 (losslessly stored): the model's
    probability steps from about 0.35 to 0.51, a change the smoothing takes only in part, so
    the app's matte stays below 127 on that frame while the frame's own matte is above it: the
    whole frame lags (1.0), with or without subject selection. A step from 100 to 140 is taken
    whole (no lag), and the frames that repeat the one before are still pairs, not moving ones."""
    from portrait.options import SegmentOptions

    def clip(name, greys):
        path = tmp_path / name
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"FFV1"), 30, (64, 64))
        for grey in greys:
            writer.write(np.full((64, 64, 3), grey, np.uint8))
        writer.release()
        return path

    model = SegmentOptions(model=str(brightness_model))
    slow, jump = clip("slow.avi", [121, 121, 121, 128, 128]), clip("jump.avi", [100, 100, 140, 140])
    for subject in (True, False):
        score = suite.score_clip(model, slow, subject=subject)
        assert score.lags == [1.0] and len(score.flickers) == 3, subject
        assert suite.score_clip(model, jump, subject=subject).lags == [0.0], subject


def test_score_clip_measures_the_bottom_edge_gap_of_the_app_path(tmp_path, brightness_model):
    """A bright block cut by the bottom edge of a 64 x 64 clip (band: rows 60..63) that is whole
    keeps the matte whole to the edge; with a dark notch of 4 x 16 px at the edge under it
    (1.6 % of the frame), every frame of the app's matte drops the edge by just that much."""
    from portrait.options import SegmentOptions

    def clip(name, notch):
        image = np.full((64, 64, 3), 30, np.uint8)
        image[8:64, 16:48] = 220
        if notch:
            image[60:64, 24:40] = 30
        path = tmp_path / name
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"FFV1"), 30, (64, 64))
        for _ in range(4):
            writer.write(image)
        writer.release()
        return path

    model = SegmentOptions(model=str(brightness_model))
    whole = suite.score_clip(model, clip("whole.avi", False))
    assert whole.edge_gaps == [0.0] * 4 and whole.edge_gap_frames == 0
    notched = suite.score_clip(model, clip("notched.avi", True))
    assert notched.edge_gaps == [64 / 4096] * 4 and notched.edge_gap_frames == 4


def test_score_clip_runs_the_model_once_a_frame_for_both_paths(brightness_model):
    """The app's path and the frame's own path share the model's output on a frame; the next
    frame, after ``forget()``, gets its own."""
    from portrait.options import SegmentOptions
    from portrait.segment import create_segmenter

    first, _ = square_frame(0)
    second, _ = square_frame(32)
    with create_segmenter(SegmentOptions(model=str(brightness_model))) as segmenter:
        model = suite._OncePerFrame(segmenter)
        prob = model.segment(first)
        assert model.segment(first) is prob
        model.forget()
        moved = model.segment(second)
        assert moved is not prob
        np.testing.assert_array_equal(moved, segmenter.segment(second))
        assert not np.array_equal(moved, prob)


def test_holdout_rule_is_every_kth_sorted_stem():
    stems = [f"{i:03d}" for i in range(12, 0, -1)]
    assert suite.holdout_stems(stems, 5) == ["005", "010"]
    assert suite.holdout_stems(stems, 1) == sorted(stems)
    with pytest.raises(ValueError, match="at least 1"):
        suite.holdout_stems(stems, 0)


def test_worst_domain_takes_the_most_negative_difference():
    result = {
        "photos": {"a": [{"miou": 0.90}, {"miou": 0.91}], "b": [{"miou": 0.95}, {"miou": 0.90}]},
        "webcam": {"clip": [{"stray_share": 0.5}, {"stray_share": 0.0}]},
    }
    assert suite.worst_domain(result) == {"domain": "webcam clip", "measure": "share of frames with stray",
                                          "difference": -0.5}


def test_worst_domain_ranks_far_matte_only_where_everyone_is_labelled():
    labelled = next(d.name for d in suite.PHOTO_DOMAINS if d.everyone_labelled)
    partial = next(d.name for d in suite.PHOTO_DOMAINS if not d.everyone_labelled)
    result = {
        "photos": {labelled: [{"miou": 0.95, "far_share": 0.3}, {"miou": 0.94, "far_share": 0.1}],
                   partial: [{"miou": 0.95, "far_share": 0.9}, {"miou": 0.94, "far_share": 0.0}]},
        "webcam": {"clip": [{"stray_share": 0.0}, {"stray_share": 0.0}]},
    }
    # EG1800's second people are unlabelled, so its far share (-0.9) does not rank; 0.1 - 0.3 does.
    assert suite.worst_domain(result) == {
        "domain": labelled, "measure": "share of photos with matte far from everyone",
        "difference": -0.2}


def test_worst_domain_takes_the_model_minus_the_peer_miou():
    """A domain where the model's mIoU is below the peer's is the worst, at model minus peer;
    one where it is above the peer's is not."""
    result = {
        "photos": {"behind": [{"miou": 0.90}, {"miou": 0.95}], "ahead": [{"miou": 0.99}, {"miou": 0.90}]},
        "webcam": {"clip": [{"stray_share": 0.1}, {"stray_share": 0.1}]},
    }
    assert suite.worst_domain(result) == {"domain": "behind", "measure": "mIoU", "difference": -0.05}


def test_pooled_clips_and_their_summary_count_every_frame_still_and_moving_pair():
    first = suite.SequenceScore(strays=[0.0, 0.01, 0.003], edge_gaps=[0.0, 0.002, 0.0],
                                flickers=[0.02], lags=[0.01])
    second = suite.SequenceScore(strays=[0.0], edge_gaps=[0.0006], flickers=[0.04, 0.06],
                                 lags=[0.02, 0.06])
    both = suite.pooled([first, second])
    assert both.strays == [0.0, 0.01, 0.003, 0.0] and both.flickers == [0.02, 0.04, 0.06]
    assert both.edge_gaps == [0.0, 0.002, 0.0, 0.0006]
    assert both.lags == [0.01, 0.02, 0.06]
    # Two frames of four above 0.2 % stray; one above 0.1 % bottom-edge gap, mean gap 0.00065;
    # three still pairs, mean change 0.04; three moving pairs, mean lag 0.03.
    assert suite.clip_summary(both) == {"frames": 4, "stray_mean": 0.00325, "stray_frames": 2,
                                        "stray_share": 0.5, "edge_gap_mean": 0.00065,
                                        "edge_gap_frames": 1, "edge_gap_share": 0.25,
                                        "flicker": 0.04, "still_pairs": 3,
                                        "motion_lag": 0.03, "moving_pairs": 3}
    assert suite.clip_summary(suite.SequenceScore())["flicker"] is None
    one = suite.clip_summary(suite.SequenceScore(strays=[0.0], edge_gaps=[0.002]))
    assert one["edge_gap_frames"] == 1 and one["edge_gap_share"] == 1.0  # one frame of one
    assert suite.clip_summary(suite.SequenceScore())["motion_lag"] is None


def test_training_split_is_the_complement_of_the_held_out_rule(tmp_path):
    """Ten photos p0..p9 in each set: eg1800 scores its other.txt (p8, p9) and every 5th of its
    train.txt (p0..p7: p4); ccp_fashion every 10th (p9), coco_person every 5th (p4, p9), pelota
    every 4th (p3, p7). Training gets the rest of each pool, and eg1800 nothing outside its
    train.txt."""
    root = _tiny_data_root(tmp_path / "data")
    scored = {folder: sorted(Path(image).stem for d in suite.PHOTO_DOMAINS if d.folder == folder
                             for image, _ in suite.domain_pairs(root, d))
              for folder in {d.folder for d in suite.PHOTO_DOMAINS}}
    assert scored == {"eg1800": ["p4", "p8", "p9"], "ccp_fashion": ["p9"],
                      "coco_person": ["p4", "p9"], "pelota": ["p3", "p7"]}
    counts = suite.training_split(root, tmp_path / "splits")
    every = [f"p{i}" for i in range(10)]
    expected = {"eg1800": ["p0", "p1", "p2", "p3", "p5", "p6", "p7"],
                **{folder: [s for s in every if s not in scored[folder]]
                   for folder in ("ccp_fashion", "coco_person", "pelota")}}
    for folder, stems in expected.items():
        listed = (tmp_path / "splits" / folder / "train.txt").read_text().split()
        assert listed == stems, folder
        assert counts[folder] == len(stems)
        for name in ("images", "masks"):
            assert (tmp_path / "splits" / folder / name).resolve() == (root / folder / name).resolve()


def test_format_suite_puts_each_number_in_its_column():
    """The mIoU difference is the model's minus the peer's (paired holds the peer's minus the
    model's); each webcam column is the model's, then the peer's; the cost ratio is model over
    peer."""
    photo = {"n": 3, "miou": 0.9, "boundary_f": 0.5, "far_mean": 0.01, "far_share": 1 / 3}
    clip = {"frames": 10, "stray_mean": 0.002, "stray_share": 0.1, "flicker": 0.03, "still_pairs": 9,
            "motion_lag": 0.004, "moving_pairs": 3, "edge_gap_mean": 0.0005, "edge_gap_share": 0.3}
    result = {
        "models": ["w/ours.hdf5", "m/peer.tflite"], "tta": ["off", "mirror"],
        "photos": {"pelota": [photo, {**photo, "miou": 0.95, "far_mean": 0.0, "far_share": 0.0,
                                      "paired": {"miou_diff": 0.05, "miou_diff_se": 0.01}}]},
        "webcam": {"learn": [clip, {**clip, "stray_mean": 0.0, "stray_share": 0.0,
                                    "flicker": 0.01, "motion_lag": 0.002, "edge_gap_mean": 0.0,
                                    "edge_gap_share": 0.1}]},
        "cost": [{"ms": 2.0, "input": "256x144"}, {"ms": 8.0, "input": "256x256"}],
        "worst": {"domain": "pelota", "measure": "mIoU", "difference": -0.05},
    }
    lines = suite.format_suite(result).splitlines()
    assert lines[0] == "suite: ours.hdf5 against peer.tflite (--tta mirror)"
    row = next(line for line in lines if line.startswith("pelota"))
    assert row.split() == ["pelota", "3", "0.9000", "0.9500", "-0.0500", "0.0100", "0.500",
                           "0.500", "1.00", "0.00", "33.3%", "0.0%"]
    row = next(line for line in lines if line.startswith("learn"))
    assert row.split() == ["learn", "10", "0.200", "0.000", "10.0%", "0.0%", "3.000", "1.000", "9",
                           "0.400", "0.200", "3", "0.050", "0.000", "30.0%", "10.0%"]
    assert any(line.startswith("gap: in the bottom 1/16 of the frame") for line in lines)
    # A result written before motion lag and the bottom-edge gap were measured still prints,
    # without them.
    for name in ("motion_lag", "moving_pairs", "edge_gap_mean", "edge_gap_share"):
        del result["webcam"]["learn"][0][name]
    row = next(line for line in suite.format_suite(result).splitlines() if line.startswith("learn"))
    assert row.split()[-7:] == ["nan", "0.200", "0", "nan", "0.000", "nan%", "10.0%"]
    assert lines[-2] == ("cost: segmenter on a 1280x720 frame, median ms: ours.hdf5 2.00 (input "
                         "256x144), peer.tflite (--tta mirror) 8.00 (input 256x256), 0.25x")
    assert lines[-1] == "worst domain against the peer: pelota (mIoU, -0.0500)"


@needs_shared
def test_training_split_leaves_out_everything_the_suite_scores(tmp_path):
    root = SHARED / "data"
    counts = suite.training_split(root, tmp_path)
    for domain in suite.PHOTO_DOMAINS:
        scored = {Path(image).stem for image, _ in suite.domain_pairs(root, domain)}
        train = set((tmp_path / domain.folder / "train.txt").read_text().split())
        assert scored and not scored & train, domain.name
        assert counts[domain.folder] == len(train)
    test_stems = set((root / "eg1800" / "test.txt").read_text().split())
    assert not test_stems & set((tmp_path / "eg1800" / "train.txt").read_text().split())
    assert (tmp_path / "eg1800" / "images").resolve() == (root / "eg1800" / "images").resolve()


@needs_shared
def test_training_split_never_writes_into_the_data_root(tmp_path):
    root = tmp_path / "data"
    (root / "eg1800").mkdir(parents=True)
    for out in (root, root / "eg1800", root / "splits"):
        with pytest.raises(InputError, match="lies in the data root"):
            suite.training_split(root, out)
    assert sorted(p.name for p in root.iterdir()) == ["eg1800"]


def test_training_split_into_a_file_is_refused_in_one_line(tmp_path):
    out = tmp_path / "splits"
    out.write_text("a file\n")
    with pytest.raises(InputError, match=f"--training-split '{out}' is a file"):
        suite.training_split(tmp_path / "data", out)
    assert out.read_text() == "a file\n"


@needs_shared
def test_training_split_never_replaces_a_data_set_outside_the_root(tmp_path):
    """A folder beside the data root that holds the user's own copy of a set keeps its lists;
    the split's own earlier output is written over."""
    root = SHARED / "data"
    mine = tmp_path / "datasets"
    (mine / "pelota" / "masks").mkdir(parents=True)
    (mine / "pelota" / "train.txt").write_text("mine\n")
    with pytest.raises(InputError, match=f"--training-split '{mine / 'pelota'}' already holds files "
                                         "that no portrait data tool wrote"):
        suite.training_split(root, mine)
    assert sorted(p.name for p in mine.iterdir()) == ["pelota"]  # nothing else written either
    assert (mine / "pelota" / "train.txt").read_text() == "mine\n"
    out = tmp_path / "splits"
    first = suite.training_split(root, out)
    assert suite.training_split(root, out) == first


def _tiny_data_root(root: Path) -> Path:
    """A data root with each of the suite's photo sets: ten 8x8 photos and masks in each,
    eg1800 with its train.txt and other.txt."""
    import cv2

    for folder in sorted({d.folder for d in suite.PHOTO_DOMAINS}):
        (root / folder / "images").mkdir(parents=True)
        (root / folder / "masks").mkdir()
        for i in range(10):
            cv2.imwrite(str(root / folder / "images" / f"p{i}.png"), np.zeros((8, 8, 3), np.uint8))
            cv2.imwrite(str(root / folder / "masks" / f"p{i}.png"), np.zeros((8, 8), np.uint8))
    (root / "eg1800" / "train.txt").write_text("".join(f"p{i}\n" for i in range(8)))
    (root / "eg1800" / "other.txt").write_text("p8\np9\n")
    return root


def test_training_split_checks_every_set_before_writing_any(tmp_path, capsys):
    """A photo in the last set (pelota) whose stem starts with '#' was refused only once the
    sets before it were written, as was a folder of files where its images/ link belongs: both
    are refused in one line with nothing written, and an earlier split is left as it was."""
    root = _tiny_data_root(tmp_path / "data")
    for folder in ("images", "masks"):
        (root / "pelota" / folder / "p0.png").rename(root / "pelota" / folder / "#p0.png")
    out = tmp_path / "splits"
    assert suite.main(["--training-split", str(out), "--data", str(root)]) == 2
    assert not out.exists()  # the sets before pelota were written
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"error: cannot list the photo '{root / 'pelota' / 'images' / '#p0.png'}' in train.txt as "
        "'#p0': the stem starts with '#', which a list file reads as a comment; rename the photo "
        "and its mask in the data root"], err
    # An earlier split keeps its lists; a folder of files in pelota is refused first too.
    for folder in ("images", "masks"):
        (root / "pelota" / folder / "#p0.png").rename(root / "pelota" / folder / "p0.png")
    assert suite.main(["--training-split", str(out), "--data", str(root)]) == 0
    (out / "ccp_fashion" / "train.txt").write_text("p0\n")  # told apart from a new one
    (out / "pelota" / "images").unlink()
    (out / "pelota" / "images").mkdir()
    (out / "pelota" / "images" / "mine.png").write_bytes(b"")
    assert suite.main(["--training-split", str(out), "--data", str(root)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (f"error: --training-split: '{out / 'pelota' / 'images'}' is a folder of "
                       "files, where a link to the data root's pelota/images belongs; choose a "
                       "new folder"), err
    assert (out / "ccp_fashion" / "train.txt").read_text() == "p0\n"


@pytest.mark.slow
def test_suite_command_prints_tables_and_one_json_line():
    command = [sys.executable, "-m", "portrait.evaluate", "--suite", "--model", str(SELFIE),
               "--compare", str(SELFIE), "--max-items", "3", "--conditions", "--no-progress", "-q"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.returncode == 0, result.stderr[-2000:]
    data = json.loads(result.stdout)
    assert set(data["photos"]) == {d.name for d in suite.PHOTO_DOMAINS}
    assert set(data["webcam"]) == set(suite.WEBCAM_CLIPS) | {"all held-out clips"}
    assert set(data["webcam_model_alone"]) == set(data["webcam"])
    for a, b in data["photos"].values():
        assert a["n"] == 3 and a["miou"] == b["miou"]  # the same model twice scores the same
        assert a["far_share"] == b["far_share"] and 0.0 <= a["far_mean"] < 1.0
        assert b["paired"]["miou_diff"] == 0.0
    pooled = data["webcam"]["all held-out clips"][0]
    assert pooled["frames"] == 3 * len(suite.WEBCAM_CLIPS)
    assert 0.0 <= pooled["stray_mean"] < 1.0
    assert 0.0 <= pooled["edge_gap_mean"] < 1.0
    assert pooled["edge_gap_share"] == round(pooled["edge_gap_frames"] / pooled["frames"], 4)
    for clip in suite.WEBCAM_CLIPS:  # the same model twice drops the edge in the same frames
        a, b = data["webcam"][clip]
        assert a["edge_gap_mean"] == b["edge_gap_mean"] and a["edge_gap_frames"] == b["edge_gap_frames"]
    assert data["cost"][0]["input"] == "256x256"
    assert list(data["webcam_conditions"]) == [c.name for c in CAMERA_CONDITIONS]
    for a, b in data["webcam_conditions"].values():
        assert a == b and a["frames"] == 3 * len(suite.WEBCAM_CLIPS)
    assert "other cameras (held-out clips, app path)" in result.stderr
    assert "worst domain against the peer" in result.stderr
    assert "webcam (held-out clips)" in result.stderr
    assert "model alone (--people all)" in result.stderr
    assert "far: matte farther than 5% of the long side" in result.stderr
    assert "gap: in the bottom 1/16 of the frame" in result.stderr


def test_suite_needs_a_peer():
    result = subprocess.run([sys.executable, "-m", "portrait.evaluate", "--suite", "--model", "x.hdf5"],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "--suite needs --compare PEER" in result.stderr
    assert "Traceback" not in result.stderr


@needs_shared
def test_training_split_command_writes_the_lists(tmp_path):
    result = subprocess.run([sys.executable, "-m", "portrait.training.suite", "--training-split",
                             str(tmp_path), "--data", str(SHARED / "data")],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert len((tmp_path / "eg1800" / "train.txt").read_text().split()) == 1290 - 258
    assert "ccp_fashion: 904 training stems" in result.stderr


@pytest.mark.skipif(not SELFIE.is_file(), reason="../shared/models/selfie_segmentation.tflite not present")
def test_ctrl_c_in_the_suite_prints_the_domains_and_clips_scored_whole(tmp_path):
    """A real SIGINT once the first webcam clip starts (every photo domain is scored by then):
    the command exits 130 with the tables on stderr and one JSON line of what was scored whole,
    marked "stopped", as python -m portrait.evaluate does without --suite; no cost, no verdict."""
    import signal

    from conftest import write_video

    root = _tiny_data_root(tmp_path / "data")
    (root / "videos").mkdir()
    for name in suite.WEBCAM_CLIPS:
        write_video(root / suite.CLIP_PATTERN.format(name), frames=2)
    command = [sys.executable, "-m", "portrait.evaluate", "--suite", "--model", str(SELFIE),
               "--compare", str(SELFIE), "--data", str(root), "--max-items", "1", "--no-progress"]
    # Ctrl-C as in a terminal's foreground: a test run in the background inherits SIGINT ignored.
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3",
                                               "PYTHONUNBUFFERED": "1"},
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        err = []
        for line in process.stderr:
            err.append(line)
            if "suite: webcam clip asl_learn.mkv" in line:
                process.send_signal(signal.SIGINT)
                break
        out, rest = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    err = "".join(err) + rest
    assert process.returncode == 130, err[-3000:]
    assert "Traceback" not in err
    data = json.loads(out)  # one line
    assert data["stopped"] is True and "cost" not in data and "worst" not in data
    assert list(data["photos"]) == [d.name for d in suite.PHOTO_DOMAINS]
    for a, b in data["photos"].values():
        assert a["n"] == b["n"] == 1 and a["miou"] == b["miou"]
    clips = list(data.get("webcam", {}))
    assert clips == list(suite.WEBCAM_CLIPS[:len(clips)])  # whole clips, in order
    for a, b in data.get("webcam", {}).values():
        assert a == b and a["frames"] == 1
    assert "Ctrl-C: stopped after 5 photo domains and " in err
    assert "photos (held out)" in err
    assert "worst domain against the peer: not judged (stopped before every domain was scored)" in err


class SignalOnce(logging.Handler):
    """Sends this process ``signum`` at the first log record ``when`` picks: a real signal at a
    point of the run that the log names, with no clock involved."""

    def __init__(self, signum: int, when: Callable[[logging.LogRecord], bool]):
        super().__init__()
        self.signum, self.when, self.sent = signum, when, False

    def emit(self, record: logging.LogRecord) -> None:
        if not self.sent and self.when(record):
            self.sent = True
            os.kill(os.getpid(), self.signum)


def _suite_stopped(root: Path, signum: int, when: Callable[[logging.LogRecord], bool],
                   capfd, caplog) -> tuple[int, dict, str, list[str]]:
    """``python -m portrait.evaluate --suite`` (in this process; MediaPipe's model against
    itself) on ``root``, given the held-out clips, sent ``signum`` at the first log record that
    ``when`` picks: its exit code, JSON line, stderr and log messages."""
    from conftest import write_video
    from portrait.training import evaluate

    (root / "videos").mkdir()
    for name in suite.WEBCAM_CLIPS:
        write_video(root / suite.CLIP_PATTERN.format(name), frames=2)
    trigger = SignalOnce(signum, when)
    logger = logging.getLogger("portrait")
    logger.addHandler(trigger)
    try:
        with caplog.at_level(logging.INFO, logger="portrait"):
            code = evaluate.main(["--suite", "--model", str(SELFIE), "--compare", str(SELFIE),
                                  "--data", str(root), "--no-progress"])
    finally:
        logger.removeHandler(trigger)
    assert trigger.sent  # the signal was sent, not the run ended
    out, err = capfd.readouterr()
    return code, json.loads(out), err, caplog.messages


@pytest.mark.skipif(not SELFIE.is_file(), reason="../shared/models/selfie_segmentation.tflite not present")
def test_sighup_in_the_suite_prints_the_domains_scored_whole_and_exits_129(tmp_path, capfd,
                                                                           caplog):
    """A real SIGHUP (the terminal closed) as the second photo domain starts: as after Ctrl-C,
    the tables and the JSON line of the first domain, marked "stopped", no cost, no verdict;
    the exit code is 128 + SIGHUP. It was killed with no line."""
    second = suite.PHOTO_DOMAINS[1].name
    code, data, err, messages = _suite_stopped(
        _tiny_data_root(tmp_path / "data"), signal.SIGHUP,
        lambda record: record.getMessage().startswith(f"suite: {second}, "), capfd, caplog)
    assert code == 128 + signal.SIGHUP, err[-3000:]
    assert data["stopped"] is True and "cost" not in data and "worst" not in data
    assert list(data["photos"]) == [suite.PHOTO_DOMAINS[0].name] and "webcam" not in data
    for a, b in data["photos"].values():
        assert a["n"] == b["n"] == 2 and a["miou"] == b["miou"]  # other.txt: p8 and p9
    assert ("SIGHUP: stopped after 1 photo domain and 0 webcam clip runs; the scores of those "
            "follow, marked \"stopped\"") in messages
    assert "photos (held out)" in err and "Traceback" not in err


@pytest.mark.skipif(not SELFIE.is_file(), reason="../shared/models/selfie_segmentation.tflite not present")
def test_a_domain_cut_short_is_left_out_and_the_domains_before_it_are_reported(tmp_path, capfd,
                                                                              caplog):
    """A real SIGTERM in the middle of a photo domain (coco_person, held out: p4 and p9), once
    its first photo is scored and as its second is read (its mask, of another size than the
    photo, is named in a warning): the JSON line and the tables hold the three domains before
    it, each whole, and nothing of the cut one, whose one photo would pass for the domain's
    score; the log counts the three."""
    root = _tiny_data_root(tmp_path / "data")
    cut = suite.PHOTO_DOMAINS[3]
    assert cut.folder == "coco_person" and [Path(image).stem for image, _ in
                                            suite.domain_pairs(root, cut)] == ["p4", "p9"]
    cv2.imwrite(str(root / cut.folder / "masks" / "p9.png"), np.zeros((16, 16), np.uint8))
    code, data, err, messages = _suite_stopped(
        root, signal.SIGTERM,
        lambda record: "p9.png' is 16x16, its image 8x8: resizing" in record.getMessage(),
        capfd, caplog)
    assert code == 128 + signal.SIGTERM, err[-3000:]
    assert data["stopped"] is True and "cost" not in data and "worst" not in data
    whole = suite.PHOTO_DOMAINS[:3]
    assert list(data["photos"]) == [d.name for d in whole]
    for domain, (a, b) in zip(whole, data["photos"].values()):
        assert a["n"] == b["n"] == len(suite.domain_pairs(root, domain)) and a["miou"] == b["miou"]
    assert ("SIGTERM: stopped after 3 photo domains and 0 webcam clip runs; the scores of those "
            "follow, marked \"stopped\"") in messages
    assert all(d.name in err for d in whole) and cut.name not in err  # the table
    assert "Traceback" not in err


def test_training_split_command_counts_one_stem_in_the_singular(tmp_path, caplog):
    """A set left with one training stem is "1 training stem", others "N training stems"."""
    import logging

    root = _tiny_data_root(tmp_path / "data")
    # EG1800 holds out other.txt and every 5th of train.txt: p0, p1, p2 and p4, leaving p3
    (root / "eg1800" / "train.txt").write_text("p0\np1\np2\np3\np4\n")
    (root / "eg1800" / "other.txt").write_text("p0\np1\np2\n")
    with caplog.at_level(logging.INFO, logger="portrait"):
        assert suite.main(["--training-split", str(tmp_path / "splits"), "--data", str(root)]) == 0
    lines = [r.getMessage() for r in caplog.records]
    assert f"eg1800: 1 training stem in {tmp_path / 'splits' / 'eg1800' / 'train.txt'}" in lines
    assert f"ccp_fashion: 9 training stems in {tmp_path / 'splits' / 'ccp_fashion' / 'train.txt'}" in lines
