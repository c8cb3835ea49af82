"""Tests for portrait.training.framing_study on synthetic mattes written as PNG folders (a
rectangle for a person): a still person gives a constant crop (std 0, no reversals); a person whose
size alternates turns the zoom a known number of times with no zoom window, and a brief arm not
at all with one; the reversal count, the ping-pong order, the face test and the pooling by hand;
the command's table and its one-line errors; the face boxes cached beside the mattes, read back
only for the same clip, frame count and settings."""

import zipfile

import cv2
import numpy as np
import pytest
from conftest import write_video

from portrait.options import FramingOptions
from portrait.training import framing_study
from portrait.training.framing_study import (
    FACE_CACHE,
    ClipResult,
    StudyOptions,
    cached_face_boxes,
    face_outside,
    main,
    ping_pong,
    pooled,
    read_mattes,
    reversals,
    study_clip,
    with_pools,
)

W, H = 160, 120


def _person(width: int, height: int) -> np.ndarray:
    """A matte with a centred rectangle, clear of the frame's bottom (not a webcam cut-off)."""
    matte = np.zeros((H, W), np.uint8)
    x, y = (W - width) // 2, (H - height) // 2
    matte[y:y + height, x:x + width] = 255
    return matte


def _write_clip(folder, mattes):
    folder.mkdir(parents=True)
    for i, matte in enumerate(mattes):
        assert cv2.imwrite(str(folder / f"{i:06d}.png"), matte)
    return folder


def test_ping_pong_goes_forward_and_back_without_repeating_the_turns():
    assert ping_pong(3, 2) == [0, 1, 2, 1, 0, 1, 2, 1]
    assert ping_pong(4, 1) == [0, 1, 2, 3, 2, 1]


def test_reversals_count_turns_past_the_step_only():
    assert reversals([0, 1, 0, 1, 0], step=0.5) == 3  # up, then three turns
    assert reversals([0, 0.4, 0, 0.4, 0], step=0.5) == 0  # jitter inside the step
    assert reversals([0, 1, 2, 3, 2.6, 3.5], step=0.5) == 0  # a dip smaller than the step
    assert reversals([0, 1, 2, 3, 2.4, 3.5], step=0.5) == 2  # down 0.6, then up 1.1


def test_a_still_person_gives_a_constant_crop(tmp_path):
    mattes = read_mattes(_write_clip(tmp_path / "still", [_person(40, 60)] * 20))
    result = study_clip("still", mattes, StudyOptions())
    assert result.frames == 2 * (20 + 18)
    assert result.width_std_pct == 0.0
    assert result.reversals == 0


def test_a_person_whose_size_alternates_turns_the_zoom_at_each_change(tmp_path):
    # 1 s small, 1 s large: forward, back, forward, back gives up, down, up, down: three turns
    small, large = _person(40, 60), _person(50, 75)
    mattes = read_mattes(_write_clip(tmp_path / "alternate", [small] * 30 + [large] * 30))
    options = StudyOptions(framing=FramingOptions(enabled=True, zoom_window_s=0.0))
    result = study_clip("alternate", mattes, options)
    assert result.reversals == 3
    # the crop's width moves between the two sizes' framings: 60/0.65 and 75/0.65 of 120 rows
    assert result.width_std_pct > 0.0
    assert result.minutes == pytest.approx(result.frames / 30 / 60)


def test_the_zoom_window_leaves_a_brief_arm_alone_that_no_window_follows(tmp_path):
    # an arm stretched out (a thin bar: the box widens, the area barely grows) for 15 of every
    # 60 frames: at the turn it stays 28 frames, under half of a 5 s window's 150
    person = _person(40, 60)
    arm = person.copy()
    arm[40:44, 30:130] = 255
    mattes = read_mattes(_write_clip(tmp_path / "arm", [person] * 45 + [arm] * 15))
    without, with_window = (study_clip("arm", mattes, StudyOptions(
        framing=FramingOptions(enabled=True, zoom_window_s=window_s))) for window_s in (0.0, 5.0))
    assert without.reversals == 3 and without.width_std_pct > 1.0
    assert with_window.reversals == 0
    assert with_window.width_std_pct == pytest.approx(0.0, abs=1e-9)


def test_the_face_counts_as_out_only_beyond_the_crop():
    crop = (80.0, 60.0, 60.0)  # 80 x 60 px around the centre: x 40..120, y 30..90
    assert not face_outside(crop, (60, 50, 20, 20), (W, H))  # head x 58..82, y 42..70
    assert face_outside(crop, (30, 50, 20, 20), (W, H))  # widened, it starts at x 28
    assert face_outside(crop, (60, 35, 20, 20), (W, H))  # raised for the hair: y 27


def test_faces_outside_a_still_crop_are_counted_per_frame(tmp_path):
    mattes = read_mattes(_write_clip(tmp_path / "still", [_person(40, 60)] * 4))
    inside, outside = (72, 40, 16, 16), (0, 0, 16, 16)
    result = study_clip("still", mattes, StudyOptions(), faces=[inside, outside, None, inside])
    # ping-pong 0 1 2 3 2 1, twice: frame 1 (twice a pass) is out, frame 2 has no face
    assert (result.face_frames, result.face_out) == (8, 4)


def test_pooled_takes_the_mean_variation_and_sums_the_rest():
    a = ClipResult("asl_milk", 10, 0.5, 1.0, 2, 10, 1, 30.0, 4.0, 3, 5.0, 2)
    b = ClipResult("other", 30, 1.5, 3.0, 4, 0, 0, 10.0, 1.0, 1, 8.0, 1)
    assert pooled("all", [a, b]) == ClipResult("all", 40, 2.0, 2.0, 6, 10, 1, 30.0, 2.5, 4,
                                               8.0, 3)
    rows = with_pools([a, b])
    assert [r.clip for r in rows] == ["asl_milk", "other", "held out", "all"]
    assert rows[2] == pooled("held out", [a])


def test_the_command_prints_a_table_per_window(tmp_path, capsys):
    _write_clip(tmp_path / "mattes" / "still", [_person(40, 60)] * 10)
    _write_clip(tmp_path / "mattes" / "alternate", [_person(40, 60)] * 30 + [_person(50, 75)] * 30)
    assert main(["--mattes", str(tmp_path / "mattes"), "--zoom-window", "0", "5"]) == 0
    out = capsys.readouterr().out
    assert "window 0 s" in out and "window 5 s" in out
    rows = [line.split() for line in out.splitlines() if line.startswith("alternate")]
    assert [float(r[3]) for r in rows][0] == pytest.approx(3 / (2 * 118 / 30 / 60), abs=0.05)


@pytest.mark.parametrize("make, message", [
    (lambda root: None, "not found"),
    (lambda root: root.mkdir(), "no clip folders"),
])
def test_bad_mattes_folders_fail_in_one_line(tmp_path, capsys, make, message):
    make(tmp_path / "mattes")
    assert main(["--mattes", str(tmp_path / "mattes")]) != 0
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_a_clip_without_its_video_fails_in_one_line(tmp_path, capsys):
    _write_clip(tmp_path / "mattes" / "still", [_person(40, 60)] * 3)
    (tmp_path / "videos").mkdir()
    assert main(["--mattes", str(tmp_path / "mattes"), "--videos", str(tmp_path / "videos")]) != 0
    err = capsys.readouterr().err.strip()
    assert "no video 'still.*'" in err and len(err.splitlines()) == 1


def _plant_faces(path, boxes):
    """Rewrite the cache at ``path`` with other ``boxes``, its key kept."""
    with np.load(path) as saved:
        key = {name: saved[name] for name in saved.files if name != "boxes"}
    with open(path, "wb") as file:
        np.savez(file, boxes=np.array(boxes, np.int32), **key)


def _still_clip(tmp_path):
    """A clip of four mattes of one still person, with its four (blank) frames: (folder,
    frames, mattes)."""
    folder = _write_clip(tmp_path / "still", [_person(40, 60)] * 4)
    return folder, [np.full((H, W, 3), 40, np.uint8)] * 4, read_mattes(folder)


def test_face_boxes_are_cached_and_read_back_only_for_the_same_frame_count(tmp_path):
    """The first call finds the faces (none on a blank room) and saves them beside the mattes;
    the next call with as many frames reads the file (boxes planted there come back); another
    clip's file, another frame count, or a file that is no cache: found again and saved anew."""
    folder, frames, mattes = _still_clip(tmp_path)
    assert cached_face_boxes(folder, frames, mattes) == [None] * 4
    with np.load(folder / FACE_CACHE) as saved:
        assert (saved["clip"].item(), saved["frames"].item()) == ("still", 4)
        assert saved["boxes"].tolist() == [[-1, -1, -1, -1]] * 4
    planted = [[1, 2, 16, 16], [-1, -1, -1, -1], [3, 4, 16, 16], [5, 6, 16, 16]]
    _plant_faces(folder / FACE_CACHE, planted)
    assert cached_face_boxes(folder, frames, mattes) == [(1, 2, 16, 16), None, (3, 4, 16, 16),
                                                         (5, 6, 16, 16)]
    other = _write_clip(tmp_path / "other", [_person(40, 60)] * 4)
    (other / FACE_CACHE).write_bytes((folder / FACE_CACHE).read_bytes())  # another clip's
    assert cached_face_boxes(other, frames, mattes) == [None] * 4
    assert cached_face_boxes(folder, frames + frames[:1], mattes) == [None] * 4  # zip: 4 mattes
    with np.load(folder / FACE_CACHE) as saved:
        assert saved["frames"].item() == 5 and (saved["boxes"] < 0).all()
    cached_face_boxes(folder, frames, mattes)  # the 4 frames' cache again
    whole = (folder / FACE_CACHE).read_bytes()
    for damaged in (b"not a cache", b"", whole[:len(whole) // 2]):  # a cache cut short
        (folder / FACE_CACHE).write_bytes(damaged)
        assert cached_face_boxes(folder, frames, mattes) == [None] * 4
        assert (folder / FACE_CACHE).read_bytes() == whole  # saved anew
    assert len(read_mattes(folder)) == 4  # the cache beside them is no matte


def _bad_caches(good: dict) -> list[tuple[str, dict]]:
    """Caches written wrongly, from a good one's arrays ``good``, each with the reason the
    loader gives for ignoring it."""
    boxes = good["boxes"]

    def without(name):
        return {key: value for key, value in good.items() if key != name}

    def first_box(box):
        return {**good, "boxes": np.array([box, *boxes[1:]], np.int32)}

    neither = "a box is neither (x, y, w, h) with x, y >= 0 and w, h > 0 nor (-1, -1, -1, -1)"
    return [
        ("no 'mattes' in it", without("mattes")),
        ("no 'boxes' in it", without("boxes")),
        ("unexpected 'note' in it", {**good, "note": np.array("edited by hand")}),
        ("'boxes' is int32 of shape (4, 3), expected integers of shape (4, 4)",
         {**good, "boxes": boxes[:, :3]}),
        ("'boxes' is int32 of shape (16,), expected integers of shape (4, 4)",
         {**good, "boxes": boxes.ravel()}),
        ("'boxes' is int32 of shape (3, 4), expected integers of shape (4, 4)",
         {**good, "boxes": boxes[:3]}),
        ("'boxes' is float64 of shape (4, 4), expected integers of shape (4, 4)",
         {**good, "boxes": boxes.astype(np.float64)}),
        ("'frames' is int64 of shape (2,), expected a count", {**good, "frames": np.array([4, 4])}),
        ("'clip' is int64 of shape (), expected a string", {**good, "clip": np.array(7)}),
        ("'mattes' is -1, expected a count (0 or more)", {**good, "mattes": np.array(-1)}),
        (neither, first_box([1, 2, 0, 16])),  # no width
        (neither, first_box([1, -2, 16, 16])),  # above the frame
        (neither, first_box([-1, 2, 16, 16])),  # half of "no face"
        (neither, first_box([-1, -1, -1, 0])),
    ]


def test_a_face_cache_from_before_the_pixel_digest_is_made_again_without_a_warning(
        tmp_path, caplog):
    """A cache an earlier version wrote (its key without "pixels") is no fault of the user's: one
    INFO line says why the faces are found again, no warning, and the cache is written anew."""
    folder, frames, mattes = _still_clip(tmp_path)
    path = folder / FACE_CACHE
    cached_face_boxes(folder, frames, mattes)
    whole = path.read_bytes()
    with np.load(path) as saved:
        old = {name: saved[name] for name in saved.files if name != "pixels"}
    with open(path, "wb") as file:
        np.savez(file, **old)
    with caplog.at_level("INFO", logger="portrait.training.framing_study"):
        assert cached_face_boxes(folder, frames, mattes) == [None] * 4
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("INFO", f"{path}: a face cache from before its key held the pixels' digest; finding the "
         "faces again")]
    assert path.read_bytes() == whole


def test_a_face_cache_written_wrongly_is_ignored_with_why_and_made_again(tmp_path, caplog):
    """A hand-edited or half-written faces.npz (a key or the boxes missing, boxes of the wrong
    shape, type or values, a count that is no count, a single .npy array) is no cache: one
    warning says why, the faces are found again and the cache is written anew, not a
    traceback nor boxes of the wrong shape handed on."""
    folder, frames, mattes = _still_clip(tmp_path)
    path = folder / FACE_CACHE
    cached_face_boxes(folder, frames, mattes)
    whole = path.read_bytes()
    with np.load(path) as saved:
        good = {name: saved[name] for name in saved.files}
    planted = np.array([[1, 2, 16, 16], [-1, -1, -1, -1], [3, 4, 16, 16], [5, 6, 16, 16]],
                       np.int32)
    for reason, arrays in _bad_caches({**good, "boxes": planted}):
        with open(path, "wb") as file:
            np.savez(file, **arrays)
        caplog.clear()
        with caplog.at_level("INFO", logger="portrait.training.framing_study"):
            assert cached_face_boxes(folder, frames, mattes) == [None] * 4, reason  # found again
        assert [(r.levelname, r.getMessage()) for r in caplog.records
                if r.levelname != "INFO"] == [
            ("WARNING", f"{path}: not a face cache ({reason}); finding the faces again")]
        assert path.read_bytes() == whole, reason  # written anew
    with open(path, "wb") as file:
        np.save(file, planted)  # np.save, not np.savez: one array
    caplog.clear()
    assert cached_face_boxes(folder, frames, mattes) == [None] * 4
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == [
        f"{path}: not a face cache (one array of shape (4, 4), not an .npz of named arrays); "
        "finding the faces again"]
    assert path.read_bytes() == whole
    with zipfile.ZipFile(path, "w") as made:  # by hand: 'clip' as text, not an .npy file
        for name, array in good.items():
            if name != "clip":
                with made.open(f"{name}.npy", "w") as member:
                    np.save(member, array)
        made.writestr("clip", "still")
    caplog.clear()
    assert cached_face_boxes(folder, frames, mattes) == [None] * 4
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == [
        f"{path}: not a face cache ('clip' is 5 bytes, expected an .npy array); finding the "
        "faces again"]
    assert path.read_bytes() == whole
    _plant_faces(path, planted)  # the same boxes, written rightly, are read back
    assert cached_face_boxes(folder, frames, mattes) == [(1, 2, 16, 16), None, (3, 4, 16, 16),
                                                         (5, 6, 16, 16)]


def test_a_face_cache_whose_zip_names_an_unknown_compression_is_made_again(tmp_path, caplog):
    """A faces.npz whose bytes were damaged where its zip names a member's compression method
    (zipfile raises NotImplementedError, no OSError nor ValueError) is ignored with the one
    warning, and written anew, not a crash of the study."""
    folder, frames, mattes = _still_clip(tmp_path)
    path = folder / FACE_CACHE
    cached_face_boxes(folder, frames, mattes)
    whole = path.read_bytes()
    damaged = bytearray(whole)
    for header, offset in ((b"PK\x03\x04", 8), (b"PK\x01\x02", 10)):  # local, central
        at = damaged.find(header)
        while at >= 0:
            damaged[at + offset:at + offset + 2] = (77).to_bytes(2, "little")
            at = damaged.find(header, at + 1)
    path.write_bytes(bytes(damaged))
    with caplog.at_level("INFO", logger="portrait.training.framing_study"):
        assert cached_face_boxes(folder, frames, mattes) == [None] * 4
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == [
        f"{path}: not a face cache (That compression method is not supported); finding the "
        "faces again"]
    assert path.read_bytes() == whole


def test_the_command_reads_the_faces_from_the_cache_on_its_second_run(tmp_path, capsys):
    """--videos saves the clip's faces beside its mattes; planted there, a face outside the
    crop in every frame is counted in every replayed frame of the next run (the blank video
    has none to find)."""
    mattes = tmp_path / "mattes"
    _write_clip(mattes / "still", [_person(40, 60)] * 4)
    (tmp_path / "videos").mkdir()
    write_video(tmp_path / "videos" / "still.avi", 4, size=(W, H))
    args = ["--mattes", str(mattes), "--videos", str(tmp_path / "videos")]
    assert main(args) == 0
    first = [line.split() for line in capsys.readouterr().out.splitlines()
             if line.startswith("still")]
    assert first[0][-6] == "0/0"  # then the cut: max %, mean %, >5 %, side max %, >5 %
    _plant_faces(mattes / "still" / FACE_CACHE, [[0, 0, 16, 16]] * 4)
    assert main(args) == 0
    second = [line.split() for line in capsys.readouterr().out.splitlines()
              if line.startswith("still")]
    assert second[0][-6] == f"{2 * (4 + 2)}/{2 * (4 + 2)}"  # ping-pong 0 1 2 3 2 1, twice


def test_face_boxes_are_found_again_for_mattes_or_frames_made_anew(tmp_path):
    """Mattes re-made into the clip's folder (another model, as many frames) or another video of
    as many frames: the cache holds the boxes of the old pictures (a face box counts only where
    the matte covers it), so the faces are found again, not read back; the same pictures read
    the cache."""
    folder, frames, mattes = _still_clip(tmp_path)
    assert cached_face_boxes(folder, frames, mattes) == [None] * 4
    planted = [[1, 2, 16, 16]] * 4
    _plant_faces(folder / FACE_CACHE, planted)
    assert cached_face_boxes(folder, frames, mattes) == [(1, 2, 16, 16)] * 4  # the same pictures
    for i in range(4):  # as app.py --matte --out replaces its earlier images
        assert cv2.imwrite(str(folder / f"{i:06d}.png"), _person(50, 70))
    remade = read_mattes(folder)
    assert cached_face_boxes(folder, frames, remade) == [None] * 4
    _plant_faces(folder / FACE_CACHE, planted)
    assert cached_face_boxes(folder, [np.full((H, W, 3), 90, np.uint8)] * 4, remade) == [None] * 4


def test_the_face_cache_is_made_again_for_another_matte_count_or_settings(tmp_path, caplog):
    """The boxes depend on the mattes as much as on the frames (a clip's mattes made again
    with one fewer: as many boxes as mattes) and on every detector setting the key names; a
    first run, which finds no cache, says nothing of one, and its cache is written whole."""
    folder, frames, mattes = _still_clip(tmp_path)
    with caplog.at_level("INFO", logger="portrait.training.framing_study"):
        assert cached_face_boxes(folder, frames, mattes) == [None] * 4
    assert [r.levelname for r in caplog.records] == []  # no cache yet is no warning
    assert sorted(p.name for p in folder.iterdir() if not p.name.endswith(".png")) == [FACE_CACHE]
    _plant_faces(folder / FACE_CACHE, [[1, 2, 16, 16]] * 4)
    assert cached_face_boxes(folder, frames, mattes[:3]) == [None] * 3  # found again
    with np.load(folder / FACE_CACHE) as saved:
        assert (saved["frames"].item(), saved["mattes"].item()) == (4, 3)
        settings = saved["settings"].item()
    caplog.clear()
    _plant_faces(folder / FACE_CACHE, [[1, 2, 16, 16]] * 3)  # a box for each of the 3 pairs
    assert cached_face_boxes(folder, frames, mattes[:3]) == [(1, 2, 16, 16)] * 3  # read back
    assert [r.levelname for r in caplog.records if r.levelname != "INFO"] == []
    for setting in (framing_study._CASCADES, framing_study._DETECT, framing_study.FACE_COVER,
                    framing_study.FACE_SIZES):
        assert repr(setting) in settings


def test_a_face_cache_that_cannot_be_written_leaves_the_boxes_found(tmp_path, caplog):
    """Where the cache cannot be written (here its partial file's name is taken by a folder),
    the boxes found are returned with a warning, and no cache is left to be read as one."""
    folder = _write_clip(tmp_path / "still", [_person(40, 60)] * 4)
    (folder / (FACE_CACHE + ".partial")).mkdir()
    frames = [np.full((H, W, 3), 40, np.uint8)] * 4
    assert cached_face_boxes(folder, frames, read_mattes(folder)) == [None] * 4
    assert not (folder / FACE_CACHE).exists()
    assert [r.getMessage().split(" (")[0] for r in caplog.records if r.levelname == "WARNING"] \
        == ["still: face boxes not cached"]


def test_person_cut_counts_the_matte_pixels_the_crop_leaves_out(tmp_path):
    # a still 40x60 person: the crop frames all of it, nothing is cut
    mattes = read_mattes(_write_clip(tmp_path / "still", [_person(40, 60)] * 10))
    result = study_clip("still", mattes, StudyOptions())
    assert (result.cut_max_pct, result.cut_mean_pct, result.cut_frames) == (0.0, 0.0, 0)


def test_person_cut_of_arms_held_out_of_a_held_zoom(tmp_path):
    # 4 s of a 40x60 body, then 1 s with arms out across the frame (5 rows): the 5 s window
    # holds the body's zoom (a crop 60 / 0.65 = 92.3 rows high, 123.1 columns wide at column 80:
    # [18.5, 141.5], holding columns 18-141), so 18 columns of arm each side are cut:
    # 5 * 36 = 180 of the 40 * 60 + 5 * 120 = 3000 person pixels, 6 %
    body = _person(40, 60)
    arms = body.copy()
    arms[50:55, :] = 255
    mattes = read_mattes(_write_clip(tmp_path / "arms", [body] * 120 + [arms] * 30))
    result = study_clip("arms", mattes, StudyOptions(passes=1))
    arm_frames = sum(i >= 120 for i in ping_pong(150, 1))
    assert result.cut_max_pct == pytest.approx(6.0)
    assert result.cut_frames == arm_frames
    assert result.cut_mean_pct == pytest.approx(6.0 * arm_frames / result.frames)
    # the arms are cut at the sides: the side cut is the same
    assert (result.side_cut_max_pct, result.side_cut_frames) == (result.cut_max_pct, arm_frames)


def test_side_cut_leaves_out_a_webcam_person_below_the_crop(tmp_path):
    # a person cut by the frame's bottom (rows 40-119, 40 wide): framed head and shoulders by
    # width (a crop 40 / 0.65 * 120 / 160 = 46.2 rows high), the rest of them below it on purpose
    matte = np.zeros((H, W), np.uint8)
    matte[40:, 60:100] = 255
    mattes = read_mattes(_write_clip(tmp_path / "webcam", [matte] * 10))
    result = study_clip("webcam", mattes, StudyOptions())
    crops, _ = framing_study.replay(mattes, StudyOptions().framing, 30.0)
    bottom = crops[0][1] + crops[0][2] / 2
    below_rows = H - (int(np.floor(bottom - 0.5)) + 1)
    assert result.cut_max_pct == pytest.approx(below_rows / 80 * 100)
    assert result.cut_frames == result.frames
    assert (result.side_cut_max_pct, result.side_cut_frames) == (0.0, 0)
