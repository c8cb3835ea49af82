"""Camera conditions for the suite's clips: each remake checked against hand-computed values, and
stillness judged on the scene, not on the camera's noise."""

import numpy as np

from conftest import write_video
from portrait.training.conditions import (
    CAMERA_CONDITIONS,
    CameraCondition,
    dim_room,
    soft_sensor,
    squeezed_stream,
    wide_webcam,
    window_behind,
)


def test_dim_room_is_a_third_of_the_light_with_fresh_noise_each_frame():
    image = np.full((120, 160, 3), 200, np.uint8)
    first, again, second = dim_room(image, 0), dim_room(image, 0), dim_room(image, 1)
    assert first.dtype == np.uint8 and first.shape == image.shape
    assert abs(first.mean() - 60.0) < 0.3  # 200 x 0.3
    assert 3.5 < first.astype(np.float32).std() < 4.5  # the noise's standard deviation, 4
    assert np.array_equal(first, again)  # the same frame gives the same picture
    assert not np.array_equal(first, second)  # the next frame's noise differs


def test_dim_room_noise_on_black_stays_dark():
    """Noise below black is clipped to black, not wrapped to white: on a black frame the
    picture is the positive half of the noise (mean sd * 0.399, 1.6 grey levels), no speckle."""
    dark = dim_room(np.zeros((120, 160, 3), np.uint8), 0)
    assert dark.max() < 30  # five standard deviations; a wrapped value would be near 255
    assert abs(dark.mean() - 4.0 / np.sqrt(2 * np.pi)) < 0.1


def test_window_behind_scales_and_clips():
    image = np.array([[[0, 100, 200]]], np.uint8)
    assert window_behind(image, 0).tolist() == [[[0, 170, 255]]]


def test_soft_sensor_loses_one_pixel_detail_and_keeps_the_size():
    checker = (np.indices((90, 120)).sum(axis=0) % 2 * 255).astype(np.uint8)
    image = np.dstack([checker] * 3)
    soft = soft_sensor(image, 0)
    assert soft.shape == image.shape
    assert image.std() > 127 and abs(soft.mean() - 127.5) < 2 and soft.std() < 10  # near grey


def _stripes(width_px: int, axis: int, shape=(90, 120)) -> np.ndarray:
    """Black and white stripes ``width_px`` wide, varying along ``axis`` (1: vertical stripes)."""
    line = (np.arange(shape[axis]) // width_px % 2 * 255).astype(np.uint8)
    plane = np.broadcast_to(line if axis == 1 else line[:, None], shape)
    return np.dstack([plane] * 3)


def test_soft_sensor_keeps_three_pixel_detail_and_loses_two_pixel_detail_both_ways():
    """A third of the resolution in width and in height (the frame is not square, so swapped
    sides would show): 3-pixel stripes keep most of their contrast, 2-pixel ones lose most."""
    full_contrast = 127.5  # the standard deviation of black and white stripes
    for axis in (0, 1):
        kept = soft_sensor(_stripes(3, axis), 0).std()
        lost = soft_sensor(_stripes(2, axis), 0).std()
        assert kept > 0.6 * full_contrast, (axis, kept)
        assert lost < 0.35 * full_contrast, (axis, lost)


def test_squeezed_stream_is_jpeg_at_quality_20():
    """The row says "JPEG q20": the delivered picture is the frame through OpenCV's JPEG codec
    at that quality, not a gentler one."""
    import cv2

    image = np.random.default_rng(2).integers(0, 256, (64, 96, 3), np.uint8)
    image = cv2.GaussianBlur(image, (0, 0), 1.5)
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 20])
    assert ok
    assert np.array_equal(squeezed_stream(image, 0), cv2.imdecode(data, cv2.IMREAD_COLOR))


def test_squeezed_stream_changes_the_picture_a_little():
    ramp = np.tile(np.linspace(0, 255, 160, dtype=np.float32), (120, 1))
    image = np.dstack([ramp, ramp[::-1], np.full_like(ramp, 90)]).astype(np.uint8)
    squeezed = squeezed_stream(image, 0)
    error = np.abs(squeezed.astype(np.int16) - image).mean()
    assert squeezed.shape == image.shape and 0.1 < error < 10


def test_wide_webcam_keeps_the_centre_band_at_720p():
    image = np.zeros((480, 640, 3), np.uint8)
    image[:60] = (0, 0, 255)  # cut: above the 360-row band
    image[60:420] = (0, 255, 0)  # kept
    image[420:] = (255, 0, 0)  # cut
    wide = wide_webcam(image)
    assert wide.shape == (720, 1280, 3)
    assert np.all(wide == (0, 255, 0))


def test_wide_webcam_keeps_every_row_of_a_frame_as_wide_as_16_9_or_wider():
    """A frame a little short of 16:9 (1280x718) has no taller band to cut: all its rows are
    kept, its first row at the top and its last at the bottom."""
    image = np.full((718, 1280, 3), 90, np.uint8)
    image[0] = (255, 255, 255)
    image[-1] = (0, 0, 255)
    wide = wide_webcam(image)
    assert wide.shape == (720, 1280, 3)
    assert np.all(wide[0] == 255) and np.all(wide[-1] == (0, 0, 255))
    assert np.all(wide[360] == 90)


def test_a_condition_gives_the_framed_scene_and_the_delivered_picture():
    image = np.full((480, 640, 3), 100, np.uint8)
    framed, delivered = CameraCondition("both", wide_webcam, window_behind).apply(image, 3)
    assert framed.shape == delivered.shape == (720, 1280, 3)
    assert np.all(framed == 100) and np.all(delivered == 170)
    framed, delivered = CameraCondition("as filmed").apply(image, 0)
    assert framed is image and delivered is image
    assert len({c.name for c in CAMERA_CONDITIONS}) == len(CAMERA_CONDITIONS) == 5


def test_a_still_scene_stays_still_under_a_noisy_camera(tmp_path, brightness_model):
    """The dim room's noise changes every frame by about 3 grey levels, more than the still
    threshold (1.5); stillness is judged on the scene, so every pair of a still clip counts."""
    import cv2

    from portrait.options import SegmentOptions
    from portrait.training.suite import score_clip

    path = tmp_path / "still.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, (64, 64))
    image = np.full((64, 64, 3), 40, np.uint8)
    image[16:48, 20:44] = 230
    for _ in range(8):
        writer.write(image)
    writer.release()
    segment = SegmentOptions(model=str(brightness_model))
    dim = next(c for c in CAMERA_CONDITIONS if c.photometric is dim_room)
    score = score_clip(segment, path, condition=dim)
    assert score.frames == 8 and len(score.flickers) == 7
    # The moving square of write_video is never still, under any condition.
    moving = score_clip(segment, write_video(tmp_path / "moving.avi", 8, size=(64, 64)), condition=dim)
    assert moving.frames == 8 and len(moving.flickers) == 0
