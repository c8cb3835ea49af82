"""portrait.scratch: the helpers the per-frame stages share."""

import numpy as np

from portrait.scratch import buffer, fit_inside, outside


def test_the_strips_outside_a_box_cover_the_rest_of_the_frame_once():
    for box in [(3, 2, 7, 5), (0, 0, 10, 6), (0, 2, 10, 4), (9, 5, 10, 6)]:
        x0, y0, x1, y1 = box
        count = np.zeros((6, 10), np.int32)
        for strip in outside(*box):
            count[strip] += 1
        inside = np.zeros((6, 10), bool)
        inside[y0:y1, x0:x1] = True
        assert np.all(count[inside] == 0) and np.all(count[~inside] == 1), box


def test_a_buffer_is_kept_until_the_shape_changes():
    workspace = {}
    first = buffer(workspace, "a", (4, 5))
    assert first.dtype == np.uint8 and buffer(workspace, "a", (4, 5)) is first
    wider = buffer(workspace, "a", (4, 6), np.float32)
    assert wider is not first and wider.shape == (4, 6) and wider.dtype == np.float32


def test_an_image_fitted_inside_a_box_keeps_its_aspect_and_is_centred_both_ways():
    """Bars share the spare room equally: left and right for a narrower image, top and bottom
    for a wider one (x, y, width, height worked out by hand)."""
    assert fit_inside((640, 480), (1280, 720)) == (160, 0, 960, 720)  # 4:3 in 16:9
    assert fit_inside((1280, 720), (640, 480)) == (0, 60, 640, 360)  # 16:9 in 4:3
    assert fit_inside((100, 50), (100, 50)) == (0, 0, 100, 50)
    assert fit_inside((3, 1000), (100, 100)) == (49, 0, 1, 100)  # never narrower than a pixel
