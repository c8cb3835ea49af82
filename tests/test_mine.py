"""portrait.training.mine: crops around what a model takes for a person far from everyone."""

import logging
from pathlib import Path

import cv2
import numpy as np

from portrait.training.mine import crop_around, far_boxes, main


def test_far_boxes_keep_only_large_regions_beyond_the_margin():
    truth = np.zeros((100, 200), np.uint8)
    cv2.circle(truth, (30, 50), 20, 255, -1)
    alpha = truth.copy()
    alpha[20:60, 150:190] = 200  # a thing far from the person: 1,600 px, 8 % of the photo
    alpha[10:14, 110:114] = 255  # far too, but 16 px (0.08 %): below the bar
    alpha[45:55, 52:58] = 255  # touching the person's outline: within the margin
    alpha[80:90, 120:124] = 100  # far and large enough, but not person (alpha <= 127)
    assert far_boxes(truth, alpha, margin_px=10, min_area=0.002) == [(150, 20, 40, 40)]
    # A second thing, smaller (750 px): the largest region comes first.
    alpha[70:95, 100:130] = 255
    assert far_boxes(truth, alpha, margin_px=10) == [(150, 20, 40, 40), (100, 70, 30, 25)]


def test_far_boxes_in_a_photo_with_nobody_take_every_region():
    alpha = np.zeros((50, 50), np.uint8)
    alpha[5:25, 5:25] = 255
    assert far_boxes(np.zeros_like(alpha), alpha, margin_px=5) == [(5, 5, 20, 20)]


def test_crop_around_grows_the_box_and_stays_inside_the_photo():
    # Grown by half its size on each side: 40x20 becomes 80x40, about the same centre.
    assert crop_around((100, 100, 40, 20), (400, 600), growth=0.5, min_side=0.0) == (80, 90, 160, 130)
    # At least min_side of the short side (0.4 * 400 = 160) each way, about the centre.
    assert crop_around((100, 100, 40, 20), (400, 600)) == (40, 30, 200, 190)
    # In a corner it is shifted back inside, keeping its size.
    assert crop_around((0, 0, 10, 10), (400, 600)) == (0, 0, 160, 160)
    assert crop_around((590, 390, 10, 10), (400, 600)) == (440, 240, 600, 400)
    # Never larger than the photo.
    assert crop_around((0, 0, 600, 400), (400, 600)) == (0, 0, 600, 400)


def _data_with_a_lamp(folder: Path) -> Path:
    """Dark photos with a bright labelled person (a disc) and a bright unlabelled lamp (a square)."""
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        image = rng.integers(0, 40, (128, 192, 3), np.uint8)
        mask = np.zeros((128, 192), np.uint8)
        cv2.circle(mask, (40, 64), 25, 255, -1)
        image[mask > 0] = 230
        if i == 0:
            image[20:60, 130:170] = 230  # the lamp, in the first photo only
        cv2.imwrite(str(folder / "images" / f"p{i}.png"), image)
        cv2.imwrite(str(folder / "masks" / f"p{i}.png"), mask)
    (folder / "train.txt").write_text("p0\np1\n")
    return folder


def test_mining_writes_a_crop_around_the_lamp_labelled_by_the_true_mask(tmp_path, brightness_model):
    """The brightness model takes the lamp for a person; the crop around it is written with the
    true mask's crop (background) as its label; the photo without a lamp gives nothing."""
    data = _data_with_a_lamp(tmp_path / "data")
    out = tmp_path / "mined"
    assert main(["--model", str(brightness_model), "--data", str(data), "--out", str(out)]) == 0
    assert (out / "train.txt").read_text().split() == ["p0_0"]
    crop = cv2.imread(str(out / "images" / "p0_0.jpg"))
    label = cv2.imread(str(out / "masks" / "p0_0.png"), cv2.IMREAD_GRAYSCALE)
    assert crop.shape[:2] == label.shape
    # The lamp (40x40, bright) lies inside the crop, which is grown to 80x80 around it.
    assert all(76 <= side <= 90 for side in crop.shape[:2]), crop.shape
    assert (crop[:, :, 0] > 200).sum() >= 0.9 * 40 * 40
    source = cv2.imread(str(data / "masks" / "p0.png"), cv2.IMREAD_GRAYSCALE)
    assert label.max() == 0 and source.max() == 255  # the label is the (empty) true mask there
    assert cv2.imread(str(data / "images" / "p0.png")) is not None  # sources untouched


def test_the_margin_is_a_share_of_the_photos_long_side(tmp_path, brightness_model):
    """With --margin 0.3 a 128x192 photo's margin is 57.6 px (of 192), not 38.4 (of 128): a
    second lamp 42 to 55 px from the person is within it and not mined; the first, farther
    than 65 px, is."""
    data = _data_with_a_lamp(tmp_path / "data")
    image = cv2.imread(str(data / "images" / "p0.png"))
    image[54:74, 107:119] = 230  # the second lamp, between the two margins
    cv2.imwrite(str(data / "images" / "p0.png"), image)
    (data / "train.txt").write_text("p0\n")
    out = tmp_path / "mined"
    assert main(["--model", str(brightness_model), "--data", str(data), "--out", str(out),
                 "--margin", "0.3"]) == 0
    assert (out / "train.txt").read_text().split() == ["p0_0"]
    crop = cv2.imread(str(out / "images" / "p0_0.jpg"))
    assert (crop[:, :, 0] > 200).sum() >= 0.9 * 40 * 40  # around the first lamp


def test_mining_refusals_are_one_line(tmp_path, brightness_model, capsys):
    data = _data_with_a_lamp(tmp_path / "data")
    other = _data_with_a_lamp(tmp_path / "other")
    cases = [
        (["--model", str(tmp_path / "gone.hdf5"), "--data", str(data), "--out", str(tmp_path / "o")],
         f"model '{tmp_path / 'gone.hdf5'}' not found (also looked in weights/); pass --model PATH"),
        (["--model", str(tmp_path), "--data", str(data), "--out", str(tmp_path / "o")],
         f"model '{tmp_path}' is a folder, not a model file; pass --model PATH"),
        (["--model", str(brightness_model), "--data", str(data), "--out", str(data)],
         f"--out '{data}' is a source data folder; choose a new folder"),
        # Another data set, not a source: its train.txt and masks would be replaced.
        (["--model", str(brightness_model), "--data", str(data), "--out", str(other)],
         f"--out '{other}' already holds files that no portrait data tool wrote"),
    ]
    for args, message in cases:
        assert main(args) == 2, args
        err = capsys.readouterr().err.strip().splitlines()
        assert message in err[-1] and "Traceback" not in "\n".join(err), err
    for folder in (data, other):
        assert sorted(p.name for p in (folder / "masks").iterdir()) == ["p0.png", "p1.png"]
        assert (folder / "train.txt").read_text() == "p0\np1\n"


def test_mining_refuses_a_stem_train_txt_cannot_hold_before_the_model_runs(tmp_path, brightness_model,
                                                                        capsys, caplog):
    """A photo whose stem starts with '#' gave crops '#p0_0', a comment in train.txt: refused
    only once every photo was mined. It is refused in one line before the model runs, and
    nothing is written."""
    data = _data_with_a_lamp(tmp_path / "data")
    (data / "train.txt").unlink()  # the folder's every photo, as a list cannot name '#p0'
    for folder in ("images", "masks"):
        (data / folder / "p0.png").rename(data / folder / "#p0.png")
    out = tmp_path / "mined"
    with caplog.at_level(logging.INFO):
        assert main(["--model", str(brightness_model), "--data", str(data), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (
        f"error: cannot list the crops of the photo '{data / 'images' / '#p0.png'}' in train.txt "
        "as '#p0_0': the stem starts with '#', which a list file reads as a comment; rename the "
        "photo and its mask, or give --data a list file that leaves it out"), err
    loaded = [r.getMessage() for r in caplog.records if r.name.startswith("portrait.segment")]
    assert not loaded, loaded  # refused before the model was loaded
    assert not out.exists()
    # Renamed, the same photo is mined.
    for folder in ("images", "masks"):
        (data / folder / "#p0.png").rename(data / folder / "lamp p0.png")
    assert main(["--model", str(brightness_model), "--data", str(data), "--out", str(out)]) == 0
    assert (out / "train.txt").read_text().split("\n") == ["lamp p0_0", ""]


def test_mining_refuses_its_output_folder_before_the_model_loads(tmp_path, brightness_model, capsys,
                                                                 caplog):
    """A file given as --out was refused only once the model had loaded (converted first); it is
    refused before."""
    data = _data_with_a_lamp(tmp_path / "data")
    taken = tmp_path / "notes.txt"
    taken.write_text("mine\n")
    with caplog.at_level(logging.INFO):
        assert main(["--model", str(brightness_model), "--data", str(data), "--out", str(taken)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (f"error: --out '{taken}' is a file; a data folder is needed, so choose a "
                       "new folder"), err
    loaded = [r.getMessage() for r in caplog.records if r.name.startswith("portrait.segment")]
    assert not loaded, loaded
    assert taken.read_text() == "mine\n"


def test_mining_with_nothing_to_mine_says_so_and_leaves_no_folder(tmp_path, brightness_model, capsys):
    """Photos where the model takes nothing far for a person left a folder with an empty
    train.txt, which train refuses, and exit 0. It is one line, exit 1, and no folder; an
    earlier output mined into again keeps its train.txt and crops."""
    data = _data_with_a_lamp(tmp_path / "data")
    (data / "train.txt").write_text("p1\n")  # the photo without the lamp
    out = tmp_path / "mined"
    assert main(["--model", str(brightness_model), "--data", str(data), "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (
        "error: nothing to mine: the model takes nothing for a person farther than 0.05 of the "
        "long side from everyone (and at least 0.002 of the photo) in the photo, so nothing was "
        f"written to '{out}'; lower --margin or --min-area, or mine other photos"), err
    assert not out.exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["--model", str(brightness_model), "--data", str(data), "--out", str(empty)]) == 1
    assert list(empty.iterdir()) == []
    # An earlier output of mine keeps what it holds.
    (data / "train.txt").write_text("p0\n")
    assert main(["--model", str(brightness_model), "--data", str(data), "--out", str(out)]) == 0
    (data / "train.txt").write_text("p1\n")
    assert main(["--model", str(brightness_model), "--data", str(data), "--out", str(out)]) == 1
    assert (out / "train.txt").read_text() == "p0_0\n"
    assert sorted(p.name for p in (out / "images").iterdir()) == ["p0_0.jpg"]


def test_far_boxes_at_the_area_bar_across_a_corner_and_at_alpha_128():
    """A region of exactly min_area is kept; squares that touch at a corner are one region (8
    neighbours); alpha 128 is person (above 127)."""
    alpha = np.zeros((50, 100), np.uint8)  # 5,000 px: min_area 0.002 is 10 px
    alpha[10:12, 10:15] = 255  # 10 px
    assert far_boxes(np.zeros_like(alpha), alpha, margin_px=5, min_area=0.002) == [(10, 10, 5, 2)]
    alpha[30:33, 30:33] = 128
    alpha[33:36, 33:36] = 128  # touches the first at one corner: one 6x6 region of 18 px
    assert far_boxes(np.zeros_like(alpha), alpha, margin_px=5, min_area=0.002) == [
        (30, 30, 6, 6), (10, 10, 5, 2)]


def test_mining_counts_photos_not_crops_and_takes_its_min_area(tmp_path, brightness_model, caplog):
    """A second, smaller lamp (20x25 px, 2 % of the photo) beside the first: two crops from one
    photo of two, as the log says; with --min-area 0.04 only the first lamp (6.5 %) is mined."""
    data = _data_with_a_lamp(tmp_path / "data")
    image = cv2.imread(str(data / "images" / "p0.png"))
    image[90:110, 150:175] = 230
    cv2.imwrite(str(data / "images" / "p0.png"), image)
    out = tmp_path / "mined"
    with caplog.at_level(logging.INFO, logger="portrait.training.mine"):
        assert main(["--model", str(brightness_model), "--data", str(data), "--out", str(out)]) == 0
    assert (out / "train.txt").read_text().split() == ["p0_0", "p0_1"]
    said = [r.getMessage() for r in caplog.records if r.name == "portrait.training.mine"]
    assert said == [f"wrote 2 crops from 1 of 2 photos to {out}"], said
    assert main(["--model", str(brightness_model), "--data", str(data), "--out", str(out),
                 "--min-area", "0.04"]) == 0
    assert (out / "train.txt").read_text().split() == ["p0_0"]
    crop = cv2.imread(str(out / "images" / "p0_0.jpg"))
    assert (crop[:, :, 0] > 200).sum() >= 0.9 * 40 * 40  # around the first lamp


def test_crop_around_rounds_its_length_and_centres_an_odd_box():
    # 0.4 of a short side of 102 is 40.8 px: 41 across, about the box's centre 105 (84.6 → 85).
    assert crop_around((100, 50, 10, 10), (102, 600)) == (85, 35, 126, 76)
    # A box 13 px wide is centred at 106.5, not 106: grown to 26, from 93.5 (rounded to even, 94).
    assert crop_around((100, 50, 13, 10), (400, 600), growth=0.5, min_side=0.0) == (94, 45, 120, 65)


def test_a_crop_beside_the_person_is_labelled_with_the_true_masks_crop(tmp_path, brightness_model):
    """A lamp 7 px from the person (mined with --margin 0.01, 1.9 px): its crop takes in the
    person's edge, and the label is the true mask's crop there, person and all."""
    data = _data_with_a_lamp(tmp_path / "data")
    image = cv2.imread(str(data / "images" / "p0.png"))
    image[20:60, 130:170] = cv2.imread(str(data / "images" / "p1.png"))[20:60, 130:170]  # no far lamp
    image[50:70, 72:92] = 230  # the near lamp: the disc ends at column 65
    cv2.imwrite(str(data / "images" / "p0.png"), image)
    out = tmp_path / "mined"
    assert main(["--model", str(brightness_model), "--data", str(data), "--out", str(out),
                 "--margin", "0.01", "--min-area", "0.01"]) == 0
    assert (out / "train.txt").read_text().split() == ["p0_0"]
    label = cv2.imread(str(out / "masks" / "p0_0.png"), cv2.IMREAD_GRAYSCALE)
    truth = cv2.imread(str(data / "masks" / "p0.png"), cv2.IMREAD_GRAYSCALE)
    assert label.max() == 255  # the person's edge
    # The lamp's box, 20x20 from (72, 50), grows to 0.4 x 128 = 51.2 px about its centre (82, 60):
    # columns 56..107 and rows 34..85 (56.4 and 34.4 rounded), of the photo and of its mask.
    np.testing.assert_array_equal(label, truth[34:85, 56:107])
    assert cv2.imread(str(out / "images" / "p0_0.jpg")).shape == (51, 51, 3)
