"""Tests for portrait.composite: blending and every background kind."""

import logging
import os
import threading
import time

import cv2
import numpy as np
import pytest

from portrait.composite import (
    HIDDEN_REACH_PX,
    Background,
    blur_background,
    composite,
    cover,
    default_blur_px,
    make_background,
)
from portrait.errors import InputError
from portrait.options import CompositeOptions

H, W = 90, 160
KINDS = ["blur", "colour", "image", "video", "transparent"]
VIDEO_COLOURS = [(0, 0, 255), (0, 255, 0), (255, 0, 0)]  # BGR: red, green, blue


@pytest.fixture
def image_path(tmp_path):
    """A wide (3:1) background image with a white circle (radius 15) in the middle."""
    image = np.full((100, 300, 3), 30, np.uint8)
    cv2.circle(image, (150, 50), 15, (255, 255, 255), -1)
    path = tmp_path / "background.png"
    cv2.imwrite(str(path), image)
    return path


@pytest.fixture
def video_path(tmp_path):
    """A 3-frame video: red, green, blue."""
    path = tmp_path / "background.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for colour in VIDEO_COLOURS:
        writer.write(np.full((48, 64, 3), colour, np.uint8))
    writer.release()
    return path


def _spec(kind, image_path, video_path):
    return {"blur": "blur", "colour": "#3366cc", "transparent": "transparent",
            "image": str(image_path), "video": str(video_path)}[kind]


def _make(kind, image_path, video_path, size=(W, H), blur_px=21) -> Background:
    return make_background(CompositeOptions(background=_spec(kind, image_path, video_path),
                                            blur_px=blur_px), size=size)


def _frame_and_alpha(h=H, w=W, seed=0):
    rng = np.random.default_rng(seed)
    frame = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    alpha = np.zeros((h, w), np.uint8)
    cv2.circle(alpha, (w // 2, h // 2), min(h, w) // 3, 255, -1)
    return frame, cv2.GaussianBlur(alpha, (7, 7), 2)  # soft edge


@pytest.mark.parametrize("kind", KINDS)
def test_render_dtype_shape_and_inputs_unchanged(kind, image_path, video_path):
    frame, alpha = _frame_and_alpha()
    frame_copy, alpha_copy = frame.copy(), alpha.copy()
    with _make(kind, image_path, video_path) as background:
        result = background.render(frame, alpha)
        channels = 4 if kind == "transparent" else 3
        assert result.dtype == np.uint8 and result.shape == (H, W, channels)
        out = np.zeros((H, W, channels), np.uint8)
        assert background.render(frame, alpha, out=out) is out
    np.testing.assert_array_equal(frame, frame_copy)
    np.testing.assert_array_equal(alpha, alpha_copy)


@pytest.mark.parametrize("kind", KINDS)
def test_alpha_255_gives_the_frame(kind, image_path, video_path):
    frame, _ = _frame_and_alpha()
    with _make(kind, image_path, video_path) as background:
        result = background.render(frame, np.full((H, W), 255, np.uint8))
    np.testing.assert_array_equal(result[:, :, :3], frame)
    if kind == "transparent":
        assert (result[:, :, 3] == 255).all()


def _expected_background(kind, frame, image_path, video_path):
    if kind == "colour":
        return np.full((H, W, 3), (0xcc, 0x66, 0x33), np.uint8)
    if kind == "image":
        return cover(cv2.imread(str(image_path)), (W, H))
    if kind == "video":
        capture = cv2.VideoCapture(str(video_path))
        ok, first = capture.read()
        capture.release()
        assert ok
        return cover(first, (W, H))
    if kind == "blur":
        return blur_background(frame, np.zeros((H, W), np.uint8), 21)
    return None


@pytest.mark.parametrize("kind", KINDS)
def test_alpha_0_gives_the_background(kind, image_path, video_path):
    frame, _ = _frame_and_alpha()
    zero = np.zeros((H, W), np.uint8)
    with _make(kind, image_path, video_path) as background:
        result = background.render(frame, zero)
    expected = _expected_background(kind, frame, image_path, video_path)
    if kind == "transparent":  # all hidden, and nothing of the frame kept under it
        assert (result == 0).all()
        return
    np.testing.assert_array_equal(result, expected)
    if kind == "blur":  # and the blur really blurs: random noise is flattened
        assert result.astype(np.float32).std() < 0.3 * frame.astype(np.float32).std()


@pytest.mark.parametrize("kind", KINDS)
def test_frame_size_change_mid_stream(kind, image_path, video_path):
    with _make(kind, image_path, video_path) as background:
        for h, w in [(H, W), (60, 80), (H, W), (33, 201)]:
            frame, alpha = _frame_and_alpha(h, w)
            result = background.render(frame, alpha)
            assert result.shape[:2] == (h, w)


def _person_on_dark(h=120, w=200):
    frame = np.full((h, w, 3), 20, np.uint8)
    alpha = np.zeros((h, w), np.uint8)
    alpha[30:, 70:130] = 255
    alpha = cv2.GaussianBlur(alpha, (5, 5), 1)  # a slightly soft person edge, like a real matte
    frame[alpha > 0] = 240  # the person's bright colour reaches as far as the matte does
    return frame, alpha


def test_blur_has_no_halo():
    frame, alpha = _person_on_dark()
    ring = (cv2.dilate(alpha, np.ones((17, 17), np.uint8)) > 0) & (
        cv2.dilate(alpha, np.ones((7, 7), np.uint8)) == 0)  # 3..8 px outside the person
    with make_background(CompositeOptions(background="blur", blur_px=31), (200, 120)) as background:
        ours = background.render(frame, alpha)
    naive = composite(frame, alpha, cv2.GaussianBlur(frame, (63, 63), 0))
    ours_ring = ours[ring].astype(np.float32).mean()
    naive_ring = naive[ring].astype(np.float32).mean()
    assert naive_ring > 60, naive_ring  # the naive blur does bleed: the test can tell
    assert ours_ring < 26, ours_ring  # background is 20


@pytest.mark.parametrize("value", [0, 1, 100, 200, 255, (30, 100, 200)])
def test_blur_of_a_flat_room_is_that_room(value):
    """Rounded, not truncated: a flat wall stays its own grey, not one level darker; an orange
    wall stays orange (BGR kept, not its channels swapped)."""
    frame = np.full((H, W, 3), value, np.uint8)
    np.testing.assert_array_equal(blur_background(frame, np.zeros((H, W), np.uint8), 21), frame)


@pytest.mark.parametrize("blur_px", [1, 4, 8, 21])
def test_blur_reaches_blur_px_and_no_further(blur_px):
    """A step from black to grey 200: blurred across about blur_px either side (at a 1/2 or
    1/4 resolution the kernel is scaled down with it), untouched beyond."""
    frame = np.zeros((H, 320, 3), np.uint8)
    frame[:, 160:] = 200
    row = blur_background(frame, np.zeros((H, 320), np.uint8), blur_px)[H // 2, :, 0].astype(int)
    reach = blur_px + 1  # and a pixel for the halving
    assert (row[:160 - reach] == 0).all() and (row[160 + reach:] == 200).all(), row
    assert 20 < row[160 - blur_px // 2] < 180 and 20 < row[160 + blur_px // 2 - 1] < 180, row


@pytest.mark.parametrize("blur_px", [12, 21])
def test_blur_of_a_smooth_gradient_is_that_gradient(blur_px):
    """A wall lit from one side (a ramp of 2 levels a pixel) comes back as it was away from the
    frame's edges, at 1/4 resolution too: smooth, no staircase of 4 px steps from a nearest
    sample when halving or scaling back up."""
    ramp = 2 * np.arange(128)
    frame = np.repeat(np.repeat(ramp.astype(np.uint8)[None, :, None], H, 0), 3, 2)
    row = blur_background(frame, np.zeros((H, 128), np.uint8), blur_px)[H // 2, :, 1].astype(int)
    inner = slice(blur_px + 8, 128 - blur_px - 8)  # beyond the blur's reach of the edges
    assert np.abs(row - ramp)[inner].max() <= 1, row
    assert np.diff(row[inner]).max() <= 3, row


@pytest.mark.parametrize("blur_px", [5, 40])
def test_the_blur_background_blurs_by_its_own_blur_px(blur_px):
    """``--blur N`` (and the + / - keys, which set the attribute) is the blur shown, not the
    default's 21 px."""
    frame, _ = _frame_and_alpha()
    zero = np.zeros((H, W), np.uint8)
    with make_background(CompositeOptions(background="blur", blur_px=blur_px), (W, H)) as background:
        np.testing.assert_array_equal(background.render(frame, zero),
                                      blur_background(frame, zero, blur_px))
        background.blur_px = 9
        np.testing.assert_array_equal(background.render(frame, zero),
                                      blur_background(frame, zero, 9))


def test_blur_behind_a_soft_edge_is_the_rooms_colour():
    """Where the matte is soft the composite shows some of the background: it must be the
    room's colour (20) there, not the person's (240) brought along by the blur's fallback."""
    alpha = np.zeros((120, 200), np.uint8)
    alpha[:, :100] = 255
    alpha = cv2.GaussianBlur(alpha, (0, 0), 3)
    a = alpha[:, :, None] / 255
    frame = np.repeat(np.round(a * 240 + (1 - a) * 20).astype(np.uint8), 3, axis=2)
    background = blur_background(frame, alpha, 21)
    soft = (alpha > 0) & (alpha < 255)
    assert soft.sum() > 1000
    assert background[soft].max() < 20 + 0.25 * (240 - 20), background[soft].max()


def test_blur_deep_inside_person_is_finite_and_quiet():
    frame, _ = _frame_and_alpha()
    everywhere = np.full((H, W), 255, np.uint8)
    with np.errstate(all="raise"):
        background = blur_background(frame, everywhere, 21)
    assert background.shape == frame.shape and background.dtype == np.uint8


@pytest.mark.parametrize("size", [(160, 120), (90, 160), (300, 100)])
def test_image_background_is_not_stretched(image_path, size):
    w, h = size
    with make_background(CompositeOptions(background=str(image_path)), size) as background:
        result = background.render(np.zeros((h, w, 3), np.uint8), np.zeros((h, w), np.uint8))
    ys, xs = np.nonzero(result[:, :, 0] > 140)  # the white circle, small enough to stay in view
    width, height = xs.max() - xs.min() + 1, ys.max() - ys.min() + 1
    assert abs(width / height - 1) < 0.1, (width, height)  # still a circle
    diameter = 31 * max(w / 300, h / 100)  # scaled to cover: by the larger of the two ratios
    assert abs(height - diameter) <= 2, (height, diameter)
    assert abs((xs.min() + xs.max()) / 2 - (w - 1) / 2) <= 1  # centre-cropped


@pytest.mark.parametrize("side", [300, 1200])
def test_an_image_shrunk_to_cover_keeps_its_brightness(tmp_path, side):
    """Fine stripes (one bright column in three, mean 85) shrunk behind a 200x200 frame, 1.5
    times (by cover) or 6 times (three when the image is read, then two by cover): area-averaged,
    they keep the image's mean brightness; a bilinear shrink samples a few columns and makes the
    wall brighter or darker (95 by cover, 0 when the image is read)."""
    image = np.zeros((side, side, 3), np.uint8)
    image[:, ::3] = 255
    path = tmp_path / "stripes.png"
    cv2.imwrite(str(path), image)
    with make_background(CompositeOptions(background=str(path)), (200, 200)) as background:
        result = background.render(np.zeros((200, 200, 3), np.uint8), np.zeros((200, 200), np.uint8))
    assert abs(result.mean() - image.mean()) <= 3, (result.mean(), image.mean())


def test_an_image_background_is_as_sharp_for_a_frame_twice_the_first(tmp_path):
    """The image is kept at twice the scale that covers the first frame, so a frame of twice
    its size (a photo after a preview) shows the image as if made for it, not upscaled from a
    copy made for the smaller frame."""
    image = np.random.default_rng(8).integers(0, 256, (800, 1200, 3), dtype=np.uint8)
    path = tmp_path / "detail.png"
    cv2.imwrite(str(path), image)
    with make_background(CompositeOptions(background=str(path)), (150, 100)) as background:
        result = background.render(np.zeros((200, 300, 3), np.uint8), np.zeros((200, 300), np.uint8))
    assert np.abs(result.astype(np.int16) - cover(image, (300, 200))).max() <= 1


def _overlay_rgba(h=H, w=W) -> np.ndarray:
    """BGRA: the left third opaque red, the middle third half-transparent blue, the right
    third transparent, its colour a green that must never show."""
    bgra = np.zeros((h, w, 4), np.uint8)
    bgra[:, :] = (0, 255, 0, 0)
    bgra[:, : w // 3] = (0, 0, 255, 255)
    bgra[:, w // 3: 2 * w // 3] = (255, 0, 0, 128)
    return bgra


def _write_rgba(path, bgra):
    if "associated" in path.name:  # colours premultiplied by the alpha, marked so (ExtraSamples)
        from conftest import write_rgba_tiff

        rgba = bgra[:, :, [2, 1, 0, 3]].astype(np.float32) / 255
        rgba[:, :, :3] *= rgba[:, :, 3:]
        if "float" not in path.name:
            dtype = np.uint16 if "16" in path.name else np.uint8
            rgba = np.round(rgba * np.iinfo(dtype).max).astype(dtype)
        write_rgba_tiff(path, rgba, extra_samples=1)
    elif path.name.endswith("16.png"):
        cv2.imwrite(str(path), bgra.astype(np.uint16) * 257)
    elif path.name.endswith("_float.tiff"):  # 32-bit float RGBA, which Pillow cannot open
        assert cv2.imwrite(str(path), bgra.astype(np.float32) / 255)
    else:
        from PIL import Image
        Image.fromarray(bgra[:, :, [2, 1, 0, 3]], "RGBA").save(
            path, **({"lossless": True} if path.suffix == ".webp" else {}))
    return path


@pytest.mark.parametrize("name", ["overlay.png", "overlay16.png", "overlay.webp", "overlay.tiff",
                                  "overlay_float.tiff", "overlay_associated.tiff",
                                  "overlay16_associated.tiff", "overlay_float_associated.tiff"])
def test_transparent_image_lies_over_the_blurred_frame(tmp_path, name):
    """Where the image is transparent the frame's own background shows, blurred as
    ``--background blur`` blurs it (``blur_px``); elsewhere the image, by its alpha."""
    bgra = _overlay_rgba()
    path = _write_rgba(tmp_path / name, bgra)
    frame, alpha = _frame_and_alpha()
    with make_background(CompositeOptions(background=str(path), blur_px=9), (W, H)) as background:
        assert background.transparent and background.blur_px == 9
        assert "over the blurred frame" in background.description
        result = background.render(frame, alpha)
    weight = bgra[:, :, 3:] / 255.0
    behind = bgra[:, :, :3] * weight + blur_background(frame, alpha, 9) * (1 - weight)
    person = alpha[:, :, None] / 255.0
    expected = frame * person + behind * (1 - person)
    assert np.abs(result - expected).max() <= 2.0
    no_person = np.zeros((H, W), np.uint8)
    with make_background(CompositeOptions(background=str(path), blur_px=9), (W, H)) as background:
        alone = background.render(frame, no_person)
    assert alone[:, 2 * W // 3:, 1].astype(float).mean() < 200  # no green: it was never seen


def test_transparent_image_scaled_down_brings_no_colour_of_its_transparent_pixels(tmp_path):
    path = _write_rgba(tmp_path / "big.png", _overlay_rgba(900, 1600))  # shrunk 10x
    black, zero = np.zeros((H, W, 3), np.uint8), np.zeros((H, W), np.uint8)
    with make_background(CompositeOptions(background=str(path)), (W, H)) as background:
        result = background.render(black, zero)  # over black, only the image's own colours
    assert result[:, :, 1].max() <= 1  # the hidden green did not bleed in at the edges
    assert result[:, : W // 3 - 1, 2].min() >= 254 and result[:, 2 * W // 3 + 1:].max() <= 1


def test_opaque_image_with_an_alpha_channel_is_an_opaque_image(tmp_path):
    bgra = _overlay_rgba()
    bgra[:, :, 3] = 255
    path = _write_rgba(tmp_path / "opaque.png", bgra)
    frame, alpha = _frame_and_alpha()
    with make_background(CompositeOptions(background=str(path)), (W, H)) as background:
        assert not background.transparent and "blur" not in background.description
        result = background.render(frame, np.zeros((H, W), np.uint8))
    np.testing.assert_array_equal(result, bgra[:, :, :3])


def test_cover_keeps_aspect_and_centres():
    image = np.zeros((100, 300, 3), np.uint8)
    image[:, 145:155] = 255  # a centre stripe
    covered = cover(image, (100, 100))
    assert covered.shape == (100, 100, 3)
    assert covered[:, 45:55].min() == 255 and covered[:, :40].max() == 0  # crop kept the centre
    assert cover(image, (600, 400)).shape == (400, 600, 3)  # upscaled by 4, cropped to 600 wide


@pytest.mark.parametrize("size", [(3000, 6), (6, 3000)])
def test_a_background_for_a_panorama_scales_only_what_is_in_view(tmp_path, size):
    """A frame of a panorama's proportions over a 30x40 photo: the photo was scaled whole to
    cover it (3000x4000 here, 36 MB for an 18 KB background; a 20000x200 photo over a 600x800
    background took 1.6 GB, and a 70000x60 one was killed for memory). Only the part in view is
    made now; the picture is the whole one's centre, to a grey level or so."""
    import tracemalloc

    y, x = np.mgrid[0:40, 0:30]
    photo = np.dstack([x * 8, y * 6, (x + y) * 4]).astype(np.uint8)  # smooth, in every channel
    path = tmp_path / "photo.png"
    cv2.imwrite(str(path), photo)
    width, height = size
    make_background(CompositeOptions(background=str(path)), (40, 30)).close()  # imports done
    tracemalloc.start()
    try:
        with make_background(CompositeOptions(background=str(path)), size) as background:
            result = background.render(np.zeros((height, width, 3), np.uint8),
                                       np.zeros((height, width), np.uint8))
            _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.shape == (height, width, 3)
    assert peak < 8 * result.nbytes, peak  # the output, its blend and the cache; not 36 MB
    scale = max(width / 30, height / 40)
    whole = cv2.resize(photo, (round(30 * scale), round(40 * scale)), interpolation=cv2.INTER_LINEAR)
    top, left = (whole.shape[0] - height) // 2, (whole.shape[1] - width) // 2
    centre = whole[top:top + height, left:left + width]
    assert np.abs(result.astype(np.int16) - centre).max() <= 2


@pytest.mark.parametrize("axis", [0, 1])
def test_a_shrunk_background_for_a_panorama_lies_within_half_a_pixel_of_the_whole(axis):
    """A 600x800 photo shrunk to cover frames 5 px tall (or, turned, 5 px wide): only the part
    in view is area-averaged, placed to the nearest pixel of where the whole image scaled has
    it. The photo is a ramp of 20 levels a row across the view, so the mean difference from
    the whole's centre, over the ramp's slope in the frame, is the offset in pixels; truncating
    the part's offset instead of rounding it moved the background by up to 0.96 px."""
    for length in range(300, 420, 7):
        src_h, src_w = 800, 600
        width, height = length, 5
        scaled_w, scaled_h = width, round(src_h * width / src_w)
        top = (scaled_h - height) // 2
        rows_per_src = scaled_h / src_h
        centre = (top + height / 2) / rows_per_src  # the view's centre in the photo's rows
        ramp = np.clip(128 + 20 * (np.arange(src_h) - centre), 0, 255)
        photo = np.repeat(np.repeat(ramp.astype(np.uint8)[:, None, None], src_w, 1), 3, 2)
        whole = cv2.resize(photo, (scaled_w, scaled_h), interpolation=cv2.INTER_AREA)
        expected = whole[top:top + height]
        if axis:  # the same, turned: a frame 5 px wide, the ramp across its columns
            photo, expected = photo.transpose(1, 0, 2).copy(), expected.transpose(1, 0, 2)
            width, height = height, width
        result = cover(photo, (width, height))
        assert result.shape == expected.shape
        offset_px = (result.astype(float) - expected).mean() / (20 / rows_per_src)
        assert abs(offset_px) <= 0.55, (length, offset_px)


@pytest.mark.parametrize("text", ["#12345", "#gggggg", "#1234567", "#"])
def test_bad_colour_is_an_input_error(text):
    with pytest.raises(InputError, match="#rrggbb") as info:
        make_background(CompositeOptions(background=text), (W, H))
    assert text in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("name, content", [
    ("missing.png", None),
    ("empty.png", b""),
    ("text.jpg", b"this is not a jpeg"),
    ("noise.mp4", bytes(range(256)) * 8),
    ("noise.xyz", b"\x00\x01\x02" * 100),
    ("half.jpg", "half"),  # a truncated JPEG, refused as a photo would be (was a grey fill)
])
def test_unreadable_background_file_is_an_input_error(tmp_path, name, content):
    if content == "half":
        rng = np.random.default_rng(0)
        ok, data = cv2.imencode(".jpg", rng.integers(0, 255, (240, 320, 3), np.uint8))
        content = data.tobytes()[: len(data) // 2]
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(InputError, match="cannot read background") as info:
        make_background(CompositeOptions(background=str(path)), (W, H))
    assert name in str(info.value) and "\n" not in str(info.value)


def _levels_video(path, count=12, fps=30.0, size=(64, 48)):
    """A video whose frame i is a flat grey of 10 + 20 * i, so a render tells which it shows."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    for i in range(count):
        writer.write(np.full((size[1], size[0], 3), 10 + 20 * i, np.uint8))
    writer.release()
    return path


def _shown(background, times, live=False, size=(64, 48)):
    """Which frame of a :func:`_levels_video` each render at ``times`` shows."""
    frame, zero = np.zeros((size[1], size[0], 3), np.uint8), np.zeros((size[1], size[0]), np.uint8)
    means = [float(background.render(frame, zero, time_s=t, live=live).mean()) for t in times]
    assert all(abs(mean - (10 + 20 * round((mean - 10) / 20))) < 3 for mean in means), means
    return [round((mean - 10) / 20) for mean in means]


def test_video_background_loops_at_its_own_rate(video_path):
    """The 10 fps red, green, blue clip rendered at 10 fps shows each frame once, and loops."""
    frame, zero = np.zeros((48, 64, 3), np.uint8), np.zeros((48, 64), np.uint8)
    times = [0.0] + [k / 10 + 0.01 for k in range(1, 7)]  # off the frames' own times
    with make_background(CompositeOptions(background=str(video_path)), (64, 48)) as background:
        means = [background.render(frame, zero, time_s=t).reshape(-1, 3).mean(axis=0)
                 for t in times]
        background.close()  # closing twice is safe
    shown = [int(np.argmax(mean)) for mean in means]
    assert shown == [2, 1, 0, 2, 1, 0, 2]  # red, green, blue, red, ... (BGR channel index)
    assert all(mean.max() > 200 for mean in means)


@pytest.mark.parametrize("output_fps", [15, 60])
def test_video_background_plays_at_its_own_rate_whatever_the_output_rate(tmp_path, output_fps):
    """A 30 fps background behind 15 fps output skips every other frame, behind 60 fps shows
    each twice (one frame per render played it at half and at double speed), and loops."""
    path = _levels_video(tmp_path / "levels.avi", count=12, fps=30.0)
    # The stream's times, starting anywhere, each 10 ms after an output frame's time; the
    # frame shown is the nearest (the newest begun at most half a frame later).
    times = [100.0] + [100.0 + k / output_fps + 0.01 for k in range(1, 40)]
    expected = [0] + [int((k / output_fps + 0.01) * 30 + 0.5) % 12 for k in range(1, 40)]
    with make_background(CompositeOptions(background=str(path)), (64, 48)) as background:
        assert _shown(background, times) == expected
    assert 0 in expected[1:] and max(expected) >= 10  # it played to the end, and looped


def test_video_background_lands_on_the_frame_due_after_a_long_pause(tmp_path):
    """Frames far apart in time (the effect off for minutes): the frame due, loops skipped."""
    path = _levels_video(tmp_path / "levels.avi", count=12, fps=30.0)
    with make_background(CompositeOptions(background=str(path)), (64, 48)) as background:
        # 3000.3 frames' time: loop 250 and 0.3 frames into it, then 3 frames on
        times = [0.0, 1.2 / 30, 3000.3 / 30, 3003.3 / 30]
        assert _shown(background, times) == [0, 1, 0, 3]


def test_video_background_without_times_goes_by_the_clock(tmp_path):
    path = _levels_video(tmp_path / "levels.avi", count=12, fps=30.0)
    frame, zero = np.zeros((48, 64, 3), np.uint8), np.zeros((48, 64), np.uint8)
    with make_background(CompositeOptions(background=str(path)), (64, 48)) as background:
        first = background.render(frame, zero)  # the first frame, whenever it comes
        time.sleep(0.2)  # 6 frames of the clip
        later = background.render(frame, zero)
    assert abs(float(first.mean()) - 10) < 3
    assert float(later.mean()) > 10 + 20 * 3  # it played on: at least the 4th frame by now


def test_video_background_decodes_in_a_thread_that_close_ends(tmp_path):
    path = _levels_video(tmp_path / "levels.avi", count=12, fps=30.0)
    before = set(threading.enumerate())
    background = make_background(CompositeOptions(background=str(path)), (64, 48))
    readers = [t for t in set(threading.enumerate()) - before if t.name == "background-video"]
    assert len(readers) == 1 and readers[0].daemon
    frame, zero = np.zeros((48, 64, 3), np.uint8), np.zeros((48, 64), np.uint8)
    # Live, a render takes what the thread has prepared, at the frame's size, never waiting.
    for k in range(5):
        assert background.render(frame, zero, time_s=k / 30, live=True).shape == (48, 64, 3)
    background.close()
    assert not readers[0].is_alive()
    with pytest.raises(ValueError, match="closed VideoBackground"):
        background.render(frame, zero)


def test_a_video_of_one_frame_is_a_still_read_once(tmp_path):
    path = _levels_video(tmp_path / "one.avi", count=1)
    with make_background(CompositeOptions(background=str(path)), (64, 48)) as background:
        assert _shown(background, [0.0, 0.5, 10.0]) == [0, 0, 0]
        assert _shown(background, [10.5, 20.0], live=True) == [0, 0]
        deadline = time.monotonic() + 5
        while any(t.name == "background-video" for t in threading.enumerate()):
            assert time.monotonic() < deadline, "the reader still reads a still"
            time.sleep(0.01)


@pytest.mark.skipif(os.name == "nt", reason="Windows does not delete or empty a file in use")
@pytest.mark.parametrize("how", ["deleted", "emptied"])
def test_video_background_that_goes_away_keeps_its_last_frame_and_says_so_once(
        tmp_path, caplog, how):
    path = _levels_video(tmp_path / "levels.avi", count=10, fps=30.0)
    times = [0.0] + [k / 30 + 0.01 for k in range(1, 40)]  # one render a frame, 4 loops' time
    with make_background(CompositeOptions(background=str(path)), (64, 48)) as background:
        if how == "deleted":
            path.unlink()  # the open file still reads to its end: the loop's reopening fails
        else:
            path.write_bytes(b"")
        with caplog.at_level(logging.WARNING, logger="portrait"):
            shown = _shown(background, times)
    if how == "deleted":
        assert shown == list(range(10)) + [9] * 30
    else:  # where the file ends now depends on what its reader had buffered
        assert shown[0] == 0 and len(set(shown[-20:])) == 1 and shown == sorted(shown)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, warnings
    assert str(path) in warnings[0] and "last frame" in warnings[0]


def test_transparent_is_bgra_with_alpha_channel():
    frame, alpha = _frame_and_alpha()
    with make_background(CompositeOptions(background="Transparent"), (W, H)) as background:
        result = background.render(frame, alpha)
    shown = alpha > 0
    np.testing.assert_array_equal(result[shown][:, :3], frame[shown])
    np.testing.assert_array_equal(result[:, :, 3], alpha)


def test_a_cut_out_hides_none_of_the_room_under_its_transparent_pixels():
    """A red room and a blue person (alpha 255 in a box, 0 elsewhere): what it shows is the
    frame's; under alpha 0 nothing is red: the person's blue within a few pixels of them (so a
    resize that ignores alpha brings no dark fringe), black farther than the reach and a cell
    or two."""
    frame = np.zeros((96, 128, 3), np.uint8)
    frame[:, :] = (0, 0, 255)
    frame[32:64, 48:80] = (255, 0, 0)
    alpha = np.zeros((96, 128), np.uint8)
    alpha[32:64, 48:80] = 255
    with make_background(CompositeOptions(background="transparent"), (128, 96)) as background:
        result = background.render(frame, alpha)
    np.testing.assert_array_equal(result[:, :, 3], alpha)
    np.testing.assert_array_equal(result[32:64, 48:80, :3], frame[32:64, 48:80])
    hidden = alpha == 0
    assert result[hidden][:, 2].max() == 0  # no red anywhere
    distance = cv2.distanceTransform(hidden.astype(np.uint8), cv2.DIST_L2, 5)
    near, far = hidden & (distance <= 3), distance > HIDDEN_REACH_PX + 8
    assert near.any() and far.any()
    assert result[near][:, 0].min() > 100  # blue beside the person
    assert result[far][:, :3].max() == 0
    # the frame itself is untouched
    assert (frame[0, 0] == (0, 0, 255)).all() and (frame[40, 60] == (255, 0, 0)).all()


def test_composite_matches_float_reference_and_reuses_out():
    rng = np.random.default_rng(4)
    frame = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    background = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    alpha = rng.integers(0, 256, (H, W), dtype=np.uint8)
    weight = alpha[:, :, None] / 255.0
    expected = frame * weight + background * (1 - weight)
    out = np.empty_like(frame)
    result = composite(frame, alpha, background, out=out, workspace={})
    assert result is out
    assert np.abs(result - expected).max() <= 1.0


@pytest.mark.parametrize("where", ["part", "speck", "none", "all", "noise"])
def test_bounded_composite_is_bit_identical(where):
    rng = np.random.default_rng(5)
    frame = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    background = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    alpha = np.zeros((H, W), np.uint8)
    if where == "part":
        alpha[H // 3:, W // 4:W // 2] = rng.integers(0, 256, (H - H // 3, W // 2 - W // 4))
    elif where == "speck":
        alpha[2, W - 3] = 200
    elif where == "all":
        alpha[:] = 255
    elif where == "noise":
        alpha[:] = rng.integers(0, 256, (H, W))
    workspace = {}
    for _ in range(2):  # and with the scratch buffers reused
        out = np.full_like(frame, 17)
        bounded = composite(frame, alpha, background, out=out, workspace=workspace)
        np.testing.assert_array_equal(bounded, composite(frame, alpha, background, bounded=False))
    if where == "none":
        np.testing.assert_array_equal(bounded, background)


@pytest.mark.parametrize("frame, alpha, background, match", [
    (np.zeros((4, 5, 3), np.float32), np.zeros((4, 5), np.uint8), np.zeros((4, 5, 3), np.uint8), "float32"),
    (np.zeros((4, 5, 3), np.uint8), np.zeros((5, 4), np.uint8), np.zeros((4, 5, 3), np.uint8), r"\(5, 4\)"),
    (np.zeros((4, 5, 3), np.uint8), np.zeros((4, 5), np.uint8), np.zeros((4, 6, 3), np.uint8), r"\(4, 6, 3\)"),
    (np.zeros((4, 5, 3), np.uint8), np.zeros((4, 5), np.uint8), np.zeros((4, 5, 3), np.float32),
     r"^unexpected background: float32 \(4, 5, 3\) != uint8 \(4, 5, 3\)$"),
])
def test_composite_rejects_bad_arrays(frame, alpha, background, match):
    with pytest.raises(ValueError, match=match):
        composite(frame, alpha, background)


def test_a_video_background_at_a_new_size_is_made_from_the_decoded_frame(tmp_path):
    """Photos of other shapes over a video background (an --image batch: each shows the first
    frame) get that frame covering their own size, made from the frame as decoded, not from the
    crop made for the size before: a crop of a crop zoomed in at each change of shape."""
    from portrait.capture.video import VideoFileSource
    from portrait.composite import VideoBackground

    ramp = np.dstack(np.meshgrid(np.linspace(0, 255, 160), np.linspace(0, 255, 120)) * 2)[..., :3]
    path = tmp_path / "ramp.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (160, 120))
    for _ in range(3):
        writer.write(ramp.astype(np.uint8))
    writer.release()
    with VideoFileSource(path) as source:
        decoded = next(iter(source)).image
    with VideoBackground(str(path), (160, 40)) as background:  # a wide photo first
        for size in ((160, 40), (40, 120), (160, 40)):
            frame = np.zeros((size[1], size[0], 3), np.uint8)
            shown = background.render(frame, np.zeros(frame.shape[:2], np.uint8), time_s=0.0)
            assert np.array_equal(shown, cover(decoded, size)), size


def _gif(path, frames_bgra, duration_ms=100, disposal=2):
    from PIL import Image

    images = [Image.fromarray(cv2.cvtColor(f, cv2.COLOR_BGRA2RGBA), "RGBA") for f in frames_bgra]
    images[0].save(path, save_all=True, append_images=images[1:], duration=duration_ms, loop=0,
                   disposal=disposal)
    return path


def _gif_frames(count=3, size=(64, 48)):
    """Opaque red on the left third, a blue box moving 10 px a frame, the rest transparent."""
    frames = []
    for i in range(count):
        bgra = np.zeros((size[1], size[0], 4), np.uint8)
        bgra[:, : size[0] // 3] = (0, 0, 255, 255)
        bgra[10:20, 25 + 10 * i: 35 + 10 * i] = (255, 0, 0, 255)
        frames.append(bgra)
    return frames


def test_transparent_gif_plays_over_the_blurred_frame(tmp_path):
    """An animated GIF with transparency plays, each frame laid over the frame's own background
    blurred (as a transparent PNG is); its transparent pixels were shown in a colour of
    FFmpeg's."""
    frames = _gif_frames()
    path = _gif(tmp_path / "sticker.gif", frames)
    # three frames, then the first again
    _assert_plays_over_the_blurred_frame(path, (0.0, 0.11, 0.21, 0.31), frames + frames[:1])


def _assert_plays_over_the_blurred_frame(path, times_s, frames_bgra):
    """The GIF at ``path``, a transparent background, shows at each of ``times_s`` the one of
    ``frames_bgra`` that goes with it, laid over a frame with nobody in it blurred by 9 px."""
    frame, _ = _frame_and_alpha(48, 64)
    no_person = np.zeros((48, 64), np.uint8)
    blurred = blur_background(frame, no_person, 9).astype(float)
    with make_background(CompositeOptions(background=str(path), blur_px=9), (64, 48)) as background:
        assert background.transparent and "over the blurred frame" in background.description
        shown = [background.render(frame, no_person, time_s=t) for t in times_s]
    for result, bgra in zip(shown, frames_bgra, strict=True):
        weight = bgra[:, :, 3:] / 255.0
        expected = bgra[:, :, :3] * weight + blurred * (1 - weight)
        assert np.abs(result - expected).max() <= 2.0


def test_a_gif_whose_first_frame_is_opaque_plays_its_later_transparency(tmp_path):
    """A GIF whose first frame is opaque and whose later frames are transparent in places
    (each restored to the background, disposal 2) played opaque: whether it was transparent was
    told from its first frame, and FFmpeg's colour for a transparent pixel showed. Its frames
    with transparency lie over the blurred room now, as a transparent first frame's do; its
    opaque frame is shown as it is, and so it is again when the GIF loops.

    Frame 1 is drawn where the opaque frame 0 was restored to the background (disposal 2), which
    FFmpeg (as Pillow) fills with the GIF's background colour: it showed there, opaque, where
    browsers leave the area transparent. It is transparent there now, as in a browser."""
    frames = _gif_frames()
    frames[0][:, :, 3] = 255
    frames[0][:, 64 // 3:, :3] = (0, 255, 0)  # green where the later frames are transparent
    path = _gif(tmp_path / "opaque_then_sticker.gif", frames)
    # the three frames, then the first two again as the GIF loops
    _assert_plays_over_the_blurred_frame(path, (0.0, 0.11, 0.21, 0.31, 0.41),
                                         frames + frames[:2])


def test_what_a_gif_restored_to_its_background_colour_needs(tmp_path):
    """Read from the blocks: a GIF whose frame that names no transparent colour is restored to
    the background (disposal 2) before a frame that leaves some of that area to show is decoded
    a second time with another background colour (only the screen's background index differs),
    to tell the background's pixels from the frames'; not one whose frames name a transparent
    colour (FFmpeg clears those to transparent), nor one whose next frame covers the area
    restored without a transparent colour (nothing shows: an opaque animation, which is not
    transparent either), nor one that leaves each frame for the next to draw over."""
    from portrait.capture.gif import gif_may_be_transparent, with_other_background

    kinds = _gif_kinds(tmp_path)
    full = [bgra.copy() for bgra in _gif_frames()]
    for bgra in full:
        bgra[:, :, 3] = 255
    kinds["opaque_restored"] = _gif(tmp_path / "opaque_restored.gif", full, disposal=2)
    needs = {name for name, path in kinds.items() if with_other_background(path.read_bytes())}
    assert needs == {"opaque_first2"}
    data = kinds["opaque_first2"].read_bytes()
    other = with_other_background(data)
    assert len(other) == len(data)
    assert [i for i, (a, b) in enumerate(zip(data, other)) if a != b] == [11]
    assert not gif_may_be_transparent(kinds["opaque_restored"])
    assert with_other_background(b"GIF89a") is None and with_other_background(b"") is None


def _gif_kinds(tmp_path) -> dict:
    """GIFs written by Pillow, by name: a first frame transparent in places or opaque, then two
    with transparency, for each disposal; and an opaque animation, which Pillow writes with a
    transparent colour in its later frames (only what changed is drawn)."""
    kinds = {}
    for disposal in range(4):
        sticker = _gif_frames()
        kinds[f"sticker{disposal}"] = _gif(tmp_path / f"sticker{disposal}.gif", sticker,
                                           disposal=disposal)
        opaque_first = _gif_frames()
        opaque_first[0][:, :, 3] = 255
        kinds[f"opaque_first{disposal}"] = _gif(tmp_path / f"opaque_first{disposal}.gif",
                                                opaque_first, disposal=disposal)
    opaque = _gif_frames()
    for bgra in opaque:
        bgra[:, :, 3] = 255
    kinds["opaque"] = _gif(tmp_path / "opaque.gif", opaque, disposal=1)
    return kinds


def test_whether_a_gif_may_be_transparent_is_told_from_its_blocks(tmp_path):
    """Without decoding a pixel: a GIF whose first frame is transparent may be, and one whose
    later frames are restored to a transparent background (disposal 2); one that leaves each
    frame for the next to draw over (0, 1) or restores the one before (3) may not, since its
    first frame is opaque; nor may an opaque animation whose later frames draw only what
    changed (through a transparent colour), nor a file that is not a GIF."""
    import av

    from portrait.capture.gif import gif_may_be_transparent

    kinds = _gif_kinds(tmp_path)
    told = {name: gif_may_be_transparent(path) for name, path in kinds.items()}
    assert told == {"sticker0": True, "sticker1": True, "sticker2": True, "sticker3": True,
                    "opaque_first0": False, "opaque_first1": False, "opaque_first2": True,
                    "opaque_first3": False, "opaque": False}
    for name, path in kinds.items():  # never opaque where FFmpeg decodes a transparent pixel
        with av.open(str(path)) as container:
            alpha = [picture.to_ndarray(format="bgra")[:, :, 3].min()
                     for picture in container.decode(container.streams.video[0])]
        assert told[name] or min(alpha) == 255, (name, alpha)
    cut = tmp_path / "cut.gif"
    cut.write_bytes(kinds["opaque_first2"].read_bytes()[:-60])  # in its last frame's pixels
    assert gif_may_be_transparent(cut)  # the frames before the cut are enough to tell
    (tmp_path / "empty.gif").write_bytes(b"")
    cv2.imwrite(str(tmp_path / "image.png"), np.zeros((4, 4, 4), np.uint8))
    for other in ("empty.gif", "image.png", "missing.gif"):
        assert not gif_may_be_transparent(tmp_path / other), other


def test_a_gif_without_a_global_palette_may_be_transparent(tmp_path):
    """FFmpeg starts such a GIF from a transparent screen: a frame smaller than the screen (a
    2x2 frame on 4x4, its own palette) leaves the rest transparent, which must be told."""
    import av

    from portrait.capture.gif import gif_may_be_transparent, with_other_background

    def codes(values, bits=3):  # LZW codes, least significant bit first
        number = sum(code << (bits * i) for i, code in enumerate(values))
        return number.to_bytes((bits * len(values) + 7) // 8, "little")

    screen = b"GIF89a" + (4).to_bytes(2, "little") * 2 + bytes([0x00, 0, 0])  # no palette
    frame = (b"\x2c" + bytes(4) + (2).to_bytes(2, "little") * 2 + bytes([0x80])
             + bytes([255, 0, 0, 0, 255, 0]))  # at (0, 0), 2x2, a palette of its own
    pixels = codes([4, 0, 4, 0, 4, 1, 4, 1, 5])  # a clear code before each: no table growth
    path = tmp_path / "no_palette.gif"
    path.write_bytes(screen + frame + bytes([2, len(pixels)]) + pixels + b"\x00\x3b")
    with av.open(str(path)) as container:
        (picture,) = container.decode(container.streams.video[0])
        alpha = picture.to_ndarray(format="bgra")[:, :, 3]
    assert alpha[:2, :2].min() == 255 and alpha[2:, :].max() == 0  # what this is about
    assert gif_may_be_transparent(path)
    # FFmpeg's background is transparent already: no second decoding to tell it apart
    assert with_other_background(path.read_bytes()) is None


def test_opaque_gif_plays_as_a_video(tmp_path):
    frames = _gif_frames()
    for bgra in frames:
        bgra[:, :, 3] = 255
    path = _gif(tmp_path / "opaque.gif", frames)
    frame, _ = _frame_and_alpha(48, 64)
    with make_background(CompositeOptions(background=str(path)), (64, 48)) as background:
        assert not background.transparent and "blur" not in background.description
        shown = [background.render(frame, np.zeros((48, 64), np.uint8), time_s=t)
                 for t in (0.0, 0.11, 0.21)]
    for result, bgra in zip(shown, frames):
        assert np.abs(result.astype(int) - bgra[:, :, :3]).max() <= 2


# --- videos with an alpha channel -------------------------------------------------------------

# (file name, encoder, pixel format, encoder options): each codec whose files keep alpha, as
# FFmpeg writes them (VP8/VP9 in WebM beside the picture, the others in the pixel format).
ALPHA_VIDEOS = [
    ("vp9.webm", "libvpx-vp9", "yuva420p", {"lossless": "1"}),
    ("vp8.webm", "libvpx", "yuva420p", {"auto-alt-ref": "0", "crf": "4", "b": "4M"}),
    ("prores4444.mov", "prores_ks", "yuva444p10le", {"profile": "4444"}),
    ("png.mov", "png", "rgba", {}),
    ("qtrle.mov", "qtrle", "argb", {}),
]
ALPHA_DECODERS = {"libvpx-vp9": "libvpx-vp9", "libvpx": "libvpx", "prores_ks": "prores"}


def _alpha_frames(count=3, size=(64, 48)):
    """BGRA: opaque red on the left quarter, half-transparent blue on the next, the right half
    transparent, its colour a green that must never show; frame 1 wholly opaque (grey), the
    others' opaque part a little brighter each frame."""
    w, h = size
    frames = []
    for i in range(count):
        bgra = np.zeros((h, w, 4), np.uint8)
        bgra[:, :] = (0, 255, 0, 0)
        bgra[:, : w // 4] = (0, 0, 160 + 40 * i, 255)
        bgra[:, w // 4: w // 2] = (255, 0, 0, 128)
        if i == 1:
            bgra[:, :] = (128, 128, 128, 255)
        frames.append(bgra)
    return frames


def _alpha_video(path, encoder, pix_fmt, options, frames_bgra, fps=10, rotation=0):
    """Write ``frames_bgra`` with PyAV's ``encoder``, keeping their alpha; skip where the
    installed PyAV's FFmpeg cannot write or read it back."""
    import av

    decoder = ALPHA_DECODERS.get(encoder, encoder)
    missing = {encoder, decoder} - set(av.codecs_available)
    if missing:
        pytest.skip(f"this PyAV's FFmpeg has no {' or '.join(sorted(missing))}")
    height, width = frames_bgra[0].shape[:2]
    with av.open(str(path), "w") as container:
        stream = container.add_stream(encoder, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        stream.options = options
        if rotation:
            stream.set_display_rotation(rotation)
        for bgra in frames_bgra:
            for packet in stream.encode(av.VideoFrame.from_ndarray(bgra, format="bgra")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.mark.parametrize("name, encoder, pix_fmt, options", ALPHA_VIDEOS,
                         ids=[video[0] for video in ALPHA_VIDEOS])
def test_a_video_with_alpha_plays_over_the_blurred_frame(tmp_path, name, encoder, pix_fmt,
                                                         options):
    """A background video with an alpha channel played opaque, its transparent pixels in
    whatever colour they held (VP8/VP9's alpha dropped by FFmpeg's own decoder): each of its
    frames with transparency lies over the room blurred now, as a transparent GIF's do; its
    opaque frame is shown as it is, and so it is again as the video loops."""
    frames = _alpha_frames()
    path = _alpha_video(tmp_path / name, encoder, pix_fmt, options, frames)
    frame, _ = _frame_and_alpha(48, 64)
    no_person = np.zeros((48, 64), np.uint8)
    blurred = blur_background(frame, no_person, 9).astype(float)
    with make_background(CompositeOptions(background=str(path), blur_px=9), (64, 48)) as background:
        assert background.transparent and "over the blurred frame" in background.description
        # three frames, then the first two again as the video loops
        shown = [background.render(frame, no_person, time_s=t) for t in (0, 0.1, 0.2, 0.3, 0.4)]
    for result, bgra in zip(shown, frames + frames[:2], strict=True):
        _assert_over(result, bgra, blurred)


def _assert_over(result, bgra, blurred):
    """``result`` is ``bgra`` (of :func:`_alpha_frames`) laid over ``blurred``, within what
    4:2:0 colour and lossy VP8 leave within 2 px of the quarters' edges (vertical chroma
    siting, turned); never the transparent green."""
    weight = bgra[:, :, 3:] / 255.0
    error = np.abs(result - (bgra[:, :, :3] * weight + blurred * (1 - weight)))
    edges = np.zeros(error.shape[1], bool)
    edges[[14, 15, 16, 17, 30, 31, 32, 33]] = True
    assert error[:, ~edges].max() <= 3.0, error[:, ~edges].max()
    assert error[:, edges].max() <= 40.0, error[:, edges].max()


@pytest.mark.parametrize("name, encoder, pix_fmt, options", ALPHA_VIDEOS,
                         ids=[video[0] for video in ALPHA_VIDEOS])
def test_a_frame_s_alpha_is_read_in_its_own_plane_where_it_has_an_8_bit_one(
        tmp_path, name, encoder, pix_fmt, options):
    """A VP8/VP9 frame as libvpx decodes it (yuva420p) keeps its alpha in a plane of its own:
    an opaque one is told from it, not converted whole first (a 4K frame's conversion cost more
    than showing it); the plane holds the alpha the conversion gives, in a frame with
    transparency and an opaque one alike. ProRes 4444's 10-bit alpha and packed RGBA have
    none such, and are told from the converted frame. Either way, the frame with
    transparency comes as BGRA, and the opaque one (frame 1) as ``None``."""
    from portrait.capture.scaled import ScaledVideo
    from portrait.composite import _alpha_plane, _transparent_bgra

    path = _alpha_video(tmp_path / name, encoder, pix_fmt, options, _alpha_frames())
    with ScaledVideo(path) as video:
        pictures = [frame.image for frame in video]
    assert len(pictures) == 3
    for index, picture in enumerate(pictures):
        converted = picture.to_ndarray(format="bgra")
        plane = _alpha_plane(picture)
        if picture.format.name == "yuva420p":
            assert plane is not None and np.array_equal(plane, converted[:, :, 3])
        else:
            assert plane is None, picture.format.name
        shown = _transparent_bgra(picture)
        if index == 1:
            assert shown is None
        else:
            assert shown is not None and np.array_equal(shown, converted)


def test_a_vp9_video_with_alpha_is_shown_upright(tmp_path):
    """A VP9 video with alpha is decoded by libvpx, which is not told the file's display
    rotation: it is turned as the stream's own decoder would turn it (90 degrees
    counter-clockwise here), as a video without alpha is."""
    frames = [np.ascontiguousarray(np.rot90(bgra, -1)) for bgra in _alpha_frames()]  # 48x64
    path = _alpha_video(tmp_path / "turned.webm", *ALPHA_VIDEOS[0][1:], frames, rotation=90)
    frame, _ = _frame_and_alpha(48, 64)
    no_person = np.zeros((48, 64), np.uint8)
    blurred = blur_background(frame, no_person, 9).astype(float)
    with make_background(CompositeOptions(background=str(path), blur_px=9), (64, 48)) as background:
        result = background.render(frame, no_person, time_s=0.0)
    _assert_over(result, _alpha_frames()[0], blurred)


def test_what_a_video_s_alpha_needs():
    """VP8/VP9 alpha (WebM's AlphaMode) needs libvpx's decoders, and where this FFmpeg has none
    the video plays opaque, saying so in one line with what to do; alpha in the pixel format
    needs the stream's own decoder; a GIF's transparency is told from its blocks, not here."""
    from portrait.capture.alpha import NO_ALPHA, VideoAlpha, opaque_note, stream_alpha

    everything = {"libvpx", "libvpx-vp9", "vp9", "vp8", "prores"}
    assert stream_alpha("vp9", "yuv420p", "1", everything) == VideoAlpha(True, "libvpx-vp9")
    assert stream_alpha("vp8", "yuv420p", "1", everything) == VideoAlpha(True, "libvpx")
    lost = stream_alpha("vp9", "yuv420p", "1", everything - {"libvpx-vp9"})
    assert lost == VideoAlpha(True, missing="libvpx-vp9") and not lost.decodable
    assert stream_alpha("vp9", "yuv420p", None, everything) == NO_ALPHA
    assert stream_alpha("prores", "yuva444p12le", None, everything).decodable
    assert stream_alpha("qtrle", "argb", None, everything) == VideoAlpha(True)
    for codec, pix_fmt in (("h264", "yuv420p"), ("qtrle", "rgb24"), ("gif", "bgra"),
                           ("h264", None), ("h264", "no-such-format")):
        assert stream_alpha(codec, pix_fmt, None, everything) == NO_ALPHA, (codec, pix_fmt)
    note = opaque_note("loop.webm", lost)
    assert "\n" not in note
    for words in ("'loop.webm'", "alpha channel", "libvpx-vp9", "shown opaque", "ProRes 4444"):
        assert words in note, words


def test_a_video_without_alpha_needs_no_other_decoder(tmp_path):
    """A VP9 WebM without alpha (no AlphaMode), an MJPEG AVI, a GIF and a file that is no video
    have no alpha to decode: each plays through its stream's own decoder."""
    from portrait.capture.alpha import NO_ALPHA, video_alpha

    opaque = [bgra.copy() for bgra in _alpha_frames()]
    for bgra in opaque:
        bgra[:, :, 3] = 255
    plain = _alpha_video(tmp_path / "plain.webm", "libvpx-vp9", "yuv420p", {}, opaque)
    sticker = _gif(tmp_path / "sticker.gif", _gif_frames())
    (tmp_path / "notes.webm").write_text("not a video")
    for path in (plain, sticker, tmp_path / "notes.webm", tmp_path / "missing.webm"):
        assert video_alpha(path) == NO_ALPHA, path
    with make_background(CompositeOptions(background=str(plain)), (64, 48)) as background:
        assert not background.transparent


@pytest.mark.parametrize("moved, disposal, cleared", [(0, 1, {0, 1, 2}), (1, 2, {1})])
def test_a_gif_frame_drawn_beside_the_area_restored_leaves_it_transparent(tmp_path, moved,
                                                                          disposal, cleared):
    """An opaque GIF written by Pillow whose first or second frame is moved 8 px right: the 8
    columns it leaves of the screen (which FFmpeg fills with the background colour before the
    first frame; the later frames, Pillow's deltas, draw over what is there, disposal 1) or of
    the frame before, restored to the background (disposal 2), show the background colour in
    FFmpeg's frames, and are transparent, as browsers show them, in the reader's; the rest is
    as FFmpeg decodes it. Told from the blocks too: the GIF may be transparent."""
    import av

    from portrait.capture.gif import gif_may_be_transparent
    from portrait.capture.scaled import ScaledVideo

    frames = [bgra.copy() for bgra in _gif_frames()]
    for bgra in frames:
        bgra[:, :, 3] = 255
    data = bytearray(_gif(tmp_path / "opaque.gif", frames, disposal=disposal).read_bytes())
    whole = b"\x2c\x00\x00\x00\x00\x40\x00\x30\x00"  # an image at (0, 0), 64x48
    at = data.index(whole)
    for _ in range(moved):
        at = data.index(whole, at + 1)
    data[at + 1] = 8  # its left edge
    path = tmp_path / "moved.gif"
    path.write_bytes(bytes(data))
    assert gif_may_be_transparent(path)
    with av.open(str(path)) as container:
        ffmpeg = [picture.to_ndarray(format="bgra") for picture in container.decode(video=0)]
    with ScaledVideo(path) as video:
        shown = [frame.image.to_ndarray(format="bgra") for frame in video]
    assert len(shown) == len(ffmpeg) == 3
    assert np.array_equal(shown[moved][:, 8:, :3], frames[moved][:, :56, :3])
    for index in range(3):
        assert np.array_equal(shown[index][:, 8:], ffmpeg[index][:, 8:]), index
        if index in cleared:
            assert ffmpeg[index][:, :8, 3].min() == 255  # the GIF's background colour
            assert shown[index][:, :8, 3].max() == 0, index
        else:
            assert np.array_equal(shown[index], ffmpeg[index]), index


def test_a_gif_image_without_a_graphic_control_is_not_restored_by_the_one_before(tmp_path):
    """An opaque GIF restored to the background after each frame (disposal 2), its second
    image without a graphic control of its own (so kept, disposal 0, as FFmpeg reads it: a
    graphic control applies to the next image only) and its third moved 8 px right: the
    columns the third leaves show the second's pixels, opaque, in every frame FFmpeg decodes,
    and the blocks say it may not be transparent."""
    import av

    from portrait.capture.gif import gif_frames, gif_may_be_transparent

    frames = [bgra.copy() for bgra in _gif_frames()]
    for bgra in frames:
        bgra[:, :, 3] = 255
    data = bytearray(_gif(tmp_path / "opaque.gif", frames, disposal=2).read_bytes())
    whole = b"\x2c\x00\x00\x00\x00\x40\x00\x30\x00"  # an image at (0, 0), 64x48
    second = data.index(whole, data.index(whole) + 1)
    assert data[second - 8:second - 5] == b"\x21\xf9\x04"  # its graphic control
    del data[second - 8:second]
    third = data.index(whole, data.index(whole, data.index(whole) + 1) + 1)
    data[third + 1] = 8  # its left edge
    path = tmp_path / "kept.gif"
    path.write_bytes(bytes(data))
    assert [image.disposal for image in gif_frames(bytes(data))] == [2, 0, 2]
    with av.open(str(path)) as container:
        alpha = [picture.to_ndarray(format="bgra")[:, :, 3].min()
                 for picture in container.decode(video=0)]
    assert alpha == [255, 255, 255]  # what this is about
    assert not gif_may_be_transparent(path)


def test_a_one_colour_gif_leaves_the_screen_around_its_frame_transparent(tmp_path):
    """A black GIF written by Pillow, whose palette is black throughout (Pillow pads it with
    black; the test makes sure), its 64x48 frame 8 px from the left of a 72x48 screen: FFmpeg
    fills the 8 columns with the background colour, black, and the reader leaves them
    transparent, as browsers do. No colour of the palette differs from the background's, so the second
    decoding's background is the index past the palette, which FFmpeg reads as transparent;
    such a GIF was shown opaque, black where a browser shows what is behind it."""
    import av
    from PIL import Image

    from portrait.capture.gif import gif_may_be_transparent, with_other_background
    from portrait.capture.scaled import ScaledVideo

    Image.new("RGB", (64, 48)).save(tmp_path / "black.gif")
    data = bytearray((tmp_path / "black.gif").read_bytes())
    assert data[10] & 0x80 and data[10] & 7 < 7  # a global palette of fewer than 256 colours
    palette_bytes = 3 << ((data[10] & 7) + 1)
    data[13:13 + palette_bytes] = bytes(palette_bytes)  # black throughout, whatever Pillow pads
    data[6] = 72  # the screen's width
    data[data.index(b"\x2c\x00\x00\x00\x00\x40\x00\x30\x00") + 1] = 8  # the frame's left
    path = tmp_path / "moved.gif"
    path.write_bytes(bytes(data))
    assert gif_may_be_transparent(path)
    with av.open(str(path)) as container:
        (ffmpeg,) = [picture.to_ndarray(format="bgra") for picture in container.decode(video=0)]
    with ScaledVideo(path) as video:
        (shown,) = [frame.image.to_ndarray(format="bgra") for frame in video]
    assert ffmpeg[:, :8, 3].min() == 255  # the background colour, what this is about
    assert shown[:, :8, 3].max() == 0
    # With 256 colours, all black, no index names another background: none is made up (a
    # byte holds no 256th), and the GIF plays as FFmpeg draws it.
    full = data[:10] + bytes([data[10] | 7]) + data[11:13] + bytes(768) + data[13 + palette_bytes:]
    path.write_bytes(bytes(full))
    assert with_other_background(bytes(full)) is None
    with ScaledVideo(path) as video:
        (shown,) = [frame.image.to_ndarray(format="bgra") for frame in video]
    assert np.array_equal(shown[:, 8:, :3], ffmpeg[:, 8:, :3])
    assert np.array_equal(shown[:, 8:], ffmpeg[:, 8:]) and shown[:, 8:, 3].min() == 255


def _pictures(tmp_path) -> dict:
    """A background of each kind whose picture is not its own mirror image (the left half
    apart from the right), as a spec for ``--background``."""
    picture = np.full((48, 64, 3), 40, np.uint8)
    picture[:, :32] = (200, 60, 20)
    picture[8:20, 40:60] = (20, 220, 250)  # a "logo" right of centre
    image = tmp_path / "logo.png"
    cv2.imwrite(str(image), picture)
    video = tmp_path / "logo.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for _ in range(2):
        writer.write(picture)
    writer.release()
    return {"blur": "blur", "colour": "#3366cc", "image": str(image), "video": str(video),
            "transparent image": str(_write_rgba(tmp_path / "overlay.png", _overlay_rgba(48, 64))),
            "transparent gif": str(_gif(tmp_path / "overlay.gif", _gif_frames()))}


@pytest.mark.parametrize("kind", ["blur", "colour", "image", "video", "transparent image",
                                  "transparent gif"])
def test_a_mirrored_output_shows_a_background_picture_the_right_way_round(tmp_path, kind):
    """``render(..., mirrored=True)``, flipped as ``--mirror`` then flips it, is the mirrored
    frame over the background: the person and the room (blurred) mirror, a picture behind
    them reads the right way round (its text, a logo), as a call app's own background does.
    With --mirror the picture came out reversed."""
    spec = _pictures(tmp_path)[kind]
    frame, alpha = _frame_and_alpha()
    alpha[:, : W // 4] = 255  # the person off-centre, so that the flip shows
    options = CompositeOptions(background=spec, blur_px=9)
    with make_background(options, (W, H)) as background:
        sent = cv2.flip(background.render(frame, alpha, time_s=0.0, mirrored=True), 1)
    with make_background(options, (W, H)) as background:
        expected = background.render(cv2.flip(frame, 1), cv2.flip(alpha, 1), time_s=0.0)
        reversed_picture = cv2.flip(background.render(frame, alpha, time_s=0.0), 1)
    # within the blur's rounding, which is not mirror-symmetric to the last grey level
    assert np.abs(sent.astype(int) - expected).max() <= 3
    if kind not in ("blur", "colour"):  # what it sent before: the picture reversed
        assert np.abs(reversed_picture.astype(int) - expected).max() > 100


@pytest.mark.parametrize("kind", ["video", "transparent gif"])
def test_a_mirrored_video_background_flips_each_new_frame_once(tmp_path, kind, monkeypatch):
    """Behind a mirrored output a background video's frame is flipped once when it comes, not
    at each render that shows it again: 8 renders at 10 fps over two of its frames (times
    0-0.04 s show its first, 0.1-0.14 s its second) flip twice; they flipped 8 times. Each is
    still the mirrored frame over the picture the right way round (see the test above), the
    second frame's as well."""
    from conftest import write_video
    import portrait.composite as composite_module

    path = (write_video(tmp_path / "moving.avi", 4, fps=10.0) if kind == "video"
            else _gif(tmp_path / "moving.gif", _gif_frames()))  # 100 ms a frame
    flips = []
    real_flipped = composite_module._flipped

    def counted_flipped(made, workspace=None):
        flips.append(type(made).__name__)  # ndarray, or tuple for a frame with transparency
        return real_flipped(made, workspace)

    monkeypatch.setattr(composite_module, "_flipped", counted_flipped)
    frame, alpha = _frame_and_alpha()
    alpha[:, : W // 4] = 255  # the person off-centre, so that the flip shows
    times = [0.0, 0.01, 0.02, 0.03, 0.04, 0.1, 0.12, 0.14]
    options = CompositeOptions(background=str(path), blur_px=9)
    with make_background(options, (W, H)) as background:
        sent = [cv2.flip(background.render(frame, alpha, time_s=t, mirrored=True), 1)
                for t in times]
    assert len(flips) == 2
    with make_background(options, (W, H)) as background:
        expected = [background.render(cv2.flip(frame, 1), cv2.flip(alpha, 1), time_s=t)
                    for t in times]
    assert len(flips) == 2  # not mirrored: no flip
    for shown, wanted in zip(sent, expected):  # within the blur's rounding
        assert np.abs(shown.astype(int) - wanted).max() <= 3
    assert np.abs(expected[0].astype(int) - expected[-1]).max() > 100  # two frames shown


@pytest.mark.parametrize("name, encoder, pix_fmt", [("anamorphic.mp4", "libx264", "yuv420p"),
                                                    ("anamorphic.mov", "prores_ks",
                                                     "yuva444p10le")])
def test_a_background_video_of_non_square_pixels_is_shown_as_players_show_it(tmp_path, name,
                                                                             encoder, pix_fmt):
    """A video whose pixels are not square (DV, HDV, a DVD: here 120x120 stored, shown 160x120
    by its sample aspect ratio of 4:3) is laid in at the shape players show: a circle stays
    round. It was squeezed to the stored shape, the circle 3/4 as wide as high; a video with
    alpha too."""
    from conftest import write_anamorphic_video

    shown = np.zeros((120, 160, 4), np.uint8)
    cv2.circle(shown, (80, 60), 40, (255, 255, 255, 255), -1)
    path = write_anamorphic_video(tmp_path / name, shown, 2, encoder=encoder, pix_fmt=pix_fmt)
    black = np.zeros((120, 160, 3), np.uint8)
    with make_background(CompositeOptions(background=str(path)), (160, 120)) as background:
        assert background.transparent == (pix_fmt == "yuva444p10le")
        result = background.render(black, np.zeros((120, 160), np.uint8), time_s=0.0)
    ys, xs = np.nonzero(result.min(axis=2) > 128)
    width, height = xs.max() - xs.min() + 1, ys.max() - ys.min() + 1
    assert abs(width / height - 1) < 0.06, (width, height)


@pytest.mark.parametrize("rotation, said", [
    (0, "120x120 shown as 160x120"), (90, "120x120 shown as 120x160")])
def test_a_background_video_is_logged_at_the_size_it_is_shown_at(tmp_path, caplog, rotation,
                                                                  said):
    """``-v`` names a background video's size as it is shown (pixels that are not square
    stretched, a rotation turned), with the stored one beside it where they differ: it said
    120x120, the size stored, of a video shown 160x120 (or turned, 120x160). A video stored as
    shown says one size."""
    from conftest import write_anamorphic_video, write_video

    picture = np.zeros((120, 160, 3), np.uint8)
    anamorphic = write_anamorphic_video(tmp_path / "anamorphic.mp4", picture, 2,
                                        rotation=rotation)
    square = write_video(tmp_path / "square.avi", 2, size=(96, 64), fps=10.0)
    caplog.set_level(logging.DEBUG, logger="portrait.capture.scaled")
    caplog.set_level(logging.DEBUG, logger="portrait.composite")
    for path in (anamorphic, square):
        with make_background(CompositeOptions(background=str(path)), (W, H)):
            pass
    lines = [r.getMessage() for r in caplog.records if r.name == "portrait.capture.scaled"
             and r.getMessage().startswith("video '")]
    # once per reader: the next pass, made ready beside the first, may say it again
    assert set(lines) == {f"video '{anamorphic}': {said} at 10 fps",
                          f"video '{square}': 96x64 at 10 fps"}, lines
    # The info line gives the size as an image's does ("image PATH (WxH)"): it gave none.
    assert [(r.levelname, r.getMessage()) for r in caplog.records
            if r.name == "portrait.composite" and r.getMessage().startswith("background:")] == [
        ("INFO", f"background: video {anamorphic} ({said})"),
        ("INFO", f"background: video {square} (96x64)")]


@pytest.mark.parametrize("size, expected", [((640, 480), 21), ((1280, 720), 21), ((720, 1280), 21),
                                            ((1920, 1080), 32), ((3000, 2000), 58),
                                            ((2000, 3000), 58), ((100, 50), 21)])
def test_the_default_blur_grows_with_the_short_side_above_720p(size, expected):
    assert default_blur_px(size) == expected


def test_a_blur_background_without_a_strength_blurs_by_each_frames_size():
    rng = np.random.default_rng(3)
    with make_background(CompositeOptions(background="blur")) as background:
        assert background.blur_px is None
        for (width, height), blur_px in (((640, 480), 21), ((1500, 1000), 29)):
            frame = rng.integers(0, 255, (height, width, 3), np.uint8)
            alpha = np.zeros((height, width), np.uint8)
            np.testing.assert_array_equal(background.render(frame, alpha),
                                          blur_background(frame, alpha, blur_px))



def test_an_out_of_another_type_is_refused():
    frame, alpha = np.zeros((4, 5, 3), np.uint8), np.zeros((4, 5), np.uint8)
    with pytest.raises(ValueError, match=r"^unexpected out: float32 \(4, 5, 3\) != uint8 \(4, 5, 3\)$"):
        composite(frame, alpha, frame, out=np.empty((4, 5, 3), np.float32))
    with make_background(CompositeOptions(background="transparent"), (5, 4)) as background:
        with pytest.raises(ValueError, match=r"^unexpected out: float32 \(4, 5, 4\) != uint8 \(4, 5, 4\)$"):
            background.render(frame, alpha, out=np.empty((4, 5, 4), np.float32))


def test_a_blur_of_0_px_is_the_frame_and_none_is_by_the_frames_size():
    frame, alpha = _frame_and_alpha()
    result = blur_background(frame, alpha, 0)
    np.testing.assert_array_equal(result, frame)
    assert result is not frame
    from portrait.composite import BlurBackground, blur_px_for

    assert blur_px_for(0, frame) == 0 and blur_px_for(9, frame) == 9
    assert blur_px_for(None, np.zeros((1080, 1920, 3), np.uint8)) == 32
    assert BlurBackground().description == "blur by frame size (21 px up to 720p)"
    assert BlurBackground(9).description == "blur 9 px"


@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (3, 2), (2, 40)])
def test_blur_of_a_frame_smaller_than_its_halvings_is_that_frame(shape):
    """A frame under 4 px on a side is halved to no less than 1 px: a flat one stays itself."""
    frame = np.full((*shape, 3), (30, 100, 200), np.uint8)
    np.testing.assert_array_equal(blur_background(frame, np.zeros(shape, np.uint8), 21), frame)


def test_the_blur_reaches_about_blur_px_at_every_strength():
    """At 1/2 and 1/4 resolution the kernel's radius is rounded to whole cells of 2 or 4 px and
    the upscale smears a cell more: from 1 to 44 px the step is blurred from at least
    blur_px - 1 px away and no farther than blur_px + 4."""
    frame = np.zeros((40, 320, 3), np.uint8)
    frame[:, 160:] = 200
    zero = np.zeros((40, 320), np.uint8)
    for blur_px in range(1, 45):
        row = blur_background(frame, zero, blur_px)[20, :160, 0]
        reach = 160 - np.flatnonzero(row).min()
        assert blur_px - 1 <= reach <= blur_px + 4, (blur_px, reach)


def test_room_enclosed_by_the_person_is_blurred_from_the_room_alone():
    """A patch of room (20) between an arm and the body (240, alpha 255), 24 px across: the
    person has no weight in the blur at all, so its middle keeps the room's colour exactly."""
    frame = np.full((120, 200, 3), 240, np.uint8)
    alpha = np.full((120, 200), 255, np.uint8)
    frame[40:64, 100:124] = 20
    alpha[40:64, 100:124] = 0
    blurred = blur_background(frame, alpha, 21)
    np.testing.assert_array_equal(blurred[48:56, 108:116], np.full((8, 8, 3), 20, np.uint8))


def test_where_no_room_is_near_the_blur_falls_back_on_the_frame():
    """A slit of room 2 px wide between two parts of the person does not survive the dilation:
    no room is near it, and the blur there is the frame's own colour, not black."""
    frame = np.full((120, 200, 3), 100, np.uint8)
    alpha = np.full((120, 200), 255, np.uint8)
    alpha[:, 100:102] = 0
    blurred = blur_background(frame, alpha, 21)
    np.testing.assert_array_equal(blurred[:, 100:102], np.full((120, 2, 3), 100, np.uint8))


def test_a_panorama_over_a_photo_longer_than_32767_px_is_the_wholes_centre():
    """A 40000x10 photo enlarged 30 times to cover 300x300: it is too long for OpenCV's
    remapping, so the part in view is scaled, with the pixels bilinear sampling reaches beside
    it: the output is the whole scaled image's centre (made here from a generous slice, the
    same positions), and owns its pixels (not a view keeping the part alive)."""
    rng = np.random.default_rng(11)
    photo = rng.integers(0, 256, (10, 40000, 3), dtype=np.uint8)
    result = cover(photo, (300, 300))
    left = (40000 * 30 - 300) // 2  # of the whole, 1200000x300
    part = cv2.resize(photo[:, 19980:20030], None, fx=30, fy=30, interpolation=cv2.INTER_LINEAR)
    expected = part[:, left - 19980 * 30:left - 19980 * 30 + 300]
    assert np.abs(result.astype(np.int16) - expected).max() <= 1
    assert result.base is None and result.flags["C_CONTIGUOUS"]


def test_a_transparent_image_one_row_high_is_premultiplied_too(tmp_path):
    """Its hidden colour (green under alpha 0) never shows, however few rows it has."""
    bgra = np.zeros((1, 64, 4), np.uint8)
    bgra[:, :] = (0, 255, 0, 0)
    path = tmp_path / "line.png"
    cv2.imwrite(str(path), bgra)
    frame, _ = _frame_and_alpha(48, 64)
    zero = np.zeros((48, 64), np.uint8)
    with make_background(CompositeOptions(background=str(path), blur_px=9), (64, 48)) as background:
        assert background.transparent
        np.testing.assert_array_equal(background.render(frame, zero), blur_background(frame, zero, 9))


def test_a_background_named_with_spaces_around_it_is_that_background():
    with make_background(CompositeOptions(background=" Blur\n"), (W, H)) as background:
        assert background.description.startswith("blur ")
    with make_background(CompositeOptions(background="  #00FF80 "), (W, H)) as background:
        assert background.bgr == (128, 255, 0)
    from portrait.composite import parse_colour

    assert parse_colour("\t#102030 ") == (0x30, 0x20, 0x10)


def test_an_image_file_of_another_name_is_an_image_background(tmp_path, image_path):
    """What OpenCV reads as an image (a PNG named .bg) is an image background, not a video."""
    path = tmp_path / "wall.bg"
    path.write_bytes(image_path.read_bytes())
    with make_background(CompositeOptions(background=str(path)), (W, H)) as background:
        assert background.description.startswith(f"image {path} (300x100)")
        result = background.render(np.zeros((H, W, 3), np.uint8), np.zeros((H, W), np.uint8))
    np.testing.assert_array_equal(result, cover(cv2.imread(str(image_path)), (W, H)))
