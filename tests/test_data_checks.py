"""Training data checks: masks that are not 8-bit grey, empty list files, images without masks,
data tools writing into another tool's folder, and the folders a failed data tool leaves."""

import logging
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from portrait.errors import InputError
from portrait.sink.paths import OUTPUT_MARKER
from portrait.training import distill, mine
from portrait.training.data import check_masks, claim_data_folder, resolve_split
from portrait.training.evaluate import read_mask


def _person() -> np.ndarray:
    """A 48x64 mask: the left half person (255), the right half background (0)."""
    mask = np.zeros((48, 64), np.uint8)
    mask[:, :32] = 255
    return mask


def _data(folder: Path, stems=("a", "b"), mask_of=None) -> Path:
    """A data folder of real photos (a bright left half, the 'person') and PNG masks;
    ``mask_of`` maps a stem to the array written as its mask (default: :func:`_person`)."""
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    image = np.full((48, 64, 3), 20, np.uint8)
    image[:, :32] = 230
    for stem in stems:
        cv2.imwrite(str(folder / "images" / f"{stem}.png"), image)
        mask = (mask_of or {}).get(stem, _person())
        assert cv2.imwrite(str(folder / "masks" / f"{stem}.png"), mask)
    return folder


def _last_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert "Traceback" not in "\n".join(err), err
    return err[-1]


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


# ---------------------------------------------------------------- 16-bit and colour masks


def assert_refused_by_scoring_and_training(image: str, mask: str, message: str) -> None:
    """The scorer's mask reader and training's mask check refuse ``mask`` with one message."""
    with pytest.raises(InputError) as scoring:
        read_mask(mask, (48, 64))
    assert str(scoring.value) == message
    with pytest.raises(InputError) as training:
        check_masks([(image, mask)])
    assert str(training.value) == message


def test_a_16_bit_mask_is_refused_where_masks_are_read(tmp_path):
    """0 and 255 in a 16-bit PNG read as 0 (nobody) in OpenCV's and TensorFlow's grey reads."""
    data = _data(tmp_path / "d", ["a"], {"a": _person().astype(np.uint16)})
    image, mask = (str(data / "images" / "a.png"), str(data / "masks" / "a.png"))
    assert cv2.imread(mask, cv2.IMREAD_UNCHANGED).dtype == np.uint16  # really 16-bit on disk
    assert_refused_by_scoring_and_training(image, mask, (
        f"mask '{mask}' is 16-bit; masks are 8-bit, 0 (background) to 255 (person): save it as "
        "an 8-bit PNG"))


def test_a_colour_mask_is_refused_and_grey_saved_as_colour_is_read(tmp_path):
    red = np.zeros((48, 64, 3), np.uint8)
    red[:, 40:, 2] = 255  # a pure red person on black (OpenCV writes BGR)
    grey = _person()
    data = _data(tmp_path / "d", ["red", "rgb", "rgba"], {
        "red": red,
        "rgb": cv2.merge([grey, grey, grey]),
        "rgba": cv2.merge([grey, grey, grey, np.full_like(grey, 255)]),
    })
    mask = str(data / "masks" / "red.png")
    assert_refused_by_scoring_and_training(str(data / "images" / "red.png"), mask, (
        f"mask '{mask}' is in colour (red, green, blue = 255, 0, 0 at x=40, y=0); masks are "
        "grey, 0 (background) to 255 (person): save it as a grey PNG"))
    for stem in ("rgb", "rgba"):  # grey whatever the channels it is stored in
        np.testing.assert_array_equal(read_mask(data / "masks" / f"{stem}.png", (48, 64)), grey)
    check_masks([(str(data / "images" / s), str(data / "masks" / f"{s}.png"))
                 for s in ("rgb.png", "rgba.png")])


def test_a_mask_drawn_through_its_transparency_is_refused(tmp_path):
    """A selection saved as a cut-out: black everywhere, the person opaque and the rest clear.
    The grey reads (OpenCV's for scoring, TensorFlow's for training) ignore the alpha, so it
    was taken for a mask that marks nobody, without a word."""
    black = np.zeros((48, 64), np.uint8)
    data = _data(tmp_path / "d", ["cut"], {"cut": cv2.merge([black, black, black, _person()])})
    mask = str(data / "masks" / "cut.png")
    assert_refused_by_scoring_and_training(str(data / "images" / "cut.png"), mask, (
        f"mask '{mask}' is one grey level (0) drawn through its transparency; masks are grey, 0 "
        "(background) to 255 (person): save its alpha channel as a grey PNG"))


@pytest.mark.parametrize("mask", [_person().astype(np.uint16), cv2.merge(
    [np.zeros((48, 64), np.uint8), np.zeros((48, 64), np.uint8), _person()])],
    ids=["16-bit", "red"])
def test_distill_refuses_such_a_mask_and_leaves_no_folder(tmp_path, brightness_model, capsys, mask):
    """Before, distill wrote masks holding only the teacher's share (at most 76)."""
    data = _data(tmp_path / "data", ["a"], {"a": mask})
    out = tmp_path / "soft"
    assert distill.main(["--teacher", str(brightness_model), "--data", str(data),
                         "--out", str(out)]) == 2
    assert _last_error(capsys).startswith(f"error: mask '{data / 'masks' / 'a.png'}' is ")
    assert not out.exists()


def test_mine_refuses_a_16_bit_mask(tmp_path, brightness_model, capsys):
    data = _data(tmp_path / "data", ["a"], {"a": _person().astype(np.uint16)})
    out = tmp_path / "mined"
    assert mine.main(["--model", str(brightness_model), "--data", str(data),
                      "--out", str(out)]) == 2
    assert _last_error(capsys) == (f"error: mask '{data / 'masks' / 'a.png'}' is 16-bit; masks "
                                   "are 8-bit, 0 (background) to 255 (person): save it as an "
                                   "8-bit PNG")
    assert not out.exists()


# ---------------------------------------------------------------- lists and unmatched images


def test_an_empty_list_file_is_named_as_the_problem(tmp_path):
    data = _data(tmp_path / "d1")
    (data / "empty.txt").write_text("\n  \n")
    with pytest.raises(InputError) as given:
        resolve_split(str(data / "empty.txt"), "train")
    assert str(given.value) == (f"list file '{data / 'empty.txt'}' lists no stems; put one image "
                                "stem per line")
    (data / "train.txt").write_text("")  # the folder's own list, used for --data d1
    with pytest.raises(InputError) as found:
        resolve_split(str(data), "train")
    assert str(found.value) == (f"list file '{data / 'train.txt'}' lists no stems; put one image "
                                "stem per line")


def test_a_list_file_outside_its_data_folder_is_named_not_the_folder_it_lies_in(tmp_path):
    """A list kept beside the data folder (runs/mine.txt, or in images/) was refused as "data
    folder 'runs' must contain images/ and masks/", a folder never given. The list is named,
    with where it lies and where it belongs."""
    data = _data(tmp_path / "d", ["a", "b"])
    for place in (tmp_path / "mine.txt", data / "images" / "mine.txt"):
        place.write_text("a\n")
        with pytest.raises(InputError) as found:
            resolve_split(str(place), "train")
        assert str(found.value) == (
            f"list file '{place}' lies in '{place.parent}', which has no images/ and masks/: a "
            "list names photos of the data folder it lies in; move it into that folder, or "
            "pass the folder itself")
    (data / "mine.txt").write_text("a\n")
    assert resolve_split(str(data / "mine.txt"), "train") == [
        (str(data / "images" / "a.png"), str(data / "masks" / "a.png"))]


def test_list_files_take_comment_lines_and_blank_lines_wherever_they_are_read(tmp_path):
    """'# note' in a list file was a stem that named no photo, refused as missing; each reader
    (a list given as data, a folder's train.txt, evaluate --list, the suite's lists) skips
    comment and blank lines, and a list of comments alone names no stem."""
    from portrait.training.evaluate import EvalOptions, list_pairs
    from portrait.training.folders import read_stems, write_stems
    from portrait.training.suite import PhotoDomain, domain_pairs

    data = _data(tmp_path / "d", ["a", "b", "c"])
    text = "# portraits, checked by hand\n\na\n  # b is blurred\n   \nc  \n"
    (data / "train.txt").write_text(text)
    (data / "mine.txt").write_text(text)
    expected = [str(data / "images" / f"{s}.png") for s in ("a", "c")]
    for pairs in (resolve_split(str(data), "train"), resolve_split(str(data / "mine.txt"), "train"),
                  list_pairs(EvalOptions(data=str(data), list_file=str(data / "mine.txt"))),
                  domain_pairs(tmp_path, PhotoDomain("d", "d", whole_list="mine.txt"))):
        assert [image for image, _ in pairs] == expected
    (data / "notes.txt").write_text("# nothing yet\n")
    with pytest.raises(InputError, match="lists no stems"):
        resolve_split(str(data / "notes.txt"), "train")
    with pytest.raises(InputError, match=r"cannot list the photo '#1' in .*: the stem starts "
                                         r"with '#', which a list file reads as a comment"):
        write_stems(tmp_path / "out.txt", ["a", "#1"])
    assert not (tmp_path / "out.txt").exists()
    # A file name may hold a line break: listed, it was two stems naming no photo.
    with pytest.raises(InputError, match=r"cannot list the photo 'a\\nb' in .*: the stem holds "
                                         r"a line break, which a list file reads as two lines"):
        write_stems(tmp_path / "out.txt", ["a\nb"])
    assert not (tmp_path / "out.txt").exists()
    write_stems(tmp_path / "out.txt", ["a", "b#2"])  # '#' inside a stem is a stem's
    assert read_stems(tmp_path / "out.txt") == ["a", "b#2"]


def test_a_list_file_saved_with_a_byte_order_mark_or_in_latin_1_names_its_files(tmp_path):
    """Windows Notepad's UTF-8 starts with a byte-order mark, which named no photo ('\ufeffa',
    shown as 'a'); a list that `ls` wrote in a folder of Latin-1 file names ended in an
    unexpected UnicodeDecodeError. Both name their photos, for training and for evaluate."""
    from portrait.training.evaluate import EvalOptions, list_pairs

    data = _data(tmp_path / "d", ["a", "b"])
    (data / "notepad.txt").write_bytes("\ufeffa\r\nb\r\n".encode("utf-8"))
    for pairs in (resolve_split(str(data / "notepad.txt"), "train"),
                  list_pairs(EvalOptions(data=str(data), list_file=str(data / "notepad.txt")))):
        assert [Path(image).name for image, _ in pairs] == ["a.png", "b.png"]
    latin = os.fsdecode(b"caf\xe9")  # how Python names the file whose name is these bytes
    try:
        for folder in ("images", "masks"):
            (data / folder / "b.png").rename(data / folder / f"{latin}.png")
    except OSError as error:  # a file system that takes only UTF-8 names
        pytest.skip(f"no Latin-1 file names here: {error}")
    (data / "latin1.txt").write_bytes(b"a\ncaf\xe9\n")
    pairs = resolve_split(str(data / "latin1.txt"), "train")
    assert pairs == [(str(data / "images" / "a.png"), str(data / "masks" / "a.png")),
                     (str(data / "images" / f"{latin}.png"), str(data / "masks" / f"{latin}.png"))]


def test_a_utf_16_list_names_its_files_and_a_photo_given_as_a_list_is_refused(tmp_path):
    """Windows PowerShell 5's `dir -Name > list.txt` writes UTF-16: its stems were read as
    garbage with NUL bytes, and the error put them on the terminal ("9 listed stems have no
    image or mask (first: '\\udcff\\udcfe0\\x000\\x00...')"), as it did for a photo given to
    --list. A UTF-16 list names its photos; a binary file is refused as not text."""
    from portrait.training.evaluate import EvalOptions, list_pairs

    data = _data(tmp_path / "d", ["a", "b"])
    (data / "powershell.txt").write_bytes("a\r\nb\r\n".encode("utf-16"))
    for pairs in (resolve_split(str(data / "powershell.txt"), "train"),
                  list_pairs(EvalOptions(data=str(data),
                                         list_file=str(data / "powershell.txt")))):
        assert [Path(image).name for image, _ in pairs] == ["a.png", "b.png"]
    photo = data / "images" / "a.png"
    for read in (lambda: resolve_split(str(photo), "train"),
                 lambda: list_pairs(EvalOptions(data=str(data), list_file=str(photo)))):
        with pytest.raises(InputError) as refused:
            read()
        assert str(refused.value) == (f"list file '{photo}' is not text (it holds NUL bytes, as a "
                                      "photo or other binary file does); give a text file of "
                                      "image stems, one per line, saved as UTF-8")


def test_a_folder_copied_from_a_mac_trains_and_two_photos_of_one_stem_are_refused(tmp_path,
                                                                                 caplog):
    """A data folder copied by macOS onto a USB disk or a network share holds a hidden
    '._<name>' resource fork beside every file: they were taken for photos and masks, and
    training stopped at "'._a.png' is not a JPEG, PNG, BMP or GIF file", evaluate skipped each
    with exit code 1. They are left out, as the app leaves them out of a photo folder, and so
    is a folder named like a photo. Two photos of one stem (a.png and a.jpg, after converting)
    were one pair, which one the file system's listing order chose; they are refused by name."""
    from portrait.training.data import check_decodable

    data = _data(tmp_path / "d", ["a", "b"])
    for name in ("images/._a.png", "masks/._a.png", "images/._b.png", "masks/._b.png"):
        (data / name).write_bytes(b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        ")
    (data / "images" / "c.png").mkdir()  # a folder, not a photo
    with caplog.at_level("WARNING", logger="portrait"):
        pairs = resolve_split(str(data), "train")
    assert [Path(image).name for image, _ in pairs] == ["a.png", "b.png"]
    assert caplog.text == ""  # no photo without a mask
    check_decodable(pairs)
    cv2.imwrite(str(data / "images" / "a.jpg"), np.full((48, 64, 3), 90, np.uint8))
    for spec in (str(data), str(data / "list.txt")):
        (data / "list.txt").write_text("b\na\n")
        with pytest.raises(InputError) as refused:
            resolve_split(spec, "train")
        assert str(refused.value) == (f"'{data / 'images'}' holds 'a.jpg' and 'a.png', two files "
                                      "of the stem 'a', and a stem names one pair; remove or "
                                      "rename one")
    (data / "list.txt").write_text("b\n")  # a list that leaves the stem out
    assert resolve_split(str(data / "list.txt"), "train") == [pairs[1]]


def test_images_without_masks_are_named_in_one_warning(tmp_path, caplog):
    data = _data(tmp_path / "d", ["a", "b", "c"])
    (data / "masks" / "b.png").unlink()
    (data / "masks" / "c.png").unlink()
    with caplog.at_level(logging.WARNING):
        train = resolve_split(str(data), "train")
        val = resolve_split(str(data), "val")  # train resolves a folder for both roles
    assert train == val == [(str(data / "images" / "a.png"), str(data / "masks" / "a.png"))]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [f"2 images in '{data / 'images'}' have no mask in masks/ and are left "
                        "out (b, c); add masks/<stem>.png for each, or list the stems to use "
                        "in a list file"]


def test_one_image_without_a_mask_is_named_in_the_singular(tmp_path, caplog):
    data = _data(tmp_path / "d", ["a", "b"])
    (data / "masks" / "b.png").unlink()
    with caplog.at_level(logging.WARNING):
        resolve_split(str(data), "train")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [f"1 image in '{data / 'images'}' has no mask in masks/ and is left "
                        "out (b); add masks/<stem>.png for each, or list the stems to use in a "
                        "list file"]
    caplog.clear()
    (data / "train.txt").write_text("a\n")  # with a list, only the listed stems count
    with caplog.at_level(logging.WARNING):
        assert len(resolve_split(str(data), "train")) == 1
    assert not [r for r in caplog.records if r.levelno == logging.WARNING]


def test_a_mask_saved_as_jpeg_and_a_photo_of_a_type_not_read_are_named(tmp_path, caplog):
    """A mask saved as .jpg left its photo out with 'add masks/<stem>.png', though the user had
    added it; a photo saved as .tif left its mask out without a word."""
    data = _data(tmp_path / "d", ["a", "b", "c"])
    cv2.imwrite(str(data / "masks" / "b.jpg"), _person())
    (data / "masks" / "b.png").unlink()
    (data / "images" / "c.png").rename(data / "images" / "c.tif")
    with caplog.at_level(logging.WARNING):
        train = resolve_split(str(data), "train")
        resolve_split(str(data), "val")  # once per folder, as for images without masks
    assert train == [(str(data / "images" / "a.png"), str(data / "masks" / "a.png"))]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        f"1 image in '{data / 'images'}' has no mask in masks/ and is left out (b) "
        f"('{data / 'masks' / 'b.jpg'}' is a .jpg file; masks are read as PNG only: save it as "
        "b.png); add masks/<stem>.png for each, or list the stems to use in a list file",
        f"1 mask in '{data / 'masks'}' has no image in images/ and is left out (c) "
        f"('{data / 'images' / 'c.tif'}' is a .tif file, which is not read: convert it to JPEG "
        "or PNG); add images/<stem>.jpg or .png for each, or remove the mask"]


def test_an_unmatched_warning_lists_five_stems_whole_and_names_the_first_other_type(tmp_path,
                                                                                   caplog):
    """Five photos without masks are all named, with no "..." (six would have one); of two
    masks saved as other types, the first by name is the one named."""
    data = _data(tmp_path / "d", ["a", "b", "c", "d", "e", "f"])
    for stem in "bcdef":
        (data / "masks" / f"{stem}.png").unlink()
    cv2.imwrite(str(data / "masks" / "c.jpg"), _person())
    cv2.imwrite(str(data / "masks" / "b.bmp"), _person())
    with caplog.at_level(logging.WARNING):
        assert len(resolve_split(str(data), "train")) == 1
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.startswith(
        f"5 images in '{data / 'images'}' have no mask in masks/ and are left out (b, c, d, e, "
        f"f) ('{data / 'masks' / 'b.bmp'}' is a .bmp file;"), warning


def test_a_masks_folder_without_images_beside_it_is_no_data_folder_s_own(tmp_path,
                                                                         monkeypatch):
    """masks/ given where its parent has no images/: the usual layout message, not "the masks/
    folder of a data folder"; a data folder's images/ given by a relative path is named by
    that path's parent, as it was typed."""
    (tmp_path / "labels" / "masks").mkdir(parents=True)
    with pytest.raises(InputError, match="must contain images/ and masks/"):
        resolve_split(str(tmp_path / "labels" / "masks"), "train")
    _data(tmp_path / "my photos")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError, match="pass the folder that holds images/ and masks/, "
                                         "'my photos'$"):
        resolve_split("my photos/images", "train")


def test_masks_without_images_are_counted_in_one_warning(tmp_path, caplog):
    data = _data(tmp_path / "d", ["a", "b", "c"])
    (data / "images" / "b.png").unlink()
    (data / "images" / "c.png").unlink()
    with caplog.at_level(logging.WARNING):
        assert len(resolve_split(str(data), "train")) == 1
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [f"2 masks in '{data / 'masks'}' have no image in images/ and are left "
                        "out (b, c); add images/<stem>.jpg or .png for each, or remove the mask"]


def test_a_data_folder_s_own_images_folder_given_as_data_names_the_folder_to_pass(tmp_path,
                                                                                 monkeypatch):
    """`--data my_photos/images`, a natural slip, was told the folder 'must contain images/ and
    masks/', as any folder is; it is named as the images/ of the folder to pass instead."""
    data = _data(tmp_path / "my photos")
    for given, shown in ((data / "images", data), (data / "masks", data)):
        with pytest.raises(InputError) as refused:
            resolve_split(str(given), "train")
        assert str(refused.value) == (f"data folder '{given}' is the {given.name}/ folder of a "
                                      "data folder; pass the folder that holds images/ and "
                                      f"masks/, '{shown}'")
    monkeypatch.chdir(data / "images")  # '.': the folder is named by its whole path
    with pytest.raises(InputError, match=f"pass the folder that holds images/ and masks/, "
                                         f"'{data.resolve()}'$"):
        resolve_split(".", "train")
    (tmp_path / "photos" / "images").mkdir(parents=True)  # no masks/ beside it: the layout
    with pytest.raises(InputError, match="must contain images/ and masks/"):
        resolve_split(str(tmp_path / "photos" / "images"), "train")


def test_a_listed_stem_is_refused_saying_what_it_lacks(tmp_path):
    data = _data(tmp_path / "d", ["a", "b"])
    (data / "masks" / "b.png").unlink()
    (data / "list.txt").write_text("a\nb\nnope\n")
    with pytest.raises(InputError) as refused:
        resolve_split(str(data / "list.txt"), "train")
    assert str(refused.value) == (f"2 listed stems in '{data}' have no image or mask (first: 'b', "
                                  "which has no mask); fix the list file or add the files")
    (data / "list.txt").write_text("a\nnope\n")
    with pytest.raises(InputError) as refused:
        resolve_split(str(data / "list.txt"), "train")
    assert str(refused.value) == (f"1 listed stem in '{data}' has no image or mask (first: "
                                  "'nope', which has no image and no mask); fix the list file or "
                                  "add the files")


# ---------------------------------------------------------------- whose folder a tool writes


def test_mine_refuses_a_folder_distill_wrote(tmp_path, brightness_model, capsys):
    data = _data(tmp_path / "data")
    soft = tmp_path / "soft"
    assert distill.main(["--teacher", str(brightness_model), "--data", str(data),
                         "--out", str(soft)]) == 0
    before = _tree(soft)
    assert mine.main(["--model", str(brightness_model), "--data", str(data),
                      "--out", str(soft)]) == 2
    assert _last_error(capsys) == (
        f"error: --out '{soft}' holds the output of python -m portrait.training.distill (its "
        f"{OUTPUT_MARKER} says so), whose train.txt this run would replace; python -m "
        "portrait.training.mine writes only into a new or empty folder or its own earlier "
        "output, so choose another folder")
    assert _tree(soft) == before and (soft / "train.txt").read_text() == "a\nb\n"
    # Its own earlier output, a tool reads as its own (photo b labelled with nobody in it, so
    # what the model takes for a person there is mined: a run that finds nothing writes nothing).
    mined = tmp_path / "mined"
    nobody = _data(tmp_path / "nobody", mask_of={"b": np.zeros((48, 64), np.uint8)})
    for _ in range(2):
        assert mine.main(["--model", str(brightness_model), "--data", str(nobody),
                          "--out", str(mined)]) == 0
    assert (mined / "train.txt").read_text().split() == ["b_0"]


def test_a_mark_of_an_earlier_version_or_of_the_app_names_its_writer(tmp_path):
    old = tmp_path / "old"  # as data tools marked their folders before the shared mark
    old.mkdir()
    (old / OUTPUT_MARKER).write_text("Written by python -m portrait.training.mine. Running a "
                                     "portrait data tool into this folder again replaces its "
                                     "train.txt and the images and masks of the same names.\n")
    claim_data_folder(old, "--out", "portrait.training.mine")  # its own
    with pytest.raises(InputError, match=r"^--negatives '.*' holds the output of python -m "
                                         r"portrait\.training\.mine \("):
        claim_data_folder(old, "--negatives", "portrait.training.distill", create=False)
    from portrait.sink.images import ImageFolderSink

    cutouts = tmp_path / "cutouts"
    ImageFolderSink(cutouts).write(np.zeros((8, 8, 3), np.uint8), "holiday")
    with pytest.raises(InputError, match=r"^--out '.*' holds the output of python app\.py "
                                         r"--image --out \("):
        claim_data_folder(cutouts, "--out", "portrait.training.distill")
    assert sorted(p.name for p in cutouts.iterdir()) == ["holiday.png", OUTPUT_MARKER]


# ---------------------------------------------------------------- failed runs


def _broken(data: Path, stem: str) -> None:
    (data / "images" / f"{stem}.png").write_bytes(b"not a picture")


def test_a_failed_mine_run_leaves_no_partial_folder(tmp_path, brightness_model, capsys):
    """The first photo is mined (its crops written) before the second fails to decode."""
    lamp = np.full((48, 64, 3), 20, np.uint8)
    lamp[:, :32] = 230
    lamp[4:20, 44:60] = 230  # bright like the person, but no person: mined
    data = _data(tmp_path / "data", ["a", "b"])
    cv2.imwrite(str(data / "images" / "a.png"), lamp)
    _broken(data, "b")
    run = ["--model", str(brightness_model), "--data", str(data), "--out"]
    new = tmp_path / "new" / "deeper" / "mined"
    assert mine.main([*run, str(new)]) == 2
    assert str(data / "images" / "b.png") in _last_error(capsys)
    assert not (tmp_path / "new").exists()  # the parents it made too
    empty = tmp_path / "empty"
    empty.mkdir()
    assert mine.main([*run, str(empty)]) == 2
    assert empty.is_dir() and not any(empty.iterdir())
    # What was there before (the tool's own earlier output) stays.
    (data / "train.txt").write_text("a\n")
    earlier = tmp_path / "earlier"
    assert mine.main([*run, str(earlier)]) == 0
    assert (earlier / "train.txt").read_text() == "a_0\n"
    (data / "train.txt").write_text("a\nb\n")
    assert mine.main([*run, str(earlier)]) == 2
    assert (earlier / "train.txt").read_text() == "a_0\n" and (earlier / OUTPUT_MARKER).is_file()
    assert (earlier / "images" / "a_0.jpg").is_file()


def test_a_failed_distill_run_leaves_no_partial_folders(tmp_path, brightness_model, capsys):
    data = _data(tmp_path / "data", ["a", "b"])
    _broken(data, "b")
    out, negatives = tmp_path / "soft", tmp_path / "negatives"
    assert distill.main(["--teacher", str(brightness_model), "--data", str(data), "--out",
                         str(out), "--negatives", str(negatives)]) == 2
    assert str(data / "images" / "b.png") in _last_error(capsys)
    assert not out.exists() and not negatives.exists()
    assert sorted(p.name for p in (data / "images").iterdir()) == ["a.png", "b.png"]


# ---------------------------------------------------------------- file names that are not UTF-8

LATIN_1_CHILD = r"""
import json, os, sys
from portrait.training.data import check_masks, make_dataset, resolve_split
from portrait.training.evaluate import main

data, model = sys.argv[1], sys.argv[2]
pairs = resolve_split(data, "train")
check_masks(pairs)
for training in (True, False):
    images, masks = next(iter(make_dataset(pairs, (32, 32), 2, training)))
    print("batch", training, images.shape[0], flush=True)
folder = os.path.dirname(data)
code = main(["--model", model, "--data", data, "--no-progress",
             "--sheet", os.path.join(folder, os.fsdecode(b"sheet\xe9.png"))])
from portrait.training.distill import main as distill
print("distill", distill(["--teacher", model, "--data", data,
                          "--out", os.path.join(folder, "soft")]), flush=True)
from portrait.training.train import main as train
print("train", train(["--data", data, "--val-split", "0.5", "--backbone", "none",
                      "--out", os.path.join(folder, "x.hdf5"),
                      "--run-dir", os.path.join(folder, os.fsdecode(b"run\xe9"))]), flush=True)
sys.exit(code)
"""


def test_a_data_folder_whose_name_is_not_utf_8_trains_and_scores(tmp_path, brightness_model):
    """A folder and a photo named in Latin-1 bytes (files copied from an old archive onto
    Linux): OpenCV's own file functions crashed the process on them (a segmentation fault, exit
    code 139, no line) when a mask was checked or scored and when the sheet was written,
    TensorFlow took no such path ('unexpected ValueError: Error converting unicode string'),
    and distill could not list the photo in its train.txt (UnicodeEncodeError). The masks are
    checked, training and validation batches are made, evaluate scores both photos and writes
    its sheet, distill lists both; a run folder of such a name, which TensorBoard's writer
    cannot take, is refused in one line before anything is written."""
    import json
    import subprocess
    import sys

    from conftest import ROOT

    data = tmp_path / os.fsdecode(b"caf\xe9")
    try:  # made under UTF-8 names: OpenCV's writer, which _data uses, crashes on these
        _data(tmp_path / "d")
        for folder in ("images", "masks"):  # a photo named in Latin-1 too
            (tmp_path / "d" / folder / "b.png").rename(tmp_path / "d" / folder / os.fsdecode(b"b\xe9.png"))
        (tmp_path / "d").rename(data)
    except OSError as error:  # a file system that takes only UTF-8 names
        pytest.skip(f"no Latin-1 file names here: {error}")
    done = subprocess.run([sys.executable, "-c", LATIN_1_CHILD, str(data), str(brightness_model)],
                          cwd=ROOT, capture_output=True, timeout=120)
    stdout = done.stdout.decode("utf-8", "replace")
    assert done.returncode == 0, (done.returncode, done.stderr.decode("utf-8", "replace")[-2000:])
    assert "batch True 2" in stdout and "batch False 2" in stdout, stdout
    assert json.loads(stdout.splitlines()[-3])["n"] == 2
    assert stdout.splitlines()[-2] == "distill 0", stdout
    assert (tmp_path / "soft" / "train.txt").read_bytes() == b"a\nb\xe9\n"  # the names' bytes
    assert cv2.imdecode(np.fromfile(tmp_path / os.fsdecode(b"sheet\xe9.png"), np.uint8),
                        cv2.IMREAD_COLOR) is not None
    assert stdout.splitlines()[-1] == "train 2", stdout
    err = done.stderr.decode("utf-8", "replace").strip().splitlines()[-1]
    assert err == (f"error: run folder '{tmp_path}/run\\udce9': its name is not UTF-8 text, "
                   "which TensorBoard's log writer cannot take; choose a --run-dir with a UTF-8 "
                   "name"), err
    assert not (tmp_path / os.fsdecode(b"run\xe9")).exists() and not (tmp_path / "x.hdf5").exists()
