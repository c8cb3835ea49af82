"""Tests for portrait.framing on synthetic clips (a disc for a person): a moving person stays
centred, a still one gives a constant crop, an empty frame holds and then eases back to the
whole frame, the zoom limit holds, the output keeps its size, an arm raised for a moment leaves
the zoom alone while someone who comes closer is followed (and, a known limit, two postures
taken about equally often pump the zoom); framing runs on the frames' times (a
stream that drops frames glides and windows as one that doesn't); the spring, the person box, and
the app's --framing end to end (the framed matte is written)."""

import dataclasses
import json
import statistics

import cv2
import numpy as np
import pytest

from portrait.cli import main
from portrait.framing import (
    AutoFramer,
    FramingState,
    _median_with,
    crop_matrix,
    person_box,
    person_extent,
    person_outside,
    spring_step,
    step,
    target_crop,
    whole_frame,
)
from portrait.composite import make_background
from portrait.controls import LiveState
from portrait.options import (
    CompositeOptions,
    FramingOptions,
    PipelineOptions,
    RefineOptions,
    SegmentOptions,
)
from portrait.pipeline import FrameProcessor, Packet
from portrait.refine import Refiner
from portrait.segment import create_segmenter

W, H = 320, 180
FPS = 30.0
ON = FramingOptions(enabled=True)


def person(x, y, radius=20, size=(W, H)):
    """A frame and its matte: a bright textured disc (the person) at (x, y) on a dark room."""
    width, height = size
    alpha = np.zeros((height, width), np.uint8)
    cv2.circle(alpha, (round(x), round(y)), radius, 255, -1)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 60, (height, width, 3), dtype=np.uint8)
    image[alpha > 0] = 200
    return image, alpha


def centre_x(alpha):
    """The person's horizontal centre in a matte, as a fraction of its width."""
    moments = cv2.moments((alpha > 127).astype(np.uint8), binaryImage=True)
    return moments["m10"] / moments["m00"] / alpha.shape[1]


def run(framer, frames):
    """Frame each (image, alpha); returns the outputs and the crops."""
    outputs, crops = [], []
    for image, alpha in frames:
        framed_image, framed_alpha = framer(image, alpha)
        assert framed_image.shape == image.shape and framed_alpha.shape == alpha.shape
        outputs.append((framed_image.copy(), framed_alpha.copy()))
        crops.append(framer.state.crop)
    return outputs, crops


def test_a_person_moving_right_stays_centred():
    xs = np.linspace(0.15 * W, 0.85 * W, 150)  # across 70 % of the frame in 5 s
    frames = [person(x, H / 2) for x in xs]
    outputs, _ = run(AutoFramer(ON, fps=FPS), frames)
    unframed = np.mean([abs(centre_x(alpha) - 0.5) for _, alpha in frames])
    framed = np.mean([abs(centre_x(alpha) - 0.5) for _, alpha in outputs])
    assert unframed > 0.15
    assert framed <= 0.6 * unframed, (framed, unframed)


def test_a_still_person_gives_a_constant_crop_despite_small_jitter():
    rng = np.random.default_rng(3)
    frames = [person(0.3 * W + rng.uniform(-2, 2), 0.6 * H + rng.uniform(-2, 2),
                     radius=20 + int(rng.integers(-1, 2))) for _ in range(90)]
    outputs, crops = run(AutoFramer(ON, fps=FPS), frames)
    assert crops[0] != crops[-1]  # it did frame the person
    settled = crops[45:]
    assert all(crop == settled[0] for crop in settled)
    # the same crop of the same still picture: the same output
    still = AutoFramer(ON, fps=FPS)
    outs, _ = run(still, [person(0.3 * W, 0.6 * H)] * 60)
    for image, alpha in outs[45:]:
        np.testing.assert_array_equal(image, outs[-1][0])
        np.testing.assert_array_equal(alpha, outs[-1][1])


def test_nobody_in_the_frame_holds_then_eases_back_to_the_whole_frame():
    framer = AutoFramer(ON, fps=FPS)
    run(framer, [person(0.7 * W, 0.4 * H)] * 60)
    framed = framer.state.crop
    assert framer.zoom > 1.5
    empty = person(0, 0, radius=0)
    empty[1][:] = 0
    hold_frames = int(ON.hold_s * FPS) - 1
    _, crops = run(framer, [empty] * hold_frames)
    assert all(crop == framed for crop in crops)  # holds
    _, crops = run(framer, [empty] * 10)
    zooms = [H / crop[2] for crop in crops]
    assert all(a >= b for a, b in zip(zooms, zooms[1:])) and zooms[-1] < zooms[0]  # eases out
    run(framer, [empty] * int(2 * ON.glide_s * FPS))
    image, alpha = empty
    out_image, out_alpha = framer(image, alpha)
    assert framer.state.crop == whole_frame((W, H))
    assert out_image is image and out_alpha is alpha  # the whole frame, untouched


@pytest.mark.parametrize("max_zoom", [1.0, 1.5, 2.0, 3.0])
def test_zoom_never_exceeds_the_limit(max_zoom):
    options = FramingOptions(enabled=True, max_zoom=max_zoom)
    framer = AutoFramer(options, fps=FPS)
    zooms = []
    for i in range(80):  # a small person darting about: a strong pull to zoom in
        image, alpha = person(W * (0.2 + 0.6 * (i // 20 % 2)), H * 0.5, radius=16)
        framed_image, framed_alpha = framer(image, alpha)
        assert framed_image.shape == image.shape and framed_alpha.shape == alpha.shape
        zooms.append(framer.zoom)
    assert max(zooms) <= max_zoom + 1e-9
    assert zooms[-1] == pytest.approx(max_zoom, abs=0.02)
    # the output shows the person magnified by the zoom
    radius_out = np.sqrt((framed_alpha > 127).sum() / np.pi)
    assert radius_out == pytest.approx(16 * zooms[-1], rel=0.1)


def test_output_size_is_input_size_for_odd_sizes_and_matte_only():
    size = (163, 97)
    framer = AutoFramer(ON, fps=FPS)
    for i in range(30):
        image, alpha = person(40 + i, 60, radius=12, size=size)
        framed_image, framed_alpha = framer(image, alpha)
        assert framed_image.shape == image.shape and framed_image.dtype == np.uint8
        assert framed_alpha.shape == alpha.shape and framed_alpha.dtype == np.uint8
    assert framer.zoom > 1
    nothing, framed_alpha = framer(None, alpha)  # --matte: only the matte is framed
    assert nothing is None and framed_alpha.shape == alpha.shape


def test_switching_off_glides_back_and_then_passes_frames_through():
    framer = AutoFramer(FramingOptions(enabled=False), fps=FPS)
    image, alpha = person(0.25 * W, 0.5 * H)
    out_image, out_alpha = framer(image, alpha)
    assert out_image is image and out_alpha is alpha  # off: untouched
    framer.enabled = True
    run(framer, [(image, alpha)] * 30)
    assert framer.zoom > 1.5
    framer.enabled = False
    zooms = []
    for index in range(60):
        if index == 3:
            framer.cut()  # a loop's seam while gliding out: off, nobody is framed at once
        framer(image, alpha)
        zooms.append(framer.zoom)
    assert zooms[0] > 1.2 and zooms[-1] == 1.0
    assert all(a >= b for a, b in zip(zooms, zooms[1:]))
    out_image, out_alpha = framer(image, alpha)
    assert out_image is image and out_alpha is alpha


def test_photos_are_framed_at_once():
    framer = AutoFramer(ON, fps=None)
    image, alpha = person(0.7 * W, 0.5 * H)
    _, framed_alpha = framer(image, alpha)
    assert abs(centre_x(framed_alpha) - 0.5) < 0.02
    assert framer.zoom == pytest.approx(2.0)
    # each on its own, times or none: the next photo's person at once, no glide from the last
    left = person(0.3 * W, 0.5 * H)
    for time_s in (None, 1.0, 2.0):
        framer(*left, time_s)
        assert framer.state.crop == target_crop(person_box(left[1]), (W, H), ON)
        framer(image, alpha, None if time_s is None else time_s + 0.5)


def test_a_cut_frames_the_next_shots_person_at_once_not_after_a_glide():
    """A looped clip jumps from its last frame to its first: the crop cuts to where the person
    is now, as the next frame of a glide it would be far off (and a reset to the whole frame
    would show a zoom at every loop)."""
    def settled_on_the_left():
        framer = AutoFramer(ON, fps=FPS)
        run(framer, [person(0.3 * W, 0.5 * H)] * 60)
        return framer

    right = person(0.7 * W, 0.5 * H)
    target = target_crop(person_box(right[1]), (W, H), ON)
    cut = settled_on_the_left()
    cut.cut()
    _, framed_alpha = cut(*right)
    assert cut.state.crop == target
    assert abs(centre_x(framed_alpha) - 0.5) < 0.02 and cut.zoom == pytest.approx(2.0)
    glided = settled_on_the_left()
    glided(*right)  # the crop is still near the left, the person out of it: a glide
    assert max(abs(a - b) for a, b in zip(glided.state.crop, target)) > 0.2 * W
    _, framed_alpha = cut(*person(0.72 * W, 0.5 * H))  # after the cut, the glide as before
    assert abs(centre_x(framed_alpha) - 0.5) < 0.05


def test_a_cut_to_an_empty_frame_forgets_the_last_shots_sizes():
    """A loop's seam onto a frame with nobody in it: the next person is sized on their own, not
    by the median of the last shot's 5 s, which would hold its zoom for 2.5 s."""
    framer = AutoFramer(ON, fps=FPS)
    run(framer, [person(0.5 * W, 0.5 * H, radius=45)] * 150)
    held = framer.state.crop
    assert held != whole_frame((W, H))
    framer.cut()
    framer(*person(-500, -500))  # nobody in the frame
    assert framer.state.crop == held  # held, as for any frame with nobody in it
    small = person(0.5 * W, 0.5 * H, radius=25)
    run(framer, [small] * 10)
    wanted = target_crop(person_box(small[1]), (W, H), ON)[2]
    assert framer.state.heights == (wanted,) * 10
    assert framer.state.aim[2] == pytest.approx(wanted)


def test_step_refuses_a_time_step_that_is_not_above_0():
    state = FramingState.whole((W, H))
    for dt_s in (0.0, -1 / FPS, float("nan")):
        with pytest.raises(ValueError, match=r"^dt_s = .*: expected the time since the last frame"):
            step(state, (100, 40, 80, 100), (W, H), ON, dt_s)


def test_a_cut_while_framing_is_off_leaves_the_whole_frame():
    framer = AutoFramer(FramingOptions(enabled=False), fps=FPS)
    framer.cut()
    image, alpha = person(0.7 * W, 0.5 * H)
    framed_image, _ = framer(image, alpha)
    assert framer.whole and np.array_equal(framed_image, image)


def test_spring_is_critically_damped():
    glide_s = 0.6
    position, velocity = (0.0, 0.0, 0.0), (0.0, 0.0, 0.0)
    trace = []
    for _ in range(int(glide_s * FPS)):
        position, velocity = spring_step(position, velocity, (100.0, -50.0, 10.0), 1 / FPS, glide_s)
        trace.append(position[0])
    assert all(0 < a < b <= 100 for a, b in zip(trace, trace[1:]))  # no overshoot
    assert trace[-1] > 98  # settles to 2 % in about glide_s
    # the frame rate only changes how often it is sampled, not where it is at a given time
    coarse = (0.0, 0.0, 0.0), (0.0, 0.0, 0.0)
    for _ in range(9):
        coarse = spring_step(*coarse, (100.0, -50.0, 10.0), 1 / 15, glide_s)
    assert coarse[0][0] == pytest.approx(trace[17], rel=1e-9)


def test_dead_zone_keeps_the_aim_while_the_person_moves_a_little():
    size = (W, H)
    state = FramingState.whole(size)
    box = (100, 60, 40, 40)
    state = step(state, box, size, ON, 1 / FPS)
    aim = state.aim
    zone_px = ON.dead_zone * aim[2] * W / H  # a fraction of the output's width, in frame pixels
    nudged = step(state, (100 + int(0.8 * zone_px), 60, 40, 40), size, ON, 1 / FPS)
    assert nudged.aim == aim
    moved = step(state, (100 + int(1.5 * zone_px), 60, 40, 40), size, ON, 1 / FPS)
    assert moved.aim[0] > aim[0]


def test_person_box_ignores_stray_specks_and_frames_two_people_together():
    alpha = np.zeros((H, W), np.uint8)
    cv2.circle(alpha, (80, 100), 30, 255, -1)
    alpha[5:9, 300:304] = 255  # a speck the model took for a person
    step = W // 80  # the thumbnail's precision
    x, y, w, h = person_box(alpha)
    assert x == pytest.approx(50, abs=step) and x + w == pytest.approx(110, abs=step)
    cv2.circle(alpha, (240, 100), 28, 255, -1)  # a second person
    x, y, w, h = person_box(alpha)
    assert x == pytest.approx(50, abs=step) and x + w == pytest.approx(268, abs=step)
    assert person_box(np.zeros((H, W), np.uint8)) is None
    assert person_box(alpha * 0 + (np.arange(W) == 5).astype(np.uint8) * 255) is None


def test_target_crop_by_hand():
    # A tall box (40 x 78, not at the bottom): its height fills 0.65 of the crop's: 78 / 0.65.
    assert target_crop((130, 40, 40, 78), (W, H), ON) == pytest.approx((150, 79, 120))
    # A wide box (120 x 50): its width fills 0.65 of the crop's width, 120 px of a 320 px wide
    # frame being 67.5 of its 180 rows: 67.5 / 0.65 = 103.8 rows.
    assert target_crop((100, 40, 120, 50), (W, H), ON) == pytest.approx((160, 65, 67.5 / 0.65))


def test_the_crop_stays_inside_the_frame():
    """A person at the left edge: the crop is moved right to start at the frame's edge rather
    than show a smear of its first column (the warp replicates the border)."""
    crop_h = 60 / ON.fill
    half_w = crop_h * W / H / 2
    assert target_crop((0, 60, 40, 60), (W, H), ON) == pytest.approx((half_w, 90, crop_h))
    assert target_crop((W - 40, 60, 40, 60), (W, H), ON) == pytest.approx((W - half_w, 90, crop_h))


def test_person_box_leaves_out_a_half_sure_region_and_a_lone_speck():
    alpha = np.zeros((H, W), np.uint8)
    cv2.circle(alpha, (80, 100), 30, 255, -1)
    alpha[60:140, 200:260] = 150  # a chair the model is only half sure of, as big as the person
    step_px = W // 80
    x, y, w, h = person_box(alpha)
    assert x == pytest.approx(50, abs=step_px) and x + w == pytest.approx(110, abs=step_px)
    # Nobody but a sure speck under min_area (1 % of the frame): 16 x 16 = 0.44 %.
    speck = np.zeros((H, W), np.uint8)
    speck[40:56, 200:216] = 255
    assert person_box(speck) is None
    speck[40:72, 200:232] = 255  # 32 x 32 = 1.8 %: a person
    assert person_box(speck) == (200, 40, 32, 32)


def test_zoom_dead_zone_keeps_the_zoom_while_the_person_grows_a_little():
    size = (W, H)
    each_frame = FramingOptions(enabled=True, zoom_window_s=0.0)  # no median: the dead zone alone
    state = step(FramingState.whole(size), (140, 40, 40, 80), size, each_frame, 1 / FPS)
    aim = state.aim  # 80 / 0.65 = 123 rows
    a_little = step(state, (140, 40, 40, 84), size, each_frame, 1 / FPS)  # 5 % taller: within 10 %
    assert a_little.aim == aim
    much = step(state, (140, 40, 40, 96), size, each_frame, 1 / FPS)  # 20 % taller
    assert much.aim[2] == pytest.approx(96 / ON.fill)


def webcam_body(shoulders=110, arm_to=None, elbows=None):
    """A frame and matte of someone cut off by the bottom of the frame, as a webcam sees them:
    a torso ``shoulders`` px wide and a head above it, and optionally an arm stretched out
    sideways from the right shoulder to column ``arm_to`` (a wave), or elbows ``elbows`` px
    apart at the hips, below the head-and-shoulders crop (hands on the hips)."""
    alpha = np.zeros((H, W), np.uint8)
    scale = shoulders / 110
    top = round(H - 110 * scale)
    left, right = round(W / 2 - shoulders / 2), round(W / 2 + shoulders / 2)
    cv2.rectangle(alpha, (left, top), (right, H), 255, -1)
    cv2.circle(alpha, (W // 2, round(top - 16 * scale)), round(20 * scale), 255, -1)
    if arm_to is not None:
        cv2.rectangle(alpha, (right, top + 4), (arm_to, top + 14), 255, -1)
    if elbows is not None:
        cv2.rectangle(alpha, (round(W / 2 - elbows / 2), round(top + 60 * scale)),
                      (round(W / 2 + elbows / 2), round(top + 76 * scale)), 255, -1)
    image = np.full((H, W, 3), 40, np.uint8)
    image[alpha > 0] = 200
    return image, alpha


@pytest.mark.parametrize("arm_frames", [10, 30, 60])
def test_an_arm_raised_for_up_to_two_seconds_leaves_the_zoom_alone(arm_frames):
    """An arm stretched out to the side for 1/3 s to 2 s (a wave, a sign, a stretch) nearly
    doubles the person's box; the zoom stays within 2 % of where it was, as it does not framing
    each frame on its own (``zoom_window_s=0``), where it zooms out by a third."""
    still, waving = webcam_body(), webcam_body(arm_to=W - 20)
    before = int(ON.zoom_window_s * FPS)  # still for a whole window first
    frames = [still] * before + [waving] * arm_frames + [still] * 60
    zooms = {}
    for window_s in (ON.zoom_window_s, 0.0):
        framer = AutoFramer(FramingOptions(enabled=True, zoom_window_s=window_s), fps=FPS)
        zooms[window_s] = [framer(image, alpha) and framer.zoom for image, alpha in frames]
    settled = zooms[ON.zoom_window_s][before - 1]
    assert settled > 1.5  # framed head and shoulders
    assert all(abs(zoom / settled - 1) <= 0.02 for zoom in zooms[ON.zoom_window_s][before:])
    assert min(zooms[0.0][before:]) < 0.75 * zooms[0.0][before - 1]


@pytest.mark.parametrize("arm_s", [1.0, 2.0, 2.4])
@pytest.mark.parametrize("after_cut", [False, True])
def test_an_arm_raised_in_the_first_seconds_leaves_the_zoom_alone(arm_s, after_cut):
    """Half a second after someone appears (or after a cut), an arm is stretched out for 1 s to
    2.4 s (less than half the 5 s window): the part of the window before they appeared counts
    as their first size, so the zoom stays within 5 % of the first framing, as it does later;
    the first frame's aim already has the zoom that frames them."""
    still, waving = webcam_body(), webcam_body(arm_to=W - 20)
    framer = AutoFramer(ON, fps=FPS)
    if after_cut:
        run(framer, [webcam_body(150)] * 90)  # another shot, framed wider
        framer.cut()
    framer(*still)
    first = target_crop(person_box(still[1]), (W, H), ON)
    assert framer.state.aim[2] == first[2]  # (its centre may lie inside the dead zone)
    first_zoom = H / first[2]
    assert first_zoom > 1.5  # head and shoulders: an arm nearly doubling the box would show
    _, crops = run(framer, [still] * 14 + [waving] * round(arm_s * FPS) + [still] * 60)
    zooms = [H / crop[2] for crop in crops[15:]]  # from the arm on (the glide in has settled)
    assert all(abs(zoom / first_zoom - 1) <= 0.05 for zoom in zooms), min(zooms) / first_zoom


def test_a_young_window_counts_its_missing_part_as_the_first_size():
    """A 1 s window at 4 frames a second holds 4 sizes: on the 2nd frame after someone appears
    it holds the first size 3 times and the new one once (median: the first size), on the 3rd
    2 and 2 (the mean of the two), on the 4th the new one 3 times (the new size); without the
    missing part counted, the 2nd frame took the mean and the 3rd the new size."""
    size, small, tall = (W, H), (140, 60, 40, 60), (120, 30, 80, 120)
    small_h, tall_h = target_crop(small, size, ON)[2], target_crop(tall, size, ON)[2]
    assert (small_h, tall_h) == (pytest.approx(60 / 0.65), H)
    options = dataclasses.replace(ON, zoom_window_s=1.0)
    state, aims = FramingState.whole(size), []
    for box in (small, tall, tall, tall):
        state = step(state, box, size, options, 0.25, area=0.1)
        aims.append(state.aim[2])
    assert aims == pytest.approx([small_h, small_h, (small_h + tall_h) / 2, tall_h])


def test_the_median_with_copies_of_a_size_is_statistics_median_of_them_all():
    rng = np.random.default_rng(1)
    for length in (1, 2, 5, 8):
        values = tuple(float(v) for v in rng.integers(0, 6, length))
        for extra in (-1.0, 2.0, 2.5, 9.0):
            for count in (0, 1, 2, 7):
                assert _median_with(values, extra, count) == statistics.median(
                    values + (extra,) * count), (values, extra, count)


def test_two_postures_alternating_at_one_share_leave_the_zoom_alone_but_half_and_half_pumps():
    """A known limit (held-out asl_want in framing_study: 9.8 zoom turns a minute). A webcam
    signer holds the hands on the hips (elbows out, below the crop: the box 1.5x as wide, the
    area only 7 % more, so not "came closer") for a share of every 3 s and in front for the
    rest: the sizes wanted split in two. At half and half, the 5 s median crosses the gap
    between them (past the 10 % dead zone) each time the share in the window swings past half:
    after the first window the zoom turns between the two sizes every 1.5 s or so; at 40 % or
    60 % the share never crosses half and the zoom keeps one size. (Holding the zoom while it
    lies in the window's middle third stopped this, and asl_want's turns, but was not adopted:
    asl_want's one move off her first size left its width std at 3.49 %, over the 2.55 % its
    rule asked.)"""
    front, hips = webcam_body(), webcam_body(elbows=160)
    front_h, hips_h = (target_crop(person_box(a), (W, H), ON)[2] for _, a in (front, hips))
    assert hips_h > 1.4 * front_h
    assert person_extent(hips[1])[1] < 1.1 * person_extent(front[1])[1]

    def aim_changes(hips_share, period_s=3.0):
        framer, aims = AutoFramer(ON, fps=FPS), []
        for index in range(round(30 * FPS)):
            at_s = index / FPS % period_s
            framer(*(hips if at_s < hips_share * period_s else front))
            aims.append(framer.state.aim[2])
        steady = aims[round(ON.zoom_window_s * FPS):]
        return [after for before, after in zip(steady, steady[1:]) if after != before]

    pumping = aim_changes(0.5)
    assert len(pumping) >= 15, pumping  # 34 in 25 s, each crossing by the two's mean
    assert min(pumping) == pytest.approx(front_h) and max(pumping) > 0.9 * hips_h
    assert aim_changes(0.4) == aim_changes(0.6) == []


@pytest.mark.xfail(strict=True, reason="known limit: two postures held about equally often pump "
                   "the zoom (held-out asl_want: 9.8 turns a minute); see the test above")
def test_two_postures_held_half_and_half_keep_one_zoom():
    """What a viewer wants of the case above: one zoom, whatever share each posture has. Strict:
    a change that fixes the limit makes this pass, and the marker must go."""
    front, hips = webcam_body(), webcam_body(elbows=160)
    framer, aims = AutoFramer(ON, fps=FPS), []
    for index in range(round(30 * FPS)):
        framer(*(hips if index / FPS % 3.0 < 1.5 else front))
        aims.append(framer.state.aim[2])
    steady = aims[round(ON.zoom_window_s * FPS):]
    assert len(set(steady)) <= 2  # at most one settling move after the first window


def test_someone_who_comes_closer_in_their_first_second_is_followed():
    """Coming 1.5x closer 1 s after appearing more than doubles the area, against a window
    whose missing part is the first (smaller) area: framed within 1.5 s, not after 2.5 s."""
    near, nearer = webcam_body(110), webcam_body(165)
    framer = AutoFramer(ON, fps=FPS)
    run(framer, [near] * 30)
    _, crops = run(framer, [nearer] * int(1.5 * FPS))
    wanted = target_crop(person_box(nearer[1]), (W, H), ON)
    assert wanted[2] > 1.3 * crops[0][2]
    assert crops[-1] == pytest.approx(wanted, rel=0.03)


def glide_s(step_s, timed=True):
    """A person settled on the left steps to the right at 2 s, in a stream of frames ``step_s``
    apart (2/30 s: a live run at 30 fps that dropped every other frame), given their times or
    not (``timed``): the seconds the crop takes from the step to within 2 % of the new crop."""
    framer = AutoFramer(ON, fps=FPS)
    left, right = person(0.3 * W, 0.5 * H), person(0.7 * W, 0.5 * H)
    target_x = target_crop(person_box(right[1]), (W, H), ON)[0]
    steps = round(2.0 / step_s)
    for index in range(steps):
        framer(*left, index * step_s if timed else None)
    distance = abs(target_x - framer.state.crop[0])
    for index in range(steps, 2 * steps):
        framer(*right, index * step_s if timed else None)
        if abs(framer.state.crop[0] - target_x) < 0.02 * distance:
            return index * step_s - 2.0
    raise AssertionError("the crop never reached the person")


def test_a_stream_that_drops_frames_glides_in_the_same_time():
    """Framing runs on the frames' times: every other frame dropped, the glide takes the same
    time within a frame (the first frame past the mark is one of every other), about
    ``glide_s``; stepped by 1/fps per frame it took twice as long."""
    kept, dropped = glide_s(1 / FPS), glide_s(2 / FPS)
    assert abs(dropped - kept) <= 1 / FPS + 1e-9, (kept, dropped)
    assert 0.8 * ON.glide_s <= kept <= 1.2 * ON.glide_s
    assert glide_s(2 / FPS, timed=False) > 1.8 * kept  # what a time per frame did


@pytest.mark.parametrize("step_s", [1 / FPS, 2 / FPS])
def test_the_zoom_window_spans_its_seconds_however_many_frames_come(step_s):
    """At 30 fps and with every other frame dropped: the window holds the last 5 s of sizes,
    so an arm stretched out for 2 s leaves the zoom alone and one for 3.5 s (more than half the
    window) zooms out; 150 frames counted at 1/30 s made the window 10 s of the dropped stream,
    where 3.5 s of arm left the zoom alone."""
    still, waving = webcam_body(), webcam_body(arm_to=W - 20)
    before = round(ON.zoom_window_s / step_s)

    def framer_after(arm_s):
        framer = AutoFramer(ON, fps=FPS)
        frames = [still] * before + [waving] * round(arm_s / step_s)
        for index, (image, alpha) in enumerate(frames):
            framer(image, alpha, 100.0 + index * step_s)
            if index == before - 1:
                times, settled = framer.state.times, framer.zoom
        return framer, times, settled

    short, times, settled = framer_after(2.0)
    assert len(times) == before  # a window's worth of frames: 150, or 75 of every other one
    assert times[-1] - times[0] == pytest.approx(ON.zoom_window_s - step_s)
    assert settled > 1.5 and abs(short.zoom / settled - 1) <= 0.02
    long, _, _ = framer_after(3.5)
    assert long.zoom < 0.85 * settled


def test_frames_without_times_fill_the_zoom_window_with_its_seconds_of_frames():
    """Stepped by 1/fps, 150 steps of 1/30 s sum to a hair under 5 s: the size wanted 5 s ago
    leaves the window all the same, which holds 150 frames, not 151."""
    framer = AutoFramer(ON, fps=FPS)
    run(framer, [person(0.5 * W, 0.5 * H)] * 200)
    assert len(framer.state.times) == round(ON.zoom_window_s * FPS)


def test_step_takes_a_size_at_once_only_for_an_area_30_percent_above_the_windows_median():
    """An area 25 % above the window's median (an arm adds up to 15 %) leaves the zoom on the
    median's size; 35 % above (someone came closer) frames the new size at once. A step given
    no area keeps the median."""
    size, small, tall = (W, H), (140, 60, 40, 60), (120, 30, 80, 120)
    median_h, tall_h = target_crop(small, size, ON)[2], target_crop(tall, size, ON)[2]
    assert tall_h > 1.5 * median_h

    def aim_h(**area):
        state = FramingState.whole(size)
        for _ in range(30):
            state = step(state, small, size, ON, 1 / FPS, area=0.1 if area else 0.0)
        return step(state, tall, size, ON, 1 / FPS, **area).aim[2]

    assert aim_h(area=0.125) == pytest.approx(median_h)
    assert aim_h(area=0.135) == pytest.approx(tall_h)
    assert aim_h() == pytest.approx(median_h)


def test_nobody_for_hold_s_to_the_step_eases_out_and_forgets_the_sizes():
    """After exactly ``hold_s`` with nobody, the aim is the whole frame and the window of sizes
    is empty: whoever comes next is sized on their own."""
    size, options = (W, H), dataclasses.replace(ON, hold_s=1.0)
    state = step(FramingState.whole(size), (140, 60, 40, 60), size, options, 0.5, area=0.1)
    state = step(state, None, size, options, 0.5)
    assert state.aim != whole_frame(size) and len(state.heights) == 1  # held
    state = step(state, None, size, options, 0.5)
    assert state.aim == whole_frame(size)
    assert (state.times, state.heights, state.areas) == ((), (), ())


def test_after_reset_a_frame_is_framed_as_by_a_new_framer():
    """reset() (a new source) forgets a cut still pending and the last frame's time: the next
    frame glides in from the whole frame by one frame at fps, as a new framer's first does, not
    cut to its person nor moved on by the time since the old source's last frame."""
    left, right = person(0.3 * W, 0.5 * H), person(0.7 * W, 0.5 * H)
    framer, fresh = AutoFramer(ON, fps=FPS), AutoFramer(ON, fps=FPS)
    for index in range(30):
        framer(*left, index / FPS)
    framer.cut()
    framer.reset()
    for each in (framer, fresh):
        each(*right, 29 / FPS + 2.0)
    assert framer.state == fresh.state
    assert framer.state.crop != framer.state.aim  # gliding in


def test_a_frame_after_a_gap_moves_the_crop_on_by_the_gap():
    """Frames 2 s apart (the effect off meanwhile, a camera lost): the crop lands where the
    spring is by then, on its aim at the person, not a frame's glide on from the old crop."""
    left, right = person(0.3 * W, 0.5 * H), person(0.7 * W, 0.5 * H)
    target_x = target_crop(person_box(right[1]), (W, H), ON)[0]
    states = {}
    for gap_s in (2.0, 1 / FPS):
        framer = AutoFramer(ON, fps=FPS)
        for index in range(30):
            framer(*left, index / FPS)
        framer(*right, 29 / FPS + gap_s)
        states[gap_s] = framer.state
    assert states[2.0].crop == states[2.0].aim and states[2.0].crop[0] == target_x
    assert states[1 / FPS].crop[0] < 0.4 * W


def test_a_time_that_stands_still_or_goes_back_steps_one_frame():
    """A frame whose time is not after the last one's (another source's clock) moves the crop
    on by 1/fps, as a frame given no time does; a time that is not a finite number is refused.
    """
    left, right = person(0.3 * W, 0.5 * H), person(0.7 * W, 0.5 * H)
    untimed, timed = AutoFramer(ON, fps=FPS), AutoFramer(ON, fps=FPS)
    for index in range(30):
        untimed(*left)
        timed(*left, index / FPS)
    for time_s in (29 / FPS, 0.2, 0.2):  # the same time, back, the same again
        untimed(*right)
        timed(*right, time_s)
        assert timed.state.crop == pytest.approx(untimed.state.crop, abs=1e-6)
    assert timed.state.crop[0] < 0.5 * W  # still gliding: three frames, not 3 s
    for bad in (float("nan"), float("inf")):
        with pytest.raises(ValueError, match=r"^time_s = .*: expected the frame's time in s"):
            timed(*right, bad)


def test_someone_who_comes_closer_is_followed():
    """The body grows by half and stays so: its area more than doubles, far more than an arm
    adds, so within 1.5 s (less than the 2.5 s the median of a 5 s window waits) the crop frames
    the bigger body as it would have from the start."""
    near, nearer = webcam_body(110), webcam_body(165)
    framer = AutoFramer(ON, fps=FPS)
    run(framer, [near] * 45)
    far_crop_h = framer.state.crop[2]
    _, crops = run(framer, [nearer] * int(1.5 * FPS))
    wanted = target_crop(person_box(nearer[1]), (W, H), ON)
    assert wanted[2] > 1.3 * far_crop_h  # the zoom has to change
    assert crops[-1] == pytest.approx(wanted, rel=0.03)
    assert ON.zoom_window_s / 2 > 1.5


def test_person_extent_gives_the_box_and_the_area():
    _, alpha = person(100, 90, radius=30)
    box, area = person_extent(alpha)
    assert box == person_box(alpha)
    assert area == pytest.approx(np.pi * 30 ** 2 / (W * H), rel=0.1)
    assert person_extent(np.zeros((H, W), np.uint8)) is None


def test_a_webcam_person_cut_off_at_the_bottom_is_framed_with_headroom():
    box = (120, 40, 80, H - 40)  # shoulders reach the bottom of the frame
    centre_x_, centre_y, crop_h = target_crop(box, (W, H), ON)
    assert crop_h < H  # zoomed in by the person's width, though their box is tall
    top = centre_y - crop_h / 2
    assert top == pytest.approx(40 - ON.headroom * crop_h, abs=1)


def test_bad_options_fail_at_construction():
    with pytest.raises(ValueError, match="at least 1"):
        AutoFramer(FramingOptions(max_zoom=0.5))
    with pytest.raises(ValueError, match="fill"):
        AutoFramer(FramingOptions(fill=0.0))
    with pytest.raises(ValueError, match=r"zoom_window_s = -1.0: expected a number, 0 or more"):
        AutoFramer(FramingOptions(zoom_window_s=-1.0))
    with pytest.raises(ValueError, match="unexpected alpha"):
        AutoFramer(ON)(None, np.zeros((4, 4), np.float32))


def test_app_frames_the_matte_of_a_moving_person(brightness_model, tmp_path):
    width, height = 192, 128
    video = tmp_path / "walk.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (width, height))
    for x in np.linspace(10, width - 42, 120).round().astype(int):  # a square moving right, 4 s
        image = np.full((height, width, 3), 30, np.uint8)
        image[48:80, x:x + 32] = 220
        writer.write(image)
    writer.release()
    outputs = {}
    for name, extra in {"off": [], "auto": ["--framing", "auto"]}.items():
        out = tmp_path / name
        assert main(["--source", str(video), "--out", str(out), "--model", str(brightness_model),
                     "--matte", "--stats", str(tmp_path / f"{name}.json"), "-q", *extra]) == 0
        outputs[name] = [cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)
                         for p in sorted(out.glob("*.png"))]
    assert len(outputs["auto"]) == len(outputs["off"]) == 120
    assert all(m.shape == (height, width) for m in outputs["auto"])
    late = slice(30, 120)  # after the first glide in
    off = np.mean([abs(centre_x(m) - 0.5) for m in outputs["off"][late]])
    auto = np.mean([abs(centre_x(m) - 0.5) for m in outputs["auto"][late]])
    assert "framing" in json.loads((tmp_path / "auto.json").read_text())["stage_ms"]
    assert "framing" not in json.loads((tmp_path / "off.json").read_text())["stage_ms"]
    assert auto <= 0.6 * off, (auto, off)  # issue 20's target (0.55 here: the spring lags a 4 s crossing)


@pytest.fixture(scope="module")
def segmenter(brightness_model):
    with create_segmenter(SegmentOptions(model=str(brightness_model))) as seg:
        yield seg


@pytest.mark.parametrize("kind", ["blur", "transparent", "matte"])
def test_processor_frames_its_output_after_compositing(segmenter, kind):
    """Framing crops what the processor outputs (composite, RGBA or matte), at its size; off and
    at rest it changes nothing."""
    matte = kind == "matte"

    def processor(framer):
        background = None if matte else make_background(CompositeOptions(background=kind))
        proc = FrameProcessor(segmenter, None, Refiner(RefineOptions()), background, matte,
                              PipelineOptions(reuse_still=False), framer=framer)
        proc.reuse_buffers(3)
        return proc

    image, _ = person(0.7 * W, 0.5 * H, radius=24)
    off, on, none = (processor(AutoFramer(FramingOptions(enabled=False), fps=FPS)),
                     processor(AutoFramer(ON, fps=FPS)), processor(None))
    outputs = {}
    for name, proc in (("off", off), ("on", on), ("none", none)):
        for index in range(40):
            packet = Packet(image=image, index=index, time_s=0.0)
            proc.segment(packet)
            proc.finish(packet)
        outputs[name] = (packet.output.copy(), packet.ms)
    np.testing.assert_array_equal(outputs["off"][0], outputs["none"][0])
    assert "framing" not in outputs["off"][1] and "framing" in outputs["on"][1]
    framed = outputs["on"][0]
    assert framed.shape == outputs["none"][0].shape
    assert on.framer.zoom > 1.3
    # the composite is cropped as a whole: the warp of the unframed output, exactly
    expected = cv2.warpAffine(outputs["none"][0], crop_matrix(on.framer.state.crop, (W, H)),
                              (W, H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    np.testing.assert_array_equal(framed, expected)


def matte_processor(segmenter):
    """A FrameProcessor that outputs the framed matte, by the live keys' state where a packet
    carries one (framing on, effect on or off)."""
    return FrameProcessor(segmenter, None, Refiner(RefineOptions()), None, True,
                          PipelineOptions(reuse_still=False), framer=AutoFramer(ON, fps=FPS))


def through(processor, image, index, pts_s, **packet):
    """One frame through the processor's segment and finish; returns the packet."""
    packet = Packet(image=image, index=index, time_s=0.0, pts_s=pts_s, **packet)
    processor.segment(packet)
    processor.finish(packet)
    return packet


def test_processor_frames_by_the_frames_times(segmenter):
    """The packets' ``pts_s`` time the framing: a stream that dropped every other frame glides
    as one that kept them all, crop for crop at the times both show, or at most a frame ahead
    once the person has moved (a step of 2/30 s heads for where the person is now all the way);
    without times its glide lags."""
    left, right = person(0.3 * W, 0.5 * H)[0], person(0.7 * W, 0.5 * H)[0]

    def crops(step_s, timed=True):
        processor, by_time = matte_processor(segmenter), {}
        for index in range(round(2.0 / step_s)):
            time_s = index * step_s
            through(processor, left if time_s < 1.0 else right, index,
                    time_s if timed else None)
            by_time[round(time_s * FPS)] = processor.framer.state.crop  # in frames at 30 fps
        return by_time

    kept, dropped, untimed = crops(1 / FPS), crops(2 / FPS), crops(2 / FPS, timed=False)
    assert set(dropped) == set(range(0, 60, 2))
    assert kept[29][0] < 0.4 * W < 0.6 * W < kept[59][0]  # framed on the left, then the right
    for frame, crop in dropped.items():
        if frame < 30:
            assert crop == pytest.approx(kept[frame], abs=1e-6), frame
        else:
            assert kept[frame][0] - 1e-6 <= crop[0] <= kept[frame + 1][0] + 1e-6, frame
    assert kept[40][0] - untimed[40][0] > 0.05 * W  # 1/3 s into the glide: lagging


def test_a_loop_seam_while_the_effect_is_off_still_cuts_the_framing(segmenter):
    """The effect off (space) over a looped clip's seam: the first frame the effect is back on
    is another shot's all the same, framed at once, as at a seam with the effect on, not glided
    to from the last shot's crop."""
    left, right = person(0.3 * W, 0.5 * H)[0], person(0.7 * W, 0.5 * H)[0]
    on, off = LiveState(framing=True), LiveState(effect=False, framing=True)
    outputs = {}
    for seam in (True, False):
        processor = matte_processor(segmenter)
        for index in range(60):
            through(processor, left, index, index / FPS, state=on)
        through(processor, right, 60, 60 / FPS, state=off, cut=seam)
        through(processor, right, 61, 61 / FPS, state=off)
        outputs[seam] = through(processor, right, 62, 62 / FPS, state=on).output
    assert abs(centre_x(outputs[True]) - 0.5) < 0.02  # cut to the person
    assert centre_x(outputs[False]) > 0.7  # a glide from the left: the person at the edge


def test_person_outside_by_hand():
    mask = np.zeros((4, 8), bool)
    mask[1:3, 0:4] = True  # 8 person pixels, columns 0-3, rows 1-2
    size = (8, 4)
    assert person_outside(mask, whole_frame(size), size) == 0.0
    # a crop 2 rows high (4 wide) centred at (4, 2), [2, 6] x [1, 3]: columns 2-5 (centres
    # 2.5..5.5), rows 1-2: person columns 2, 3 inside: 4 of 8 out
    assert person_outside(mask, (4.0, 2.0, 2.0), size) == 0.5
    # the same crop moved 0.5 px left, [1.5, 5.5]: column 1's centre 1.5 on its edge counts as
    # inside: columns 1-3 of the person in, 2 of 8 out
    assert person_outside(mask, (3.5, 2.0, 2.0), size) == 0.25
    # a thumbnail at half the resolution: the crop is scaled to it (columns 1-2 of 0-3)
    # a thumbnail at half the resolution (rows 0, 2, columns 0, 2, 4, 6: person at (1, 0) and
    # (1, 1)): the crop scaled to it, [1, 3] x [0.5, 1.5], holds columns 1-2, rows 0-1: 1 of 2 out
    thumb = mask[::2, ::2].astype(np.uint8) * 255
    assert person_outside(thumb, (4.0, 2.0, 2.0), size) == 0.5
    # below=False: the crop taken down to the frame's bottom; a crop of rows [0, 2] (holding
    # row 1 only: row 2's centre 2.5 is past it) leaves row 2 out below, 4 of 8, not to the side
    assert person_outside(mask, (2.0, 1.0, 2.0), size) == 0.5
    assert person_outside(mask, (2.0, 1.0, 2.0), size, below=False) == 0.0
    # ... and still counts what it leaves out to the side: at (3.5, 1), columns [1.5, 5.5],
    # column 0 is out, 2 of 8 (rows 1 and 2)
    assert person_outside(mask, (3.5, 1.0, 2.0), size, below=False) == 0.25
    # a crop wider than the frame's edge: nothing beyond the frame to cut
    assert person_outside(mask, (1.0, 2.0, 4.0), size) == 0.0
    assert person_outside(np.zeros((4, 8), np.uint8), (4.0, 2.0, 2.0), size) == 0.0
    with pytest.raises(ValueError, match=r"unexpected mask: \(4, 8, 3\)"):
        person_outside(np.zeros((4, 8, 3), np.uint8), (4.0, 2.0, 2.0), size)
