"""``python -m portrait.evaluate``: scores through the app's matte path, --compare, --sheet, errors.

The data is made here: bright discs on dark noise, with masks of the discs. The "good" model
(conftest's ``brightness_model``) calls bright pixels person, so it finds the discs; the "bad" one
has a bias that also calls much of the noise person.
"""

import dataclasses
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import ROOT, shared_path
from portrait.training import evaluate
from portrait.errors import InputError
from portrait.training.evaluate import EvalOptions, ModelScorer, WorstImages
from portrait.options import RefineOptions, SegmentOptions

SIZE = (120, 90)  # (width, height): landscape, unlike the 64x64 model input
STEMS = ["a0", "a1", "a2", "a3", "a4"]


def disc_pair(seed: int):
    width, height = SIZE
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 90, (height, width, 3), np.uint8)
    mask = np.zeros((height, width), np.uint8)
    centre = (int(rng.integers(40, 80)), int(rng.integers(35, 55)))
    cv2.circle(mask, centre, int(rng.integers(20, 32)), 255, cv2.FILLED)
    bright = rng.integers(200, 256, (height, width, 3), np.uint8)
    image[mask > 0] = bright[mask > 0]
    return image, mask


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """images/ + masks/ with five pairs, one image without a mask, and a list of three stems."""
    root = tmp_path_factory.mktemp("discs")
    (root / "images").mkdir()
    (root / "masks").mkdir()
    for seed, stem in enumerate(STEMS):
        image, mask = disc_pair(seed)
        cv2.imwrite(str(root / "images" / f"{stem}.png"), image)
        cv2.imwrite(str(root / "masks" / f"{stem}.png"), mask)
    cv2.imwrite(str(root / "images" / "no_mask.png"), disc_pair(9)[0])
    (root / "some.txt").write_text("a3\na1\n\na4\n")
    return root


@pytest.fixture(scope="module")
def bad_model(tmp_path_factory):
    """Like the brightness model, but a +8 bias calls much of the dark noise person too."""
    import keras

    inputs = keras.Input((64, 64, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)
    conv = keras.layers.Conv2D(1, 1, activation="sigmoid")
    model = keras.Model(inputs, conv(x))
    conv.set_weights([np.full((1, 1, 3, 1), 4.0, np.float32), np.full(1, 8.0, np.float32)])
    path = tmp_path_factory.mktemp("models") / "biased.hdf5"
    model.save(path)
    return path


def run_evaluate(*args, timeout=240):
    """Run ``python -m portrait.evaluate`` from the repository root; (code, stdout, stderr)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    done = subprocess.run([sys.executable, "-m", "portrait.training.evaluate", *map(str, args)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=timeout)
    return done.returncode, done.stdout, done.stderr


def test_command_line_scores_compares_and_draws_the_worst(data, brightness_model, bad_model, tmp_path):
    sheet = tmp_path / "worst.png"
    code, stdout, stderr = run_evaluate(
        "--model", brightness_model, "--data", data, "--compare", bad_model,
        "--sheet", sheet, "--worst", 3, "--no-progress")
    assert code == 0, stderr
    lines = stdout.splitlines()
    assert len(lines) == 1, stdout  # stdout is the JSON line and nothing else
    result = json.loads(lines[0])
    for key in ("miou", "dice", "pixel_accuracy", "boundary_f", "ms_per_image", "ms_refine", "n",
                "model", "description"):
        assert key in result, key
    assert result["n"] == len(STEMS)  # the image without a mask is not scored
    assert result["miou"] > 0.9 and result["dice"] > 0.9 and result["pixel_accuracy"] > 0.95
    assert result["ms_per_image"] > 0 and result["refine"] is True
    other = result["compare"]
    assert other["n"] == len(STEMS) and other["model"] == str(bad_model)
    assert other["miou"] < result["miou"] - 0.2
    assert "higher mIoU: bright.hdf5" in stderr  # the side-by-side table
    paired = other["paired"]  # image by image, the compared model minus the first
    assert paired["miou_diff"] == pytest.approx(other["miou"] - result["miou"], abs=2e-5)
    assert paired["miou_diff_se"] > 0
    assert paired["images_lower"] == len(STEMS) and paired["images_higher"] == 0
    assert "per image, biased.hdf5 minus bright.hdf5: -0." in stderr
    # Three rows of 200 px; four tiles of 120x90 scaled to 200 px high: image, truth, two models.
    written = cv2.imread(str(sheet))
    assert written.shape == (3 * 200, 4 * round(120 * 200 / 90), 3)


@pytest.mark.parametrize("case, words", [
    ("data", ["data folder", "not found"]),
    ("model", ["model", "not found"]),
    ("list", ["list file", "not found"]),
])
def test_command_line_errors_are_one_line(data, brightness_model, tmp_path, case, words):
    args = {"model": brightness_model, "data": data, "list": None}
    args[case] = tmp_path / "missing"
    extra = ["--list", args["list"]] if args["list"] else []
    code, stdout, stderr = run_evaluate("--model", args["model"], "--data", args["data"], *extra)
    assert code != 0
    assert stdout == ""
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), stderr
    assert all(word in lines[0] for word in words), lines[0]


def test_a_list_given_as_data_or_a_folder_as_list_is_named_for_what_it_is(data, brightness_model,
                                                                         tmp_path, capfd):
    """train takes a list file as --data; given one, scoring said 'data folder ... not found'
    of a file that is there (and of a folder given as --list, 'list file ... not found', and of
    a file given as --suite's data root, 'not found'). Each is named for what it is, with the
    command that scores it."""
    lone = tmp_path / "notes.txt"
    lone.write_text("a0\n")
    cases = [
        (["--data", str(data / "some.txt")], f"--data '{data / 'some.txt'}' is a file, not a "
         f"data folder; to score the stems it lists, pass --data {data} --list {data / 'some.txt'}"),
        (["--data", str(lone)], f"--data '{lone}' is a file, not a data folder; pass --data DIR "
         "with images/ and masks/ (and a list of stems as --list FILE)"),
        (["--data", str(data), "--list", str(data / "images")],
         f"--list '{data / 'images'}' is a folder, not a list file; pass --list FILE of image "
         "stems, one per line, and the folder as --data"),
        (["--suite", "--compare", str(brightness_model), "--data", str(lone)],
         f"suite data root '{lone}' is a file, not a folder; pass --data DIR that holds eg1800/, "
         "ccp_fashion/, coco_person/, pelota/ and videos/"),
    ]
    for args, message in cases:
        assert evaluate.main(["--model", str(brightness_model), *args]) == 2, args
        captured = capfd.readouterr()
        assert captured.err.strip().splitlines() == [f"error: {message}"] and captured.out == ""
    # As the line says, the list scores.
    assert evaluate.main(["--model", str(brightness_model), "--data", str(data), "--list",
                          str(data / "some.txt"), "--no-progress", "-q"]) == 0
    assert json.loads(capfd.readouterr().out)["n"] == 3  # written to the descriptor


def test_the_sheet_is_never_written_into_the_data(data, brightness_model, tmp_path):
    mask = data / "masks" / f"{STEMS[0]}.png"
    before = mask.read_bytes()
    for sheet in (mask, data / "worst.png", data / "masks" / ".." / "images" / "new.png"):
        options = EvalOptions(data=str(data), sheet=str(sheet))
        with pytest.raises(InputError, match="inside the data folder"):
            evaluate.check_paths(options, [SegmentOptions(model=str(brightness_model))])
    assert mask.read_bytes() == before
    evaluate.check_paths(EvalOptions(data=str(data), sheet=str(tmp_path / "worst.png")),
                         [SegmentOptions(model=str(brightness_model))])


def test_the_sheet_is_never_a_scored_file_behind_a_link_or_another_name(data, brightness_model,
                                                                         tmp_path):
    """A training split's images/ and masks/ are links into the data root; a hard link is the
    same file under another name. The sheet replaces neither."""
    linked = tmp_path / "split"
    linked.mkdir()
    for name in ("images", "masks"):
        (linked / name).symlink_to(data / name, target_is_directory=True)
    mask = data / "masks" / f"{STEMS[0]}.png"
    before = mask.read_bytes()
    model = [SegmentOptions(model=str(brightness_model))]
    with pytest.raises(InputError, match="inside the data folder"):
        evaluate.check_paths(EvalOptions(data=str(linked), sheet=str(mask)), model)
    twin = tmp_path / "twin.png"
    os.link(mask, twin)
    with pytest.raises(InputError, match=f"refusing to overwrite the input '{twin}' with the "
                                         "output; choose a different --sheet"):
        evaluate.evaluate(EvalOptions(data=str(data), sheet=str(twin), progress=False), model)
    assert mask.read_bytes() == before


def test_a_pair_that_cannot_be_read_is_left_out_and_named(data, brightness_model, tmp_path):
    """One truncated photo no longer discards every score before it: the JSON line has the
    rest, the pair is named, and the exit code is 1."""
    broken = tmp_path / "broken"
    shutil.copytree(data, broken)
    cut = broken / "images" / f"{STEMS[1]}.png"
    cut.write_bytes(cut.read_bytes()[:200])
    code, stdout, stderr = run_evaluate("--model", brightness_model, "--data", broken,
                                        "--no-progress")
    assert code == 1 and "Traceback" not in stderr, stderr
    result = json.loads(stdout)
    assert result["n"] == len(STEMS) - 1 and result["skipped"] == [str(cut)]
    assert stderr.strip().splitlines()[-1] == (
        f"ERROR portrait.training.evaluate: 1 pair could not be read and was left out of the "
        f"scores: {cut.name} (see the warnings above)")


@pytest.mark.parametrize("args, message", [
    (["--threads", "-3"], "argument --threads: '-3' must be 0 (all cores) or more"),
    (["--input-size", "100x100"], "argument --input-size: size '100x100' is not a multiple of 32"),
    (["--compare-input-size", "100x100"], "argument --compare-input-size: size '100x100'"),
    (["--worst", "0"], "argument --worst: '0' must be greater than 0"),
    (["--max-items", "-1"], "argument --max-items: '-1' must be greater than 0"),
    (["--max-items", "2.5"], "argument --max-items: '2.5' is not a whole number"),
    (["--sheet", ""], "argument --sheet: empty; give a value or leave the option out"),
    (["--list", " "], "argument --list: empty; give a value or leave the option out"),
])
def test_bad_options_are_refused_as_the_app_refuses_them_in_one_line(data, capsys, args, message):
    """The model options as the app checks them; the evaluation's numbers by EvalOptions'
    ranges (portrait.cli.field_number); paths not empty."""
    with pytest.raises(SystemExit) as stop:
        evaluate.main(["--model", "x.hdf5", "--data", str(data), *args])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_quiet_and_verbose_together_are_refused_in_one_line(data, capsys):
    with pytest.raises(SystemExit) as stop:
        evaluate.main(["--model", "x.hdf5", "--data", str(data), "-q", "-v"])
    err = capsys.readouterr().err.strip().splitlines()
    assert stop.value.code == 2 and len(err) == 1, err
    assert "argument -v/--verbose: not allowed with argument -q/--quiet" in err[0]


def test_a_missing_compare_model_is_named_by_its_option(data, brightness_model, capsys, tmp_path):
    assert evaluate.main(["--model", str(brightness_model), "--data", str(data), "--compare",
                          str(tmp_path / "nope.tflite")]) == 2
    assert "pass --compare PATH to a .hdf5 or .tflite model" in capsys.readouterr().err


def test_a_compare_file_that_is_no_model_is_refused_before_any_model_loads(
        data, brightness_model, capsys, caplog, tmp_path):
    """--compare notes.txt was refused ("unsupported type '.txt'") only once --model had
    loaded (a Keras one converted first); it is refused, by its option, before any model loads,
    in a scoring run and in the suite."""
    notes = tmp_path / "notes.txt"
    notes.write_text("compare with the selfie model\n")
    expected = (f"error: --compare '{notes}' is not a model file: its type '.txt' is none of "
                ".hdf5, .h5, .keras or .tflite; pass --compare PATH to a .hdf5 or .tflite model")
    for args in (["--data", str(data)], ["--suite", "--data", str(tmp_path)]):
        with caplog.at_level(logging.INFO):
            assert evaluate.main(["--model", str(brightness_model), "--compare", str(notes)]
                                 + args) == 2, args
        loaded = [r.getMessage() for r in caplog.records if r.name.startswith("portrait.segment")]
        assert not loaded, loaded  # --model had loaded
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1] == expected, err
    assert notes.read_text() == "compare with the selfie model\n"


def test_alpha_is_what_the_app_writes_with_matte(data, brightness_model, tmp_path):
    from portrait.cli import main

    image_path = data / "images" / "a2.png"
    out = tmp_path / "matte.png"
    assert main(["--model", str(brightness_model), "--image", str(image_path), "--matte",
                 "--out", str(out), "-q"]) == 0
    with ModelScorer(SegmentOptions(model=str(brightness_model))) as scorer:
        alpha, ms = scorer.alpha(cv2.imread(str(image_path)))
    scorer.close()  # safe twice
    np.testing.assert_array_equal(alpha, cv2.imread(str(out), cv2.IMREAD_GRAYSCALE))
    assert ms["segment"] > 0 and ms["refine"] > 0


def test_list_file_order_and_max_items(data, brightness_model):
    model = SegmentOptions(model=str(brightness_model))
    options = EvalOptions(data=str(data), list_file=str(data / "some.txt"), max_items=2,
                          progress=False)
    assert [Path(p[0]).name for p in evaluate.list_pairs(options)] == ["a3.png", "a1.png"]
    (summary,) = evaluate.evaluate(options, [model])
    assert summary["n"] == 2 and summary["miou"] > 0.9
    plain = evaluate.evaluate(options, [model], RefineOptions(enabled=False))[0]
    assert plain["refine"] is False and plain["miou"] > 0.85


def test_empty_list_and_missing_stem_are_input_errors(data, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    with pytest.raises(InputError, match="lists no stems"):
        evaluate.list_pairs(EvalOptions(data=str(data), list_file=str(empty)))
    missing = tmp_path / "missing.txt"
    missing.write_text("a1\nno_mask\n")
    with pytest.raises(InputError, match="no_mask"):
        evaluate.list_pairs(EvalOptions(data=str(data), list_file=str(missing)))


def test_score_alpha_thresholds_at_127():
    truth = np.array([[True, True], [False, False]])
    alpha = np.array([[128, 127], [0, 255]], np.uint8)  # 127 is background
    scores = evaluate.score_alpha(truth, alpha)
    # Person predicted at (0,0) and (1,1): intersection 1, union 3; 2 of 4 pixels right.
    assert scores["iou"] == pytest.approx(1 / 3)
    assert scores["dice"] == pytest.approx(2 / 4)
    assert scores["pixel_accuracy"] == pytest.approx(2 / 4)
    # (1,1) lies 1 px from the person, beyond 5 % of the 2 px long side: a quarter of the image.
    assert scores["far"] == pytest.approx(1 / 4)
    # Every wrong pixel of a 2x2 image lies within 2 px of the outline: all counted right.
    assert scores["iou_edge_2px"] == scores["iou_edge_5px"] == 1.0
    with pytest.raises(ValueError, match="unexpected truth/alpha"):
        evaluate.score_alpha(truth, alpha.astype(np.float32))


def test_mask_threshold_and_resize_in_read_pair(tmp_path):
    image = np.zeros((4, 6, 3), np.uint8)
    mask = np.array([[127, 200], [128, 255]], np.uint8)  # >= 128 is person; 2x2 → 6x4
    cv2.imwrite(str(tmp_path / "i.png"), image)
    cv2.imwrite(str(tmp_path / "m.png"), mask)
    read, truth = evaluate.read_pair(tmp_path / "i.png", tmp_path / "m.png")
    assert read.shape == (4, 6, 3) and truth.shape == (4, 6) and truth.dtype == bool
    np.testing.assert_array_equal(truth[:, 0], [False, False, True, True])
    np.testing.assert_array_equal(truth[:, 3], [True, True, True, True])
    with pytest.raises(InputError, match="cannot read mask"):
        evaluate.read_pair(tmp_path / "i.png", tmp_path / "none.png")


def test_read_mask_keeps_the_labels_hard_and_reads_a_mask_of_nobody(tmp_path):
    """A mask of another size is resized nearest, so it keeps its 0 and 255 (no grey edges
    that the threshold would move); a mask with nobody in it (a hard negative distill or mine
    writes), grey or opaque RGBA, is a mask, not one 'written as 0 and 1' or 'drawn through its
    transparency'."""
    cv2.imwrite(str(tmp_path / "m.png"), np.array([[0, 255], [255, 0]], np.uint8))
    mask = evaluate.read_mask(tmp_path / "m.png", (4, 6))
    assert mask.shape == (4, 6) and set(np.unique(mask)) == {0, 255}
    np.testing.assert_array_equal(mask[:2, :3], 0)
    np.testing.assert_array_equal(mask[:2, 3:], 255)
    cv2.imwrite(str(tmp_path / "nobody.png"), np.zeros((4, 6), np.uint8))
    np.testing.assert_array_equal(evaluate.read_mask(tmp_path / "nobody.png", (4, 6)), 0)
    # Saved as opaque RGBA it is still grey: only a clear alpha says it was drawn through it.
    cv2.imwrite(str(tmp_path / "rgba.png"), np.dstack([np.zeros((4, 6, 3), np.uint8),
                                                       np.full((4, 6), 255, np.uint8)]))
    np.testing.assert_array_equal(evaluate.read_mask(tmp_path / "rgba.png", (4, 6)), 0)


def test_worst_images_keeps_the_lowest_iou_worst_first():
    worst = WorstImages(2)
    blank = np.zeros((2, 2, 3), np.uint8)
    for stem, iou in [("a", 0.9), ("b", 0.5), ("c", 0.95), ("d", 0.7), ("e", 0.99)]:
        worst.offer(stem, blank, np.zeros((2, 2), bool), [blank[..., 0]], [iou])
    assert [(w.stem, w.ious[0]) for w in worst.rows()] == [("b", 0.5), ("d", 0.7)]


def test_contact_sheet_pads_rows_of_other_widths():
    truth = np.zeros((90, 120), bool)
    truth[20:70, 30:90] = True
    alpha = (truth * 255).astype(np.uint8)
    alpha[0:10, 0:10] = 255  # a false person: tinted red
    wide = evaluate.sheet_row("x", np.zeros((90, 120, 3), np.uint8), truth, [alpha], [0.8], ["m"])
    assert wide.shape == (200, 3 * 267, 3)
    tall_truth = np.zeros((200, 100), bool)
    narrow = evaluate.sheet_row("y", np.zeros((200, 100, 3), np.uint8), tall_truth,
                                [np.zeros((200, 100), np.uint8)], [1.0], ["m"])
    sheet = evaluate.contact_sheet([wide, narrow])
    assert sheet.shape == (400, 3 * 267, 3)
    assert not sheet[200:, 300:].any()  # padding is black
    view = evaluate.prediction_view(alpha, truth)
    assert tuple(view[5, 5]) == (127, 127, 254)  # false person: red tint
    missed = evaluate.prediction_view(np.zeros_like(alpha), truth)
    assert tuple(missed[40, 60]) == (127, 0, 0)  # missed person: blue tint


def test_format_table_names_both_models_and_the_better_one():
    base = dict(n=3, dice=0.9, pixel_accuracy=0.95, boundary_f=0.7, far_mean=0.001, ms_per_image=2.0,
                ms_refine=1.0)
    table = evaluate.format_table([dict(base, model="w/ours.hdf5", miou=0.97),
                                   dict(base, model="m/selfie.tflite", miou=0.96)])
    assert "ours.hdf5" in table and "selfie.tflite" in table
    assert table.splitlines()[-1] == "higher mIoU: ours.hdf5 (+0.0100)"


def test_tables_name_a_model_with_its_test_time_augmentation():
    """The same file with and without --tta are two rows that say which is which."""
    base = dict(n=3, dice=0.9, pixel_accuracy=0.95, boundary_f=0.7, far_mean=0.001, ms_per_image=2.0,
                ms_refine=1.0, model="w/unet.hdf5")
    table = evaluate.format_table([dict(base, miou=0.97, tta="scales"), dict(base, miou=0.96, tta="off")])
    rows = table.splitlines()[2:4]
    assert rows[0].split()[:4] == ["unet.hdf5", "(--tta", "scales)", "0.9700"]
    assert rows[1].split()[:2] == ["unet.hdf5", "0.9600"]
    assert table.splitlines()[-1] == "higher mIoU: unet.hdf5 (--tta scales) (+0.0100)"
    assert evaluate.model_label("m/selfie.tflite", "mirror") == "selfie.tflite (--tta mirror)"


def test_format_table_says_what_the_outline_costs_each_model():
    base = dict(n=3, dice=0.9, pixel_accuracy=0.95, boundary_f=0.7, far_mean=0.001, ms_per_image=2.0,
                ms_refine=1.0)
    table = evaluate.format_table([dict(base, model="w/ours.hdf5", miou=0.96, miou_edge_2px=0.97,
                                        miou_edge_5px=0.975)])
    assert table.splitlines()[-1] == ("ours.hdf5: mIoU if every wrong pixel within 2 / 5 px of the "
                                      "labelled outline were right: 0.9700 / 0.9750")


def _scores(ious, stems="abc"):
    return [evaluate.ImageScore(stem=stem, iou=iou, dice=0.0, pixel_accuracy=0.0, boundary_f=0.0,
                                far=0.0, iou_edge_2px=iou, iou_edge_5px=iou, segment_ms=1.0,
                                refine_ms=1.0) for stem, iou in zip(stems, ious)]


def test_summary_averages_far_matte_and_counts_photos_above_the_bar():
    scores = [dataclasses.replace(score, far=far)
              for score, far in zip(_scores([0.9, 0.8, 0.7]), [0.0, 0.001, 0.03])]
    summary = evaluate.summarize(scores)
    assert summary["far_mean"] == pytest.approx(0.031 / 3, abs=1e-5)
    assert summary["far_share"] == pytest.approx(1 / 3, abs=1e-5)  # only 3 % is above 0.2 %


def test_paired_difference_is_the_mean_per_image_difference_and_its_standard_error():
    paired = evaluate.paired_difference(_scores([0.9, 0.8, 0.7]), _scores([0.95, 0.8, 0.6]))
    # Differences 0.05, 0, -0.1: mean -1/60; sample deviation 0.0763763; / sqrt(3) = 0.0440959.
    assert paired == {"miou_diff": -0.01667, "miou_diff_se": 0.0441, "images_higher": 1,
                      "images_lower": 1}
    assert evaluate.paired_difference(_scores([0.5]), _scores([0.7], "a"))["miou_diff_se"] is None
    with pytest.raises(ValueError, match="same images"):
        evaluate.paired_difference(_scores([0.9, 0.8]), _scores([0.9, 0.8], "ax"))


def test_format_table_reports_the_paired_difference():
    base = dict(n=3, dice=0.9, pixel_accuracy=0.95, boundary_f=0.7, far_mean=0.001, ms_per_image=2.0,
                ms_refine=1.0)
    paired = evaluate.paired_difference(_scores([0.9, 0.8, 0.7]), _scores([0.95, 0.8, 0.6]))
    table = evaluate.format_table([dict(base, model="w/ours.hdf5", miou=0.8),
                                   dict(base, model="m/selfie.tflite", miou=0.7833, paired=paired)])
    assert table.splitlines()[-1] == ("per image, selfie.tflite minus ours.hdf5: -0.0167 IoU "
                                      "(standard error 0.0441); higher on 1, lower on 1 of 3")


def test_selfie_model_on_eg1800_test_scores_like_the_design_says():
    data = shared_path("data", "eg1800")
    model = shared_path("models", "selfie_segmentation.tflite")
    options = EvalOptions(data=str(data), list_file=str(data / "test.txt"), max_items=20,
                          progress=False)
    (summary,) = evaluate.evaluate(options, [SegmentOptions(model=str(model))])
    assert summary["n"] == 20
    assert summary["miou"] > 0.9


def test_a_mask_of_zeros_and_ones_is_refused_by_name(tmp_path):
    from portrait.training.data import check_masks

    image, mask = disc_pair(1)
    cv2.imwrite(str(tmp_path / "m.png"), (mask > 127).astype(np.uint8))
    with pytest.raises(InputError, match="holds 0 and 1"):
        evaluate.read_mask(tmp_path / "m.png", image.shape[:2])
    with pytest.raises(InputError, match="m.png"):
        check_masks([("unused.png", str(tmp_path / "m.png"))])
    cv2.imwrite(str(tmp_path / "ok.png"), mask)
    assert evaluate.read_mask(tmp_path / "ok.png", image.shape[:2]).max() == 255
    check_masks([("unused.png", str(tmp_path / "ok.png"))])


def test_training_names_a_mask_whose_size_differs_from_its_photo(tmp_path, caplog):
    """Training resizes such a mask to its photo; a warning names it, and says "stretching" only
    where the aspect ratios differ (a mask of another photo, not a smaller copy of its own)."""
    from portrait.training.data import check_masks

    image, mask = disc_pair(1)
    height, width = image.shape[:2]
    cv2.imwrite(str(tmp_path / "photo.png"), image)
    cv2.imwrite(str(tmp_path / "same.png"), mask)
    cv2.imwrite(str(tmp_path / "half.png"), cv2.resize(mask, (width // 2, height // 2)))
    cv2.imwrite(str(tmp_path / "wide.png"), cv2.resize(mask, (width * 2, height)))
    with caplog.at_level(logging.WARNING, logger="portrait.training.data"):
        check_masks([(str(tmp_path / "photo.png"), str(tmp_path / name))
                     for name in ("same.png", "half.png", "wide.png")])
    messages = [record.getMessage() for record in caplog.records]
    assert messages == [
        f"mask '{tmp_path / 'half.png'}' is {width // 2}x{height // 2}, its photo {width}x{height}: "
        "training resizes the mask to the photo",
        f"mask '{tmp_path / 'wide.png'}' is {width * 2}x{height}, its photo {width}x{height}: "
        "training resizes the mask to the photo, stretching it (check that they belong together)",
    ]


def test_scoring_names_a_resized_mask_as_training_does(tmp_path, caplog):
    """evaluate's warning says "stretching" where training's does: only for another aspect."""
    image, mask = disc_pair(1)
    height, width = image.shape[:2]
    cv2.imwrite(str(tmp_path / "half.png"), cv2.resize(mask, (width // 2, height // 2)))
    cv2.imwrite(str(tmp_path / "wide.png"), cv2.resize(mask, (width * 2, height)))
    with caplog.at_level(logging.WARNING, logger="portrait.training.evaluate"):
        for name in ("half.png", "wide.png"):
            assert evaluate.read_mask(tmp_path / name, (height, width)).shape == (height, width)
    messages = [record.getMessage() for record in caplog.records]
    assert messages == [
        f"mask '{tmp_path / 'half.png'}' is {width // 2}x{height // 2}, its image {width}x{height}: "
        "resizing the mask",
        f"mask '{tmp_path / 'wide.png'}' is {width * 2}x{height}, its image {width}x{height}: "
        "resizing the mask, stretching it (check that they belong together)",
    ]


def test_a_stem_listed_twice_is_scored_once(data, brightness_model, tmp_path, caplog):
    """A mean over the list's lines would count a repeated portrait twice; it is over images."""
    twice = tmp_path / "twice.txt"
    twice.write_text("a3\na1\na3\na4\na1\n")
    options = EvalOptions(data=str(data), list_file=str(twice), progress=False)
    with caplog.at_level(logging.WARNING, logger="portrait.training.evaluate"):
        assert [Path(p[0]).name for p in evaluate.list_pairs(options)] == ["a3.png", "a1.png",
                                                                           "a4.png"]
    assert f"list file '{twice}' names 2 stems more than once (a1, a3); each is scored once" in \
        caplog.text
    (summary,) = evaluate.evaluate(options, [SegmentOptions(model=str(brightness_model))])
    once = EvalOptions(data=str(data), list_file=str(data / "some.txt"), progress=False)
    assert summary["n"] == 3
    assert summary["miou"] == evaluate.evaluate(once, [SegmentOptions(model=str(brightness_model))])[0]["miou"]


@pytest.mark.parametrize("argv, expected", [
    (["--worst", "3"], ["--worst is ignored without --sheet (it sets the sheet's rows)"]),
    (["--worst", "3", "--sheet", "w.png"], []),
    (["--compare-tta", "mirror", "--compare-input-size", "64x64"],
     ["--compare-input-size is ignored without --compare", "--compare-tta is ignored without --compare"]),
    (["--compare", "m.tflite", "--compare-tta", "mirror"], []),
    (["--suite", "--compare", "m.tflite", "--list", "l.txt", "--sheet", "w.png", "--worst", "3",
      "--no-refine", "--max-items", "4"],
     ["--list is ignored with --suite", "--sheet is ignored with --suite",
      "--worst is ignored with --suite", "--no-refine is ignored with --suite"]),
    (["--data", "d", "--list", "l.txt", "--no-refine"], []),
])
def test_options_that_do_nothing_are_named(argv, expected):
    """Only what was typed, and only where another option makes it do nothing."""
    from portrait.cli import typed_options

    argv = ["--model", "m.hdf5", *argv]
    args = evaluate.build_parser().parse_args(argv)
    assert evaluate.ignored_options(args, typed_options(evaluate.build_parser(), argv)) == expected


def test_score_alpha_against_a_matte_drawn_3_px_off_with_a_far_lamp_worked_by_hand():
    """A 10x10 person; the matte draws it 3 px to the right and adds a 5x5 lamp far away, in a
    20x60 image (the far margin: 5 % of the long side, 3 px)."""
    truth = np.zeros((20, 60), bool)
    truth[5:15, 5:15] = True
    alpha = np.zeros((20, 60), np.uint8)
    alpha[5:15, 8:18] = 255
    alpha[5:10, 40:45] = 255  # the lamp
    scores = evaluate.score_alpha(truth, alpha)
    # Person and matte overlap on 10x7 = 70 px; 100 + 100 + 25 - 70 = 155 in all.
    assert scores["iou"] == pytest.approx(70 / 155)
    assert scores["dice"] == pytest.approx(2 * 70 / (100 + 125))
    assert scores["pixel_accuracy"] == pytest.approx(1 - (30 + 30 + 25) / 1200)
    # Outlines: 36 px each, the lamp's 16. Within 2 px of the other outline: 22 of each square's
    # (3 px off: the far column, 10 px, and the 4 middle pixels of the near column miss), none of
    # the lamp's. Precision 22/52, recall 22/36: F = 2 * 22 / (52 + 36) = 0.5.
    assert scores["boundary_f"] == pytest.approx(0.5)
    # Only the lamp lies beyond 3 px of the person (the matte's extra columns are 1 to 3 px off).
    assert scores["far"] == pytest.approx(25 / 1200)
    # Within 2 px of the outline every error is forgiven but the far extra column (10 px) and 6
    # missed pixels 3 px inside (rows 7..12 of column 7): 94 / (100 + 10 + 25); within 5 px all
    # but the lamp: 100 / 125.
    assert scores["iou_edge_2px"] == pytest.approx(94 / 135)
    assert scores["iou_edge_5px"] == pytest.approx(100 / 125)


def test_summary_means_scores_and_takes_median_times_worked_by_hand():
    """Every field from its own column, scores as means (which differ from the medians here),
    times as medians (which differ from the means), and a photo exactly at the bar (0.2 %) is
    not above it."""
    columns = dict(iou=[1.0, 0.7, 0.1], dice=[0.9, 0.5, 0.4], pixel_accuracy=[0.99, 0.9, 0.6],
                   boundary_f=[0.8, 0.2, 0.5], far=[0.002, 0.0021, 0.0],
                   iou_edge_2px=[1.0, 0.8, 0.3], iou_edge_5px=[1.0, 0.9, 0.5],
                   segment_ms=[1.0, 2.0, 9.0], refine_ms=[5.0, 6.0, 40.0])
    scores = [evaluate.ImageScore(stem=stem, **{key: values[i] for key, values in columns.items()})
              for i, stem in enumerate("abc")]
    summary = evaluate.summarize(scores, model="m.hdf5")
    assert summary.pop("model") == "m.hdf5"
    assert summary == pytest.approx(dict(
        n=3, miou=0.6, dice=0.6, pixel_accuracy=0.83, boundary_f=0.5, far_mean=0.00137,
        far_share=0.33333, miou_edge_2px=0.7, miou_edge_5px=0.8, ms_per_image=2.0, ms_refine=6.0))


def test_worst_images_are_ranked_by_the_first_models_iou_alone():
    """With --compare the sheet shows the images the first model (--model) does worst on, not
    those the compared one does."""
    worst = WorstImages(1)
    blank = np.zeros((2, 2, 3), np.uint8)
    for stem, ious in [("a", [0.9, 0.1]), ("b", [0.5, 0.95]), ("c", [0.8, 0.2])]:
        worst.offer(stem, blank, np.zeros((2, 2), bool), [blank[..., 0]] * 2, ious)
    assert [(w.stem, w.ious) for w in worst.rows()] == [("b", [0.5, 0.95])]


def test_paired_difference_of_no_images_is_refused():
    with pytest.raises(ValueError, match="at least one: 0 images from \\[\\] != 0 images"):
        evaluate.paired_difference([], [])


def test_format_table_gives_the_best_models_lead_over_the_runner_up():
    """Of three models, the best one's lead is over the second best (0.95 - 0.9), not the last."""
    base = dict(n=3, dice=0.9, pixel_accuracy=0.95, boundary_f=0.7, far_mean=0.001, ms_per_image=2.0,
                ms_refine=1.0)
    table = evaluate.format_table([dict(base, model="a.hdf5", miou=0.9),
                                   dict(base, model="b.hdf5", miou=0.95),
                                   dict(base, model="c.tflite", miou=0.8)])
    assert table.splitlines()[-1] == "higher mIoU: b.hdf5 (+0.0500)"


def test_format_table_of_one_image_gives_no_standard_error_line():
    """Compared on a single image the difference has no standard error (None): the table says
    which is higher and stops there, rather than failing to format None."""
    base = dict(n=1, dice=0.9, pixel_accuracy=0.95, boundary_f=0.7, far_mean=0.0, ms_per_image=2.0,
                ms_refine=1.0)
    paired = evaluate.paired_difference(_scores([0.9], "a"), _scores([0.7], "a"))
    assert paired == {"miou_diff": -0.2, "miou_diff_se": None, "images_higher": 0, "images_lower": 1}
    table = evaluate.format_table([dict(base, model="w/ours.hdf5", miou=0.9),
                                   dict(base, model="m/selfie.tflite", miou=0.7, paired=paired)])
    assert table.splitlines()[-1] == "higher mIoU: ours.hdf5 (+0.2000)"


def test_score_pairs_scores_the_one_readable_pair_and_refuses_when_none_is(data, brightness_model,
                                                                          tmp_path):
    """Of two pairs, one cut short: the other is scored alone (n = 1) and the cut one named;
    when no pair can be read the first one's error ends the run, not an empty summary."""
    cut = tmp_path / "cut.png"
    cut.write_bytes((data / "images" / "a0.png").read_bytes()[:200])
    good = (str(data / "images" / "a1.png"), str(data / "masks" / "a1.png"))
    models = [SegmentOptions(model=str(brightness_model))]
    skipped = []
    (summary,) = evaluate.score_pairs([(str(cut), str(data / "masks" / "a0.png")), good], models,
                                      progress=False, skipped=skipped)
    assert summary["n"] == 1 and [path for path, _ in skipped] == [str(cut)]
    with pytest.raises(InputError, match="cut.png"):
        evaluate.score_pairs([(str(cut), str(data / "masks" / "a0.png"))], models, progress=False,
                             skipped=[])


def test_a_stop_while_scoring_carries_the_scores_of_the_images_before_it(data, brightness_model,
                                                                      bad_model):
    """Ctrl-C after three of five images: the stop goes on up (the command exits 130) with
    the summaries of those three, compared as a whole run's are, for the command to print
    rather than lose."""

    class StopAt(evaluate.WorstImages):  # the stop lands where the loop hands on each image
        def __init__(self, at: int):
            super().__init__(0)
            self.at, self.offered = at, 0

        def offer(self, *args) -> None:
            self.offered += 1
            if self.offered == self.at:
                raise KeyboardInterrupt

    pairs = [(str(data / "images" / f"{stem}.png"), str(data / "masks" / f"{stem}.png"))
             for stem in STEMS]
    models = [SegmentOptions(model=str(brightness_model)), SegmentOptions(model=str(bad_model))]
    whole = evaluate.score_pairs(pairs[:3], models, progress=False)
    with pytest.raises(KeyboardInterrupt) as stopped:
        evaluate.score_pairs(pairs, models, progress=False, worst=StopAt(3))
    partial = stopped.value.partial_scores
    assert [s["n"] for s in partial] == [3, 3]
    for key in ("miou", "dice", "boundary_f"):
        assert [s[key] for s in partial] == [s[key] for s in whole]
    assert partial[1]["paired"] == whole[1]["paired"]
    with pytest.raises(KeyboardInterrupt) as stopped:
        evaluate.score_pairs(pairs, models, progress=False, worst=StopAt(1))
    assert [s["n"] for s in stopped.value.partial_scores] == [1, 1]


def test_a_stop_between_two_models_keeps_the_images_both_scored(data, brightness_model,
                                                                bad_model, monkeypatch):
    """Ctrl-C after the first model scored the third image and before the second did: the
    partial scores are the two images both models scored; a stop before any image scored by
    both carries none."""
    pairs = [(str(data / "images" / f"{stem}.png"), str(data / "masks" / f"{stem}.png"))
             for stem in STEMS]
    models = [SegmentOptions(model=str(brightness_model)), SegmentOptions(model=str(bad_model))]
    whole = evaluate.score_pairs(pairs[:2], models, progress=False)
    real_score = evaluate.ModelScorer.score
    for stop_at, expected in ((6, [2, 2]), (2, None)):  # calls: image 1 model 1, model 2, ...
        calls = []

        def score(self, *args):
            calls.append(self)
            if len(calls) == stop_at:
                raise KeyboardInterrupt
            return real_score(self, *args)

        monkeypatch.setattr(evaluate.ModelScorer, "score", score)
        with pytest.raises(KeyboardInterrupt) as stopped:
            evaluate.score_pairs(pairs, models, progress=False)
        partial = getattr(stopped.value, "partial_scores", None)
        if expected is None:
            assert partial is None
            continue
        assert [s["n"] for s in partial] == expected
        assert [s["miou"] for s in partial] == [s["miou"] for s in whole]


def test_the_command_stopped_after_an_image_prints_its_scores_marked_stopped(
        data, brightness_model, monkeypatch, capfd, caplog):
    """Ctrl-C while the second image is scored: the command still writes the JSON line, of
    the one image scored, marked "stopped", says so in a warning and exits 130."""
    real_score = evaluate.ModelScorer.score
    calls = []

    def score(self, *args):
        calls.append(self)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_score(self, *args)

    monkeypatch.setattr(evaluate.ModelScorer, "score", score)
    assert evaluate.main(["--model", str(brightness_model), "--data", str(data),
                          "--no-progress"]) == 130
    captured = capfd.readouterr()
    result = json.loads(captured.out)
    assert result["n"] == 1 and result["stopped"] is True
    assert any(m.startswith("Ctrl-C: stopped after 1 image; the scores of those follow")
               for m in caplog.messages), caplog.messages


def test_sigterm_while_scoring_prints_the_scores_so_far_and_exits_143(data, brightness_model,
                                                                      tmp_path):
    """A real SIGTERM (a kill, a job scheduler's stop) once the progress bar counts a scored
    image: the command writes the JSON line of the images scored whole, marked "stopped", says
    so, and exits 143 (128 + SIGTERM), as Ctrl-C does with 130; it was killed with no line.
    Many images (links to five), so that the run is far from done when the signal lands."""
    import re
    import signal

    many = tmp_path / "many"
    for folder in ("images", "masks"):
        (many / folder).mkdir(parents=True)
        for i in range(600):
            os.link(data / folder / f"{STEMS[i % len(STEMS)]}.png", many / folder / f"p{i:03d}.png")
    process = subprocess.Popen(
        [sys.executable, "-m", "portrait.evaluate", "--model", str(brightness_model),
         "--data", str(many)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=dict(os.environ, PYTHONUNBUFFERED="1", TF_CPP_MIN_LOG_LEVEL="3"))
    try:
        err = b""
        while not re.search(rb" [1-9][0-9]*/600 ", err):  # the bar counts an image scored
            chunk = process.stderr.read1(4096)
            assert chunk, err.decode(errors="replace")[-3000:]  # it ended before scoring one
            err += chunk
        process.send_signal(signal.SIGTERM)
        out, rest = process.communicate(timeout=240)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    err = (err + rest).decode(errors="replace")
    assert process.returncode == 128 + signal.SIGTERM, err[-3000:]
    assert "Traceback" not in err
    result = json.loads(out)  # one line
    assert result["stopped"] is True and 1 <= result["n"] < 600
    assert result["miou"] > 0.9  # the images scored, scored as a whole run scores them
    assert f"SIGTERM: stopped after {result['n']} images; the scores of those follow" in err


def test_score_pairs_keeps_each_models_iou_in_model_order_for_the_sheet(data, brightness_model,
                                                                       bad_model):
    """The sheet's rows carry the IoU of --model first and of --compare second: the good model
    scores higher on every image than the biased one."""
    pairs = [(str(data / "images" / f"{stem}.png"), str(data / "masks" / f"{stem}.png"))
             for stem in STEMS]
    worst = WorstImages(len(STEMS))
    good, biased = evaluate.score_pairs(pairs, [SegmentOptions(model=str(brightness_model)),
                                                SegmentOptions(model=str(bad_model))],
                                        progress=False, worst=worst)
    rows = worst.rows()
    assert sorted(w.stem for w in rows) == STEMS
    assert all(w.ious[0] > w.ious[1] for w in rows), [w.ious for w in rows]
    assert [w.ious[0] for w in rows] == sorted(w.ious[0] for w in rows)  # worst first
    assert np.mean([w.ious[0] for w in rows]) == pytest.approx(good["miou"], abs=1e-5)
    assert np.mean([w.ious[1] for w in rows]) == pytest.approx(biased["miou"], abs=1e-5)


def test_stretch_note_at_one_percent_of_aspect_ratio():
    """A mask 5 % narrower for its height than its photo is stretched; one a pixel off in 200
    (0.5 %), or half the size, is only scaled."""
    assert evaluate.stretch_note((100, 200, 3), (100, 190)) == (
        ", stretching it (check that they belong together)")
    assert evaluate.stretch_note((100, 200, 3), (100, 199)) == ""
    assert evaluate.stretch_note((100, 200, 3), (50, 100)) == ""
    assert evaluate.stretch_note((100, 200), (98, 200)) != ""  # 2 % shorter: stretched


@pytest.mark.parametrize("argv, expected", [
    ([], [("off", None), ("off", None)]),
    (["--tta"], [("scales", None), ("scales", None)]),  # bare --tta: scales, for both alike
    (["--tta", "mirror", "--compare-tta", "off"], [("mirror", None), ("off", None)]),
    (["--input-size", "64x64", "--compare-input-size", "96x32"], [("off", (64, 64)), ("off", (96, 32))]),
    (["--input-size", "64x64"], [("off", (64, 64)), ("off", None)]),  # the compared one detects its own
])
def test_each_model_gets_its_own_test_time_augmentation_and_input_size(argv, expected):
    args = evaluate.build_parser().parse_args(["--model", "a.hdf5", "--data", "d",
                                               "--compare", "b.tflite", *argv])
    _, models, _ = evaluate.options_from_args(args)
    assert [(model.tta, model.input_size) for model in models] == expected


def test_photos_are_scored_as_the_app_refines_them():
    """evaluate and the suite's photos are refined as --image refines them, with and without
    --no-refine: small islands of matte cleared, and the filter's cap off (photos' default)."""
    from portrait.cli import build_parser as app_parser, options_from_args as app_options
    from portrait.options import PHOTO_MIN_ISLAND

    def app_refine(*argv):
        return app_options(app_parser().parse_args(["--image", "a.jpg", *argv]))[3]

    args = evaluate.build_parser().parse_args(["--model", "a.hdf5", "--data", "d"])
    assert evaluate.options_from_args(args)[2].min_island == PHOTO_MIN_ISLAND > 0
    assert evaluate.options_from_args(args)[2] == evaluate.PHOTO_REFINE == app_refine()
    args = evaluate.build_parser().parse_args(["--model", "a.hdf5", "--data", "d", "--no-refine"])
    refine = evaluate.options_from_args(args)[2]
    assert (refine.enabled, refine.min_island) == (False, PHOTO_MIN_ISLAND)
    assert refine == app_refine("--no-refine")


def test_the_model_options_help_names_those_the_compared_model_shares(capsys):
    """--device, --threads and --trust-model set the --compare model too, the other model
    options --model's alone (the compared one has its own --compare-...): --help said they all
    applied to --model."""
    args = evaluate.build_parser().parse_args([
        "--model", "a.hdf5", "--data", "d", "--compare", "b.tflite", "--device", "cpu",
        "--threads", "3", "--trust-model", "--backend", "tflite", "--input-norm", "unit",
        "--letterbox", "--input-size", "64x64"])
    first, compared = evaluate.model_options_from_args(args)
    shared = ("device", "threads", "trust_model")
    assert [getattr(compared, name) for name in shared] == ["cpu", 3, True]
    assert [getattr(first, name) for name in shared] == ["cpu", 3, True]
    default = SegmentOptions()
    for own in ("backend", "input_norm", "letterbox", "input_size"):
        assert getattr(compared, own) == getattr(default, own) != getattr(first, own), own
    with pytest.raises(SystemExit):
        evaluate.main(["--help"])
    said = " ".join(capsys.readouterr().out.split())
    assert ("model options (as in the app; they apply to --model, and --device, --threads and "
            "--trust-model to --compare too):") in said, said


def test_a_scorers_summary_names_its_test_time_augmentation(data, brightness_model):
    image, truth = evaluate.read_pair(data / "images" / "a0.png", data / "masks" / "a0.png")
    with ModelScorer(SegmentOptions(model=str(brightness_model), tta="mirror")) as scorer:
        scorer.score("a0", image, truth)
        summary = scorer.summary()
    assert summary["tta"] == "mirror" and summary["n"] == 1
    assert evaluate.format_table([summary, dict(summary, tta="off")]).splitlines()[2].startswith(
        "bright.hdf5 (--tta mirror)")
