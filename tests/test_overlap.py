"""Validation photos that are training photos by content (portrait/training/overlap.py) and
train's warning of them, on real files written in tmp dirs."""

import shutil
from pathlib import Path

import cv2
import numpy as np

from conftest import make_data
from portrait.training.overlap import content_copies, copies_warning
from portrait.training.train import TrainOptions, _split


def _copy(folder: Path, stem: str, to: Path, new_stem: str) -> None:
    """Copy a data folder's photo and mask into another data folder under another stem."""
    for kind, suffix in (("images", ".jpg"), ("masks", ".png")):
        (to / kind).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(folder / kind / f"{stem}{suffix}", to / kind / f"{new_stem}{suffix}")


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]


def test_validation_copies_under_other_names_are_warned_of_before_training(tmp_path, caplog):
    data = make_data(tmp_path / "data")  # train.txt: 000..008
    val = make_data(tmp_path / "val", count=4, size=(96, 72))  # photos of its own (a larger size)
    _copy(data, "002", val, "holiday")
    _copy(data, "005", val, "holiday_resaved")
    (val / "val.txt").write_text("000\nholiday\n001\nholiday_resaved\n")
    with caplog.at_level("WARNING", logger="portrait"):
        train, held = _split(TrainOptions(data=(str(data / "train.txt"),),
                                          val=(str(val / "val.txt"),)))
    assert len(train) == 9 and len(held) == 4  # warned, not refused: nothing is dropped
    assert _warnings(caplog) == [
        "2 validation photos are copies of training photos (the same bytes in another file), so "
        "the best epoch is chosen partly on photos the model trains on (validation = training: "
        f"'{val / 'images' / 'holiday.jpg'}' = '{data / 'images' / '002.jpg'}', "
        f"'{val / 'images' / 'holiday_resaved.jpg'}' = '{data / 'images' / '005.jpg'}'); "
        "remove each copy from --data or from the validation set"]


def test_a_list_repeated_to_weight_it_is_no_copy_of_the_validation_set(tmp_path, caplog):
    """--data A A (a weighted list) whose photos are equal bytes twice over, and a training
    photo that is in A under two names: no warning, as no validation photo is among them."""
    data = make_data(tmp_path / "data")
    _copy(data, "003", data, "003_again")
    (data / "weighted.txt").write_text("000\n001\n002\n003\n003_again\n")
    spec = str(data / "weighted.txt")
    with caplog.at_level("WARNING", logger="portrait"):
        train, val = _split(TrainOptions(data=(spec, spec), val=(str(data / "val.txt"),)))
    assert len(train) == 10 and len(val) == 3
    assert _warnings(caplog) == []


def test_different_photos_of_one_file_size_are_no_copies(tmp_path):
    """BMP files of one size are read and compared (their sizes all match); photos that differ,
    by one byte too, are no copies, and an equal one is found whatever its name or folder."""
    rng = np.random.default_rng(7)
    train, val = [], []
    for i in range(3):
        train.append(str(tmp_path / f"train_{i}.bmp"))
        cv2.imwrite(train[-1], rng.integers(0, 256, (24, 32, 3), np.uint8))
    (tmp_path / "v").mkdir()
    for i in range(2):
        val.append(str(tmp_path / "v" / f"val_{i}.bmp"))
        cv2.imwrite(val[-1], rng.integers(0, 256, (24, 32, 3), np.uint8))
    changed = bytearray(Path(train[0]).read_bytes())
    changed[-1] ^= 1
    val.append(str(tmp_path / "v" / "one_byte_off.bmp"))
    Path(val[-1]).write_bytes(bytes(changed))
    assert len({Path(p).stat().st_size for p in train + val}) == 1
    assert content_copies(train, val) == []
    val.append(str(tmp_path / "v" / "renamed.bmp"))
    shutil.copyfile(train[1], val[-1])
    assert content_copies(train, val) == [(val[-1], train[1])]


def test_the_warning_names_three_copies_and_counts_the_rest(tmp_path):
    pairs = [(f"v/{i}.jpg", f"t/{i}.jpg") for i in range(5)]
    text = copies_warning(pairs, "do this")
    assert text.startswith("5 validation photos are copies of training photos")
    assert text.endswith("(validation = training: 'v/0.jpg' = 't/0.jpg', 'v/1.jpg' = 't/1.jpg', "
                         "'v/2.jpg' = 't/2.jpg' and 2 more); do this")
    assert copies_warning(pairs[:1], "do this").startswith(
        "1 validation photo is a copy of a training photo (the same bytes in another file)")


def test_a_validation_split_holding_out_a_copy_says_to_remove_the_duplicate(tmp_path, caplog):
    """Two photos of equal bytes and --val-split 0.5: whichever is held out, the other trains."""
    data = make_data(tmp_path / "data", count=1)
    _copy(data, "000", data, "000_copy")
    (data / "two.txt").write_text("000\n000_copy\n")
    with caplog.at_level("WARNING", logger="portrait"):
        train, val = _split(TrainOptions(data=(str(data / "two.txt"),), val_split=0.5))
    assert len(train) == len(val) == 1
    [warning] = _warnings(caplog)
    assert warning.startswith("1 validation photo is a copy of a training photo")
    assert f"'{val[0][0]}' = '{train[0][0]}'" in warning
    assert warning.endswith("; remove the duplicate photos from --data, or give --val a "
                            "validation set of its own")
