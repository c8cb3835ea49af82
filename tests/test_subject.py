"""Tests for portrait.subject: small regions apart from the person go, the person and anyone
their size stay, a hand split from its arm stays, and a region near the bar does not blink."""

import numpy as np
import pytest

from portrait.options import SubjectOptions
from portrait.subject import SubjectSelector, select_subject

H, W = 90, 160  # a 16:9 model-resolution probability


def scene(*boxes: tuple[int, int, int, int], value: float = 0.95) -> np.ndarray:
    """A probability map: 0.02 background, ``value`` inside each (y0, y1, x0, x1) box."""
    prob = np.full((H, W), 0.02, np.float32)
    for y0, y1, x0, x1 in boxes:
        prob[y0:y1, x0:x1] = value
    return prob


PERSON = (20, 90, 60, 100)  # 70 x 40 = 2,800 px
HEAD_AT_EDGE = (10, 30, 150, 160)  # 20 x 10 = 200 px, 0.07 of the person, 50 px away
NEIGHBOUR = (30, 90, 5, 35)  # 60 x 30 = 1,800 px, 0.64 of the person: a second participant


def test_a_small_region_apart_from_the_person_is_dropped():
    prob = scene(PERSON, HEAD_AT_EDGE)
    out, kept = select_subject(prob, None, SubjectOptions())
    assert out[15, 155] == 0.0  # the bystander's head is gone
    np.testing.assert_array_equal(out[PERSON[0]:PERSON[1], PERSON[2]:PERSON[3]], np.float32(0.95))
    assert kept[50, 80] and not kept[15, 155]
    assert prob[15, 155] == pytest.approx(0.95)  # the input is not modified


def test_the_region_goes_with_its_soft_fringe():
    prob = scene(PERSON, HEAD_AT_EDGE)
    prob[9, 150:160] = 0.3  # a fringe above the head, below 0.5 but part of its region
    out, _ = select_subject(prob, None, SubjectOptions())
    assert out[9, 155] == 0.0
    assert out[0, 0] == pytest.approx(0.02)  # the background is left as it is


def test_a_second_person_of_similar_size_stays():
    prob = scene(PERSON, NEIGHBOUR, HEAD_AT_EDGE)
    out, _ = select_subject(prob, None, SubjectOptions())
    assert out[60, 20] == pytest.approx(0.95)
    assert out[15, 155] == 0.0


def test_a_small_region_near_the_person_stays():
    hand = (20, 28, 104, 110)  # 48 px, 4 px right of the person: a hand split from its arm
    out, _ = select_subject(scene(PERSON, hand), None, SubjectOptions())
    assert out[24, 107] == pytest.approx(0.95)
    # Beyond the margin (5 % of 160 px = 8 px) the same hand is dropped.
    far = (20, 28, 120, 126)
    out, _ = select_subject(scene(PERSON, far), None, SubjectOptions())
    assert out[24, 123] == 0.0


def test_nothing_changes_with_one_region_or_when_off():
    prob = scene(PERSON)
    out, _ = select_subject(prob, None, SubjectOptions())
    assert out is prob
    both = scene(PERSON, HEAD_AT_EDGE)
    out, kept = select_subject(both, None, SubjectOptions(enabled=False))
    assert out is both and kept is None


def test_only_faint_regions_are_left_alone():
    prob = scene((10, 20, 10, 20), (50, 60, 100, 140), value=0.4)  # nothing above 0.5
    out, _ = select_subject(prob, None, SubjectOptions())
    assert out is prob


def test_hysteresis_keeps_a_region_near_the_bar_steady():
    # A region at 0.15 of the person: below the bar of 0.2 when new, above half of it once kept.
    region = (0, 14, 130, 160)  # 14 x 30 = 420 px = 0.15 x 2,800
    prob = scene(PERSON, region)
    out, _ = select_subject(prob, None, SubjectOptions())
    assert out[5, 140] == 0.0  # new and small: dropped
    bigger = scene(PERSON, (0, 20, 130, 160))  # 600 px = 0.21: kept
    selector = SubjectSelector(SubjectOptions())
    assert selector(bigger)[5, 140] == pytest.approx(0.95)
    # It shrinks back to 0.15 of the person: it was kept, so it stays instead of blinking out.
    assert selector(prob)[5, 140] == pytest.approx(0.95)
    selector.reset()
    assert selector(prob)[5, 140] == 0.0


def test_a_region_of_exactly_the_bar_is_kept():
    # "at least min_ratio times the largest": 14 x 40 = 560 px = 0.2 x 2,800, 20 px away.
    out, _ = select_subject(scene(PERSON, (0, 14, 120, 160)), None, SubjectOptions())
    assert out[5, 140] == pytest.approx(0.95)
    # one pixel short of it is dropped
    prob = scene(PERSON, (0, 14, 120, 160))
    prob[0, 120] = 0.02
    out, _ = select_subject(prob, None, SubjectOptions())
    assert out[5, 140] == 0.0


def test_a_large_faint_region_does_not_outweigh_the_person():
    """Only a region's pixels above 0.5 count: a wide haze the model is unsure of (0.4, 5,400 px)
    is no subject, and the person (1,000 px) beside it stays."""
    person = (40, 90, 70, 90)  # 50 x 20 = 1,000 px, 10 px right of the haze
    prob = scene((0, 90, 0, 60), value=0.4)
    prob[person[0]:person[1], person[2]:person[3]] = 0.95
    out, _ = select_subject(prob, None, SubjectOptions())
    np.testing.assert_array_equal(out[40:90, 70:90], np.float32(0.95))


def test_a_new_frame_size_starts_the_choice_afresh():
    selector = SubjectSelector(SubjectOptions())
    selector(scene(PERSON, HEAD_AT_EDGE))
    small = np.full((45, 80), 0.02, np.float32)  # the camera switched to a smaller mode
    small[10:45, 30:50] = 0.95
    small[0:10, 75:80] = 0.95
    out = selector(small)
    expected, _ = select_subject(small, None, SubjectOptions())
    np.testing.assert_array_equal(out, expected)
    assert out[5, 77] == 0.0 and out[30, 40] == pytest.approx(0.95)


def test_bad_input_and_options_are_refused():
    with pytest.raises(ValueError, match=r"float64 \(90, 160\) != float32 \(h, w\)"):
        select_subject(np.zeros((H, W)), None, SubjectOptions())
    with pytest.raises(ValueError, match=r"^SubjectOptions.min_ratio = 0: expected a number, "
                                         r"greater than 0 and at most 1$"):
        SubjectOptions(min_ratio=0)
    with pytest.raises(ValueError, match=r"^SubjectOptions.low = 0.6: expected a number, greater "
                                         r"than 0 and below 0.5$"):
        SubjectOptions(low=0.6)


def _bystander_clip(path, frames=6):
    """A real video: a large bright person in the middle, a small bright patch at the right edge."""
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (320, 192))
    for _ in range(frames):
        image = np.full((192, 320, 3), 30, np.uint8)
        image[40:192, 110:200] = 220  # the person, standing on the bottom edge
        image[30:70, 296:320] = 220  # a bystander's head cut by the right edge
        writer.write(image)
    writer.release()
    return path


@pytest.mark.parametrize("people, bystander_kept", [("auto", False), ("all", True), ("main", False)])
def test_the_app_drops_a_bystander_from_video_unless_told_to_keep_everyone(
        brightness_model, tmp_path, people, bystander_kept):
    import cv2

    from portrait.cli import main

    clip = _bystander_clip(tmp_path / "call.avi")
    out = tmp_path / "mattes"
    assert main(["--model", str(brightness_model), "--source", str(clip), "--matte", "--out",
                 str(out), "--people", people, "-q"]) == 0
    mattes = [cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in sorted(out.glob("*.png"))]
    assert len(mattes) == 6
    for matte in mattes:
        assert matte[120, 155] > 200  # the person is always kept
        assert (matte[50, 310] > 127) == bystander_kept


def test_photos_keep_everyone_unless_main_is_asked_for(brightness_model, tmp_path):
    import cv2

    from portrait.cli import main

    clip = _bystander_clip(tmp_path / "call.avi", frames=1)
    frame = tmp_path / "group.png"
    ok, image = cv2.VideoCapture(str(clip)).read()
    assert ok and cv2.imwrite(str(frame), image)
    for people, kept in (("auto", True), ("main", False)):
        out = tmp_path / f"{people}.png"
        assert main(["--model", str(brightness_model), "--image", str(frame), "--matte", "--out",
                     str(out), "--people", people, "-q"]) == 0
        assert (cv2.imread(str(out), cv2.IMREAD_GRAYSCALE)[50, 310] > 127) == kept


def test_each_photo_of_a_folder_chooses_its_own_subject(brightness_model, tmp_path):
    """Hysteresis is for video: in a folder, a photo's choice must not depend on the one before."""
    import cv2

    from portrait.cli import main

    def photo(region_rows: int) -> np.ndarray:
        image = np.full((192, 320, 3), 30, np.uint8)
        image[40:192, 110:200] = 220  # the person: 152 x 90 = 13,680 px
        image[0:region_rows, 260:320] = 220  # a region apart from them, 60 px wide
        return image

    folder = tmp_path / "photos"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), photo(60))  # 3,600 px: 0.26 of the person, kept
    cv2.imwrite(str(folder / "b.png"), photo(34))  # 2,040 px: 0.15, below the bar when new
    out = tmp_path / "mattes"
    assert main(["--model", str(brightness_model), "--image", str(folder), "--matte", "--out",
                 str(out), "--people", "main", "-q"]) == 0
    first = cv2.imread(str(out / "a.png"), cv2.IMREAD_GRAYSCALE)
    second = cv2.imread(str(out / "b.png"), cv2.IMREAD_GRAYSCALE)
    assert first[20, 290] > 127  # kept in the first photo
    assert second[15, 290] <= 127  # dropped in the second, though it overlaps what was kept in a


def test_the_margin_reaches_its_whole_length_and_no_further():
    """5 % of 160 px is 8 px: a hand whose nearest column is 8 px right of the person's last one
    (column 99) stays, one 9 px away goes; 6 % is 9.6 px, which rounds to 10."""
    for column, options, stays in ((107, SubjectOptions(), True), (108, SubjectOptions(), False),
                                   (109, SubjectOptions(margin=0.06), True),
                                   (110, SubjectOptions(margin=0.06), False)):
        out, _ = select_subject(scene(PERSON, (40, 44, column, column + 4)), None, options)
        assert (out[42, column + 1] > 0.5) == stays, (column, options.margin)


def test_the_margin_is_a_distance_not_a_square():
    """A hand 6 px right of and 6 px above the person's top-right corner is 8.5 px away, beyond
    the 8 px margin though inside an 8 px square around it; 5 px above and 6 px right (7.8 px)
    is within it."""
    corner_y, corner_x = PERSON[0], PERSON[3] - 1  # (20, 99)
    for dy, stays in ((6, False), (5, True)):
        y, x = corner_y - dy, corner_x + 6  # the hand's pixel nearest the person
        out, _ = select_subject(scene(PERSON, (y - 3, y + 1, x, x + 4)), None, SubjectOptions())
        assert (out[y, x] > 0.5) == stays, dy


def test_a_region_touching_the_person_at_a_corner_is_part_of_them():
    """With no margin a region counts only when it is connected to the person, and a pixel
    touching them at a corner is connected (8-connectivity)."""
    hand = (16, 20, 100, 104)  # its pixel (19, 100) touches the person's (20, 99) diagonally
    out, _ = select_subject(scene(PERSON, hand), None, SubjectOptions(margin=0.0))
    assert out[17, 102] == pytest.approx(0.95)
    apart = (15, 19, 100, 104)  # one row higher: a pixel of background between them
    out, _ = select_subject(scene(PERSON, apart), None, SubjectOptions(margin=0.0))
    assert out[17, 102] == 0.0


def test_with_no_margin_the_background_still_stays_as_it_is():
    out, _ = select_subject(scene(PERSON, HEAD_AT_EDGE), None, SubjectOptions(margin=0.0))
    assert out[15, 155] == 0.0
    assert out[0, 0] == pytest.approx(0.02) and out[50, 120] == pytest.approx(0.02)


def test_a_region_is_what_lies_above_low_and_its_area_what_lies_above_one_half():
    """A patch of exactly ``low`` is background, left as it is; a patch of exactly 0.5, as large
    as the person, has no area and goes."""
    options = SubjectOptions(low=0.25)
    prob = scene(PERSON)
    prob[10:40, 5:45] = 0.25
    out, _ = select_subject(prob, None, options)
    assert out[20, 20] == 0.25
    prob = scene(PERSON)
    prob[10:80, 5:45] = 0.5  # 70 x 40 px, as large as the person
    out, _ = select_subject(prob, None, options)
    assert out[20, 20] == 0.0 and out[50, 80] == pytest.approx(0.95)


def test_nothing_dropped_gives_back_the_input_itself():
    prob = scene(PERSON, NEIGHBOUR)
    out, _ = select_subject(prob, None, SubjectOptions())
    assert out is prob


def test_the_kept_mask_is_the_kept_regions_above_low():
    """The mask passed to the next frame is exactly the kept regions' pixels above ``low``:
    never the background, whatever path the choice took."""
    fringe = scene(PERSON)
    fringe[19, 60:100] = 0.3  # a fringe above the person, part of their region
    faint = scene(PERSON, HEAD_AT_EDGE, value=0.4)  # only faint regions: nothing chosen
    for prob, expected in (
            (fringe, fringe > 0.2),  # one region
            (faint, faint > 0.2),
            (scene(PERSON, NEIGHBOUR), scene(PERSON, NEIGHBOUR) > 0.2),  # both kept
            (scene(PERSON, HEAD_AT_EDGE), scene(PERSON) > 0.2)):  # the head dropped
        _, kept = select_subject(prob, None, SubjectOptions())
        assert kept.dtype == bool
        np.testing.assert_array_equal(kept, expected)


def test_a_region_appearing_where_there_was_background_gets_no_hysteresis():
    """A region 0.15 of the person (below the bar of 0.2) is dropped when new, also when the
    frame before kept everything it had or dropped something elsewhere."""
    region = (0, 14, 130, 160)  # 420 px = 0.15 x 2,800, 30 px right of the person
    for before in (scene(PERSON), scene(PERSON, NEIGHBOUR), scene(PERSON, HEAD_AT_EDGE)):
        selector = SubjectSelector(SubjectOptions())
        selector(before)
        assert selector(scene(PERSON, region))[5, 140] == 0.0


def test_a_region_split_from_the_only_one_keeps_the_hysteresis():
    """A region that was part of the person's (one region, nothing to choose) and splits off
    at 0.15 of them stays, as one kept before."""
    joined = scene(PERSON, (0, 14, 130, 160), (10, 20, 100, 130))  # an arm joins them
    selector = SubjectSelector(SubjectOptions())
    selector(joined)
    assert selector(scene(PERSON, (0, 14, 130, 160)))[5, 140] == pytest.approx(0.95)


def test_hysteresis_halves_the_bar_exactly():
    """Kept before, a region needs half the bar: 0.1 of 2,800 px = 280 px stays, 279 go."""
    for pixels, stays in ((280, True), (279, False)):
        selector = SubjectSelector(SubjectOptions())
        selector(scene(PERSON, (0, 20, 130, 160)))  # 600 px: kept
        prob = scene(PERSON, (0, 14, 140, 160))  # 14 x 20 = 280 px, 40 px right of the person
        if pixels == 279:
            prob[0, 140] = 0.02
        assert (selector(prob)[5, 150] > 0.5) == stays, pixels
