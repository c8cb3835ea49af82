"""Knowledge distillation: teachers' predictions mixed into the training targets."""

import logging
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from conftest import brightness_model_file, constant_model, write_video
from portrait.training.distill import load_teachers, mix_targets, with_teachers
from portrait.errors import ModelError


def test_targets_mix_the_mask_with_the_teachers_mean(tmp_path):
    teachers = load_teachers([constant_model(tmp_path / "a.h5", 0.8),
                              constant_model(tmp_path / "b.h5", 0.2)])
    images = tf.zeros((2, 8, 8, 3))
    masks = tf.concat([tf.ones((1, 8, 8, 1)), tf.zeros((1, 8, 8, 1))], axis=0)
    # teachers' mean 0.5; mask 1 -> 0.75 and mask 0 -> 0.25 at weight 0.5
    mixed = mix_targets(images, masks, teachers, 0.5).numpy()
    np.testing.assert_allclose(mixed[0], 0.75, atol=1e-6)
    np.testing.assert_allclose(mixed[1], 0.25, atol=1e-6)
    np.testing.assert_allclose(mix_targets(images, masks, teachers[:1], 1.0).numpy(), 0.8, atol=1e-6)
    np.testing.assert_allclose(mix_targets(images, masks, teachers, 0.0).numpy(), masks.numpy())


def test_dataset_with_teachers_keeps_images_and_mixes_masks(tmp_path):
    teachers = load_teachers([constant_model(tmp_path / "a.h5", 0.9)])
    images = np.random.default_rng(0).uniform(0, 255, (4, 16, 16, 3)).astype(np.float32)
    ds = tf.data.Dataset.from_tensor_slices((images, np.zeros((4, 16, 16, 1), np.float32))).batch(2)
    batches = list(with_teachers(ds, teachers, 0.25))
    assert len(batches) == 2
    np.testing.assert_array_equal(batches[0][0].numpy(), images[:2])
    np.testing.assert_allclose(batches[1][1].numpy(), 0.225, atol=1e-6)


def test_bad_teachers_are_clear_errors(tmp_path):
    with pytest.raises(ModelError, match="nope.hdf5"):
        load_teachers([str(tmp_path / "nope.hdf5")])
    with pytest.raises(ModelError, match="2 output channels; a person probability \\(1\\) is needed"):
        load_teachers([constant_model(tmp_path / "two.h5", 0.5, channels=2)])
    with pytest.raises(ValueError, match="between 0 and 1, got 1.5"):
        mix_targets(tf.zeros((1, 4, 4, 3)), tf.zeros((1, 4, 4, 1)),
                    load_teachers([constant_model(tmp_path / "a.h5", 0.5)]), 1.5)


def test_soft_mask_mixes_hand_computed_values():
    from portrait.training.distill import soft_mask

    truth = np.array([[0, 255, 0], [255, 255, 0]], np.uint8)
    mixed = soft_mask(truth, np.ones((1, 1), np.float32), 0.2)  # a 1x1 prediction covers it all
    np.testing.assert_array_equal(mixed, [[51, 255, 51], [255, 255, 51]])
    np.testing.assert_array_equal(soft_mask(truth, np.zeros((4, 6)), 0.2), [[0, 204, 0], [204, 204, 0]])
    np.testing.assert_array_equal(soft_mask(truth, np.ones((2, 3)), 0.0), truth)
    with pytest.raises(ValueError, match="between 0 and 1, got -0.1"):
        soft_mask(truth, np.ones((2, 3)), -0.1)
    with pytest.raises(ValueError, match="!= uint8 \\(H, W\\)"):
        soft_mask(truth.astype(np.float32), np.ones((2, 3)), 0.5)


def _data_folder(root, stems):
    import cv2

    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    image = np.zeros((64, 64, 3), np.uint8)
    image[:, :32] = 255  # the brightness teacher calls the left half a person
    truth = np.zeros((64, 64), np.uint8)
    truth[:, 32:] = 255  # the labels call the right half a person
    for stem in stems:
        cv2.imwrite(str(root / "images" / f"{stem}.png"), image)
        cv2.imwrite(str(root / "masks" / f"{stem}.png"), truth)
    return root


def test_distill_command_writes_a_trainable_soft_label_folder(tmp_path, brightness_model):
    import cv2

    from portrait.training.data import resolve_split
    from portrait.training.distill import main

    data = _data_folder(tmp_path / "data", ["a", "b", "t"])
    (data / "train.txt").write_text("a\nb\n")
    (data / "test.txt").write_text("t\n")
    before = cv2.imread(str(data / "masks" / "a.png"), cv2.IMREAD_GRAYSCALE).copy()
    out = tmp_path / "soft"
    assert main(["--teacher", str(brightness_model), "--data", str(data), "--out", str(out),
                 "--weight", "0.2"]) == 0
    assert (out / "train.txt").read_text().split() == ["a", "b"]  # test.txt stems are never used
    assert not (out / "masks" / "t.png").exists()
    mask = cv2.imread(str(out / "masks" / "a.png"), cv2.IMREAD_GRAYSCALE)
    np.testing.assert_array_equal(mask[:, :28], 51)  # 0.8 * 0 + 0.2 * 255 * p(person) = 1
    np.testing.assert_array_equal(mask[:, 36:], 204)  # 0.8 * 255 + 0.2 * 255 * p(person) = 0
    np.testing.assert_array_equal(cv2.imread(str(data / "masks" / "a.png"), cv2.IMREAD_GRAYSCALE), before)
    pairs = resolve_split(str(out), "train")
    assert [Path(p[0]).name for p in pairs] == ["a.png", "b.png"]
    assert Path(pairs[0][0]).resolve() == (data / "images" / "a.png").resolve()


def test_distill_weighs_the_teacher_0_3_by_default_and_labels_a_folder_given_twice_once(
        tmp_path, brightness_model):
    import cv2

    from portrait.training.distill import main, soft_mask

    data = _data_folder(tmp_path / "data", ["a", "b"])
    out = tmp_path / "soft"
    assert main(["--teacher", str(brightness_model), "--data", str(data), str(data),
                 "--out", str(out)]) == 0
    assert (out / "train.txt").read_text().split() == ["a", "b"]
    mask = cv2.imread(str(out / "masks" / "a.png"), cv2.IMREAD_GRAYSCALE)
    # The left half: labelled background, the teacher's person (p = 1), at the default 0.3.
    expected = soft_mask(np.zeros((1, 1), np.uint8), np.ones((1, 1), np.float32), 0.3)[0, 0]
    assert expected in (76, 77)
    np.testing.assert_array_equal(mask[:, :28], expected)


def test_distill_teacher_tta_labels_with_the_teacher_as_image_runs_it(tmp_path):
    """--teacher-tta mirror: the teacher's output is averaged with its mirror image's, so a photo
    and its mirror image get mirrored soft masks; one pass of a lopsided teacher does not."""
    import cv2
    import keras

    from portrait.training.distill import main

    inputs = keras.Input((64, 64, 3))
    conv = keras.layers.Conv2D(1, 5, padding="same", activation="sigmoid")
    teacher = keras.Model(inputs, conv(keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)))
    kernel = np.zeros((5, 5, 3, 1), np.float32)
    kernel[:, 0] = 1.0  # looks only to its left
    conv.set_weights([kernel, np.zeros(1, np.float32)])
    teacher.save(tmp_path / "lopsided.hdf5")
    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    (data / "masks").mkdir()
    image = np.random.default_rng(0).integers(0, 256, (64, 64, 3), np.uint8)
    truth = np.zeros((64, 64), np.uint8)
    truth[16:, 20:40] = 255
    for stem, flip in (("a", False), ("b", True)):
        cv2.imwrite(str(data / "images" / f"{stem}.png"), image[:, ::-1] if flip else image)
        cv2.imwrite(str(data / "masks" / f"{stem}.png"), truth[:, ::-1] if flip else truth)
    (data / "train.txt").write_text("a\nb\n")
    gaps = {}
    for mode in ("off", "mirror"):
        out = tmp_path / mode
        assert main(["--teacher", str(tmp_path / "lopsided.hdf5"), "--teacher-tta", mode,
                     "--data", str(data), "--out", str(out), "--weight", "0.5"]) == 0
        a, b = (cv2.imread(str(out / "masks" / f"{stem}.png"), cv2.IMREAD_GRAYSCALE).astype(int)
                for stem in "ab")
        gaps[mode] = np.abs(a - b[:, ::-1]).max()
    assert gaps["mirror"] <= 1 < 20 < gaps["off"], gaps


def test_distill_command_refuses_to_write_over_its_source(tmp_path, brightness_model, capsys):
    import cv2

    from portrait.training.distill import main

    data = _data_folder(tmp_path / "data", ["a"])
    before = cv2.imread(str(data / "masks" / "a.png"), cv2.IMREAD_GRAYSCALE).copy()
    assert main(["--teacher", str(brightness_model), "--data", str(data), "--out", str(data)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == f"error: --out '{data}' is a source data folder; choose a new folder"
    np.testing.assert_array_equal(cv2.imread(str(data / "masks" / "a.png"), cv2.IMREAD_GRAYSCALE), before)
    # A folder whose images/ and masks/ are links to the source's (a split beside ../shared).
    linked = tmp_path / "split"
    linked.mkdir()
    (linked / "images").symlink_to(data / "images")
    (linked / "masks").symlink_to(data / "masks")
    (linked / "train.txt").write_text("a\n")
    assert main(["--teacher", str(brightness_model), "--data", str(linked), "--out", str(linked)]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"error: --out '{linked}' is a source data folder; choose a new folder")
    np.testing.assert_array_equal(cv2.imread(str(data / "masks" / "a.png"), cv2.IMREAD_GRAYSCALE), before)
    assert (data / "images" / "a.png").is_file() and not (data / "images" / "a.png").is_symlink()


def test_distill_negatives_never_go_into_a_source_or_the_out_folder(tmp_path, brightness_model, capsys):
    from portrait.training.distill import main

    data = _data_folder(tmp_path / "data", ["a"])
    listed = (data / "images").iterdir()
    before = sorted(p.name for p in listed)
    assert main(["--teacher", str(brightness_model), "--data", str(data), "--out",
                 str(tmp_path / "soft"), "--negatives", str(data)]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"error: --negatives '{data}' is a source data folder; choose a new folder")
    assert sorted(p.name for p in (data / "images").iterdir()) == before
    with pytest.raises(SystemExit) as stop:
        main(["--teacher", str(brightness_model), "--data", str(data), "--out",
              str(tmp_path / "soft"), "--negatives", str(tmp_path / "soft")])
    assert stop.value.code == 2 and "--negatives names the --out folder" in capsys.readouterr().err
    assert not (tmp_path / "soft").exists()


def test_distill_never_writes_into_a_folder_another_tool_or_person_made(tmp_path, brightness_model,
                                                                         capsys):
    from portrait.sink.paths import OUTPUT_MARKER
    from portrait.training.distill import main

    data = _data_folder(tmp_path / "data", ["a"])
    # Another data set, not among the sources: its list and masks would be replaced.
    other = _data_folder(tmp_path / "other", ["a", "z"])
    (other / "train.txt").write_text("a\nz\n")
    owned = sorted(str(p.relative_to(other)) for p in other.rglob("*"))
    mask_before = (other / "masks" / "a.png").read_bytes()
    clip = str(write_video(tmp_path / "walk.avi", 2))
    for args in (["--data", str(data), "--out", str(other)],
                 ["--video", clip, "--out", str(other)],
                 ["--data", str(data), "--out", str(tmp_path / "soft"), "--negatives", str(other)],
                 ["--video", clip, "--out", str(tmp_path / "frames"), "--negatives", str(other)]):
        option = "--negatives" if "--negatives" in args else "--out"
        assert main(["--teacher", str(brightness_model), *args]) == 2, args
        assert capsys.readouterr().err.strip().splitlines()[-1] == (
            f"error: {option} '{other}' already holds files that no portrait data tool wrote, "
            "whose train.txt, images or masks this run would replace; choose a new or empty folder")
        assert sorted(str(p.relative_to(other)) for p in other.rglob("*")) == owned
        assert (other / "train.txt").read_text() == "a\nz\n"
        assert (other / "masks" / "a.png").read_bytes() == mask_before
    assert not (tmp_path / "soft").exists() and not (tmp_path / "frames").exists()
    # A file where the folder belongs.
    assert main(["--teacher", str(brightness_model), "--video", clip, "--out", clip]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"error: --out '{clip}' is a file; a data folder is needed, so choose a new folder")
    # An empty folder, and then the tool's own earlier output, are written into.
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["--teacher", str(brightness_model), "--data", str(data), "--out", str(empty)]) == 0
    assert (empty / OUTPUT_MARKER).is_file() and (empty / "train.txt").read_text() == "a\n"
    assert main(["--teacher", str(brightness_model), "--video", clip, "--out", str(empty)]) == 0
    assert (empty / "train.txt").read_text().split() == ["walk_00000", "walk_00001"]


def test_distill_never_writes_through_a_training_splits_links(tmp_path, brightness_model, capsys):
    """suite --training-split makes OUT/<set>/images and masks links into the data root (and
    marks the folder); writing a new data folder there would write into the data root."""
    from portrait.sink.paths import mark_ours
    from portrait.training.distill import main

    root = _data_folder(tmp_path / "root" / "eg1800", ["a"])
    split = tmp_path / "splits" / "eg1800"
    split.mkdir(parents=True)
    for name in ("images", "masks"):
        (split / name).symlink_to(root / name, target_is_directory=True)
    (split / "train.txt").write_text("a\n")
    mark_ours(split, "A training split")
    other = _data_folder(tmp_path / "other", ["a"])
    before = {p.name: p.read_bytes() for folder in ("images", "masks")
              for p in (root / folder).iterdir()}
    clip = str(write_video(tmp_path / "walk.avi", 2))
    for args in (["--video", clip], ["--data", str(other)]):
        assert main(["--teacher", str(brightness_model), *args, "--out", str(split)]) == 2
        assert capsys.readouterr().err.strip().splitlines()[-1] == (
            f"error: --out '{split}': its images/ is a link to '{root / 'images'}', which this "
            "run would write into; choose a new folder")
        assert {p.name: p.read_bytes() for folder in ("images", "masks")
                for p in (root / folder).iterdir()} == before


def test_distill_command_pseudo_labels_video_frames(tmp_path, brightness_model):
    import cv2

    from portrait.training.data import resolve_split
    from portrait.training.distill import main

    clips = [write_video(tmp_path / "walk.avi", 5), write_video(tmp_path / "wave.avi", 3)]
    out = tmp_path / "frames"
    assert main(["--teacher", str(brightness_model), "--video", *map(str, clips), "--every", "2",
                 "--out", str(out)]) == 0
    stems = ["walk_00000", "walk_00002", "walk_00004", "wave_00000", "wave_00002"]
    assert (out / "train.txt").read_text().split() == stems
    frame = cv2.imread(str(out / "images" / "walk_00004.jpg"))
    assert frame.shape == (64, 96, 3)
    assert frame[32, 22:42].min() > 200 and frame[32, 2:16].max() < 60  # the square at x 20..44
    mask = cv2.imread(str(out / "masks" / "walk_00004.png"), cv2.IMREAD_GRAYSCALE)
    # The brightness teacher alone decides: 255 on the bright square, 0 on the background.
    assert mask[32, 24:40].min() == 255 and mask[32, 2:14].max() == 0
    pairs = resolve_split(str(out), "train")
    assert [Path(p[1]).name for p in pairs] == [f"{s}.png" for s in stems]


def test_distill_reports_each_video_once_and_a_photo_as_distill_takes_it(tmp_path, brightness_model,
                                                                        caplog):
    """A photo given as --video was labelled (one frame), with the app's advice, '--image cuts
    out photos', an option distill has not, given at each of the two readings, as was each
    video's line (three readings once the videos were checked before the teacher loads). Each
    is said once, the photo as distill takes it."""
    import logging

    import cv2

    from portrait.training.distill import main

    clip = write_video(tmp_path / "walk.avi", 3)
    photo = tmp_path / "me.jpg"
    cv2.imwrite(str(photo), np.full((64, 96, 3), 200, np.uint8))
    with caplog.at_level(logging.INFO, logger="portrait.capture"):
        assert main(["--teacher", str(brightness_model), "--video", str(clip), str(photo),
                     "--out", str(tmp_path / "o")]) == 0
    said = [r.getMessage() for r in caplog.records if r.name.startswith("portrait.capture")]
    assert said[:2] == [f"video '{clip}': 96x64 at 30 fps, 3 frames",
                        f"'{photo}' is a photo: as --video it gives one frame, labelled by the "
                        "teacher alone; --data labels photos with their masks"], said
    assert len(said) == 3 and said[2].startswith(f"video '{photo}': 96x64 at "), said
    assert (tmp_path / "o" / "train.txt").read_text().split() == [
        "walk_00000", "walk_00001", "walk_00002", "me_00000"]


def test_distill_video_errors_are_one_line(tmp_path, brightness_model, capsys):
    from portrait.training.distill import main

    clip = str(write_video(tmp_path / "a.avi", 3))
    twin = tmp_path / "other"
    twin.mkdir()
    cases = [
        (["--video", clip, "--weight", "0.5"], "video frames have no labels"),
        (["--data", str(tmp_path), "--every", "2"], "--every picks frames of a video; it needs --video"),
        (["--video", clip, str(write_video(twin / "a.avi", 3))], "two videos are named 'a'"),
        (["--video", str(tmp_path / "missing.mkv")], f"video '{tmp_path / 'missing.mkv'}' not found"),
    ]
    for args, message in cases:
        try:  # usage errors leave through argparse, the rest through main's return
            code = main(["--teacher", str(brightness_model), "--out", str(tmp_path / "o"), *args])
        except SystemExit as stop:
            code = stop.code
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2, args
        assert message in err[-1] and "Traceback" not in "\n".join(err), err
    assert not (tmp_path / "o").exists()  # refused before anything was written


def test_distill_refuses_a_stem_train_txt_cannot_hold_before_the_teacher_runs(
        tmp_path, brightness_model, capsys, caplog):
    """A photo or video whose stem starts with '#' (a comment in a list file) was refused only
    as train.txt was written, after the teacher had labelled every photo or frame; it is
    refused in one line before the teacher loads, and nothing is written."""
    import logging

    from portrait.training.distill import main

    data = _data_folder(tmp_path / "data", ["a", "#1"])
    clip = write_video(tmp_path / "#take.avi", 3)
    photo = ("the stem starts with '#', which a list file reads as a comment; rename the photo "
             "and its mask, or give --data a list file that leaves it out")
    cases = [
        (["--data", str(data)], f"cannot list the photo '{data / 'images' / '#1.png'}' in "
                                f"train.txt as '#1': {photo}"),
        (["--data", str(data), "--negatives", str(tmp_path / "negatives")],
         f"cannot list the photo '{data / 'images' / '#1.png'}' in train.txt as '#1': {photo}"),
        (["--video", str(clip)], f"cannot list the frames of the video '{clip}' in train.txt as "
                                 "'#take_00000': the stem starts with '#', which a list file "
                                 "reads as a comment; rename the video"),
    ]
    for args, message in cases:
        caplog.clear()
        with caplog.at_level(logging.INFO):
            code = main(["--teacher", str(brightness_model), *args, "--out", str(tmp_path / "out")])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and err[-1] == f"error: {message}", err
        assert "Traceback" not in "\n".join(err)
        loaded = [r.getMessage() for r in caplog.records if r.name.startswith("portrait.segment")]
        assert not loaded, loaded  # refused before the teacher was loaded
    assert sorted(p.name for p in tmp_path.iterdir()) == ["#take.avi", "data"]  # nothing written


def test_distill_refuses_its_output_folders_before_the_teacher_loads(tmp_path, brightness_model,
                                                                     capsys, caplog):
    """A file given as --out or --negatives was refused only once the teacher had loaded (a
    Keras teacher converts first, minutes for a large one); it is refused before."""
    import logging

    from portrait.training.distill import main

    data = _data_folder(tmp_path / "data", ["a"])
    clip = str(write_video(tmp_path / "a.avi", 3))
    taken = tmp_path / "notes.txt"
    taken.write_text("mine\n")
    cases = [(["--data", str(data), "--out", str(taken)], "--out"),
             (["--video", clip, "--out", str(tmp_path / "o"), "--negatives", str(taken)],
              "--negatives")]
    for args, option in cases:
        caplog.clear()
        with caplog.at_level(logging.INFO):
            assert main(["--teacher", str(brightness_model), *args]) == 2, args
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1] == (f"error: {option} '{taken}' is a file; a data folder is needed, so "
                           "choose a new folder"), err
        loaded = [r.getMessage() for r in caplog.records if r.name.startswith("portrait.segment")]
        assert not loaded, loaded
    assert taken.read_text() == "mine\n" and not (tmp_path / "o").exists()


def test_distill_finds_its_teacher_as_mine_finds_its_model(tmp_path, capsys):
    """A folder given as --teacher was 'teacher model ... not found' (it is there), and a bare
    name of a shipped model, which mine's --model and the app find in weights/, was not found
    either. The folder is named for what it is; the bare name is found."""
    from portrait.training.distill import main

    data = _data_folder(tmp_path / "data", ["a"])
    folder = tmp_path / "models"
    folder.mkdir()
    assert main(["--teacher", str(folder), "--data", str(data), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (f"error: model '{folder}' is a folder, not a model file; pass --teacher "
                       "PATH to a .hdf5, .h5, .keras or .tflite model"), err
    assert not (tmp_path / "o").exists()
    assert main(["--teacher", "unet_live.hdf5", "--data", str(data), "--out", str(tmp_path / "o")]) == 0
    assert (tmp_path / "o" / "train.txt").read_text() == "a\n"


def test_background_strips_lie_beside_the_person():
    from portrait.training.distill import background_strips

    mask = np.zeros((50, 400), np.uint8)
    mask[10:40, 150:200] = 255
    mask[5, 300] = 20  # below the person level (about 10 %): not person
    assert background_strips(mask) == [("l", 0, 138), ("r", 212, 400)]
    mask[20, 320] = 200  # a hand out to the side: the right strip now starts past it
    assert background_strips(mask) == [("l", 0, 138)]  # 333..400 is narrower than 96 px
    assert background_strips(np.zeros((50, 400), np.uint8)) == []  # nobody: nothing is sure


def test_distill_video_writes_hard_negatives_beside_the_person(tmp_path, brightness_model):
    import cv2

    from portrait.training.distill import main

    clip = write_video(tmp_path / "walk.avi", 4, size=(320, 64))
    out, negatives = tmp_path / "frames", tmp_path / "negatives"
    assert main(["--teacher", str(brightness_model), "--video", str(clip), "--out", str(out),
                 "--negatives", str(negatives), "--negatives-every", "3"]) == 0
    assert (out / "train.txt").read_text().split() == [f"walk_{i:05d}" for i in range(4)]
    # Frames 0 and 3; the square (x 8..32 and 17..41) leaves only a right strip wide enough.
    assert (negatives / "train.txt").read_text().split() == ["walk_00000_r", "walk_00003_r"]
    strip = cv2.imread(str(negatives / "images" / "walk_00003_r.jpg"))
    mask = cv2.imread(str(negatives / "masks" / "walk_00003_r.png"), cv2.IMREAD_GRAYSCALE)
    # 12 px clear of the square's last column (40; a column more where JPEG softens its edge)
    assert strip.shape[0] == 64 and 320 - 54 <= strip.shape[1] <= 320 - 53
    assert mask.shape == strip.shape[:2]
    assert strip.max() < 60 and mask.max() == 0  # the room only, labelled background


def test_background_bands_include_rows_above_and_below():
    from portrait.training.distill import background_bands

    mask = np.zeros((400, 300), np.uint8)
    mask[120:250, 100:200] = 255  # a person in the middle: wall above, floor below
    assert background_bands(mask) == [("t", 0, 108), ("b", 262, 400)]  # columns under 96 px
    assert background_bands(mask, "lr") == []
    mask[0:10, 150] = 255  # a raised hand reaches the top: no band above
    assert background_bands(mask) == [("b", 262, 400)]


def test_distill_data_writes_bands_that_label_and_teacher_both_leave(tmp_path, brightness_model):
    import cv2

    from portrait.training.distill import main

    root = tmp_path / "photos"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    image = np.zeros((500, 400, 3), np.uint8)
    image[150:250, 20:60] = 255  # the brightness teacher calls this a person: unlabelled, a bystander
    truth = np.zeros((500, 400), np.uint8)
    truth[200:500, 200:260] = 255  # the labelled subject, standing on the bottom edge
    cv2.imwrite(str(root / "images" / "a.png"), image)
    cv2.imwrite(str(root / "masks" / "a.png"), truth)
    negatives = tmp_path / "negatives"
    assert main(["--teacher", str(brightness_model), "--data", str(root), "--out",
                 str(tmp_path / "soft"), "--negatives", str(negatives)]) == 0
    # Left of everyone would be x < 8 (the teacher's bystander starts at 20): too narrow. Right
    # of the subject: x 272..400 (128 px). Above everyone: y < 138 (the bystander's top at 150;
    # a few rows less where the 64x64 teacher's output, scaled up, softens its edge).
    assert (negatives / "train.txt").read_text().split() == ["a_r", "a_t"]
    right = cv2.imread(str(negatives / "images" / "a_r.jpg"))
    top = cv2.imread(str(negatives / "images" / "a_t.jpg"))
    assert right.shape == (500, 128, 3)
    assert 128 <= top.shape[0] <= 138 and top.shape[1] == 400
    assert cv2.imread(str(negatives / "masks" / "a_t.png"), cv2.IMREAD_GRAYSCALE).max() == 0
    assert top.max() < 60  # the bystander the label left out is not in the band


def test_hard_negatives_are_labelled_0_where_the_teacher_is_faint_but_not_0(tmp_path):
    """A teacher gives a dark room a small probability (0.05: 12 of 255, under the person
    level 25): the strips of a video frame and the bands of a photo beside the person are
    labelled background, 0, not the teacher's 12."""
    import cv2

    from portrait.training.distill import main

    teacher = str(brightness_model_file(tmp_path / "faint.hdf5", bias=6.2))
    clip = write_video(tmp_path / "walk.avi", 1, size=(320, 64))  # grey 30, a square at x 8..32
    assert main(["--teacher", teacher, "--video", str(clip), "--out", str(tmp_path / "frames"),
                 "--negatives", str(tmp_path / "strips")]) == 0
    assert (tmp_path / "strips" / "train.txt").read_text().split() == ["walk_00000_r"]
    label = cv2.imread(str(tmp_path / "frames" / "masks" / "walk_00000.png"), 0)
    strip = cv2.imread(str(tmp_path / "strips" / "masks" / "walk_00000_r.png"), 0)
    assert 0 < label[:, -strip.shape[1]:].min() <= 25  # the teacher there: faint, not 0
    assert strip.shape[0] == 64 and strip.max() == 0

    root = tmp_path / "photos"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    image = np.full((300, 400, 3), 30, np.uint8)
    image[100:300, 150:250] = 220  # the labelled person, on the bottom edge
    truth = np.zeros((300, 400), np.uint8)
    truth[100:300, 150:250] = 255
    cv2.imwrite(str(root / "images" / "a.png"), image)
    cv2.imwrite(str(root / "masks" / "a.png"), truth)
    assert main(["--teacher", teacher, "--data", str(root), "--out", str(tmp_path / "soft"),
                 "--negatives", str(tmp_path / "bands"), "--weight", "1"]) == 0
    assert (tmp_path / "bands" / "train.txt").read_text().split() == ["a_l", "a_r"]
    soft = cv2.imread(str(tmp_path / "soft" / "masks" / "a.png"), 0)
    for side, columns in (("l", slice(0, 10)), ("r", slice(-10, None))):
        band = cv2.imread(str(tmp_path / "bands" / "masks" / f"a_{side}.png"), 0)
        assert 0 < soft[:, columns].min() <= 25  # the teacher there (with weight 1)
        assert band.shape[0] == 300 and band.max() == 0


def test_soft_mask_scales_the_teacher_bilinearly_rounds_and_clips_by_hand():
    from portrait.training.distill import soft_mask

    # A 1x2 probability, 0 then 1, scaled to 1x4 bilinearly (pixel centres at -0.25, 0.25,
    # 0.75 and 1.25 of the source): 0, 0.25, 0.75, 1; times 255: 0, 63.75, 191.25, 255.
    np.testing.assert_array_equal(
        soft_mask(np.zeros((1, 4), np.uint8), np.array([[0.0, 1.0]], np.float32), 1.0),
        [[0, 64, 191, 255]])
    # Half of 255 over a label of 0: 127.5 rounds to 128 (to even), not down to 127.
    truth = np.array([[0, 255]], np.uint8)
    np.testing.assert_array_equal(soft_mask(truth, np.ones((1, 1), np.float32), 0.5), [[128, 255]])
    # A teacher's output beyond 0..1 (a linear last layer) counts as 0 or 1, never wraps around
    # uint8 (1.5 would give 382.5, written as 126; -0.2 as 205).
    np.testing.assert_array_equal(soft_mask(truth, np.full((1, 1), 1.5, np.float32), 1.0), [[255, 255]])
    np.testing.assert_array_equal(soft_mask(truth, np.full((1, 1), -0.2, np.float32), 1.0), [[0, 0]])


def test_background_bands_at_the_width_and_person_level_bars():
    """A band exactly min_width_px (96) across is kept; a value of exactly the person level (25)
    is not person, one above it (26, about 10 % probability) is."""
    from portrait.training.distill import background_bands

    mask = np.zeros((10, 200), np.uint8)
    mask[:, 108:110] = 255  # 12 px clear of column 108: columns 0..95 on the left
    assert background_bands(mask, "lr") == [("l", 0, 96)]  # the right, 122..200, is 78 across
    mask[3, 20] = 25
    assert background_bands(mask, "lr") == [("l", 0, 96)]
    mask[3, 100] = 26  # now the person reaches column 100: 0..88 is too narrow
    assert background_bands(mask, "lr") == []


def test_distill_bands_leave_out_a_bystander_the_teacher_gives_a_fifth(tmp_path, brightness_model):
    """Where the label says nobody and the teacher gives 0.2 (51 of 255, above the person level
    25), someone may be there: no band covers them. Mixed into the soft label at the default
    weight (0.3 x 51 = 15) they fall under the level, so the bands are cut beside the label and
    the teacher each, not beside the soft label."""
    import cv2

    from portrait.training.distill import main

    root = tmp_path / "photos"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    image = np.zeros((500, 400, 3), np.uint8)
    image[150:250, 20:60] = 113  # the brightness teacher: logit 12 * (113 / 127.5 - 1), p 0.2
    truth = np.zeros((500, 400), np.uint8)
    truth[200:500, 200:260] = 255
    cv2.imwrite(str(root / "images" / "a.png"), image)
    cv2.imwrite(str(root / "masks" / "a.png"), truth)
    negatives = tmp_path / "negatives"
    assert main(["--teacher", str(brightness_model), "--data", str(root), "--out",
                 str(tmp_path / "soft"), "--negatives", str(negatives)]) == 0
    soft = cv2.imread(str(tmp_path / "soft" / "masks" / "a.png"), cv2.IMREAD_GRAYSCALE)
    assert 12 <= soft[200, 40] <= 18  # the soft label there: under the person level
    assert (negatives / "train.txt").read_text().split() == ["a_r", "a_t"]  # no band left of x 188
    top = cv2.imread(str(negatives / "images" / "a_t.jpg"))
    # It stops above the bystander (their top at 150; the teacher's 64x64 output, scaled up,
    # is under the level for a few rows there), not at the subject's (200 - 12).
    assert top.shape[0] < 150 and top.max() < 60


def test_distill_counts_what_it_wrote_in_the_singular_too(tmp_path, brightness_model, caplog):
    """'wrote 1 pseudo-labelled frames', 'wrote 1 soft masks': one frame or photo is counted as
    one."""
    import cv2

    from portrait.training.distill import main

    root = tmp_path / "photos"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    cv2.imwrite(str(root / "images" / "a.png"), np.full((64, 96, 3), 200, np.uint8))
    cv2.imwrite(str(root / "masks" / "a.png"), np.full((64, 96), 255, np.uint8))
    clip = write_video(tmp_path / "one.avi", 1)
    with caplog.at_level(logging.INFO, logger="portrait.training.distill"):
        assert main(["--teacher", str(brightness_model), "--video", str(clip),
                     "--out", str(tmp_path / "frames")]) == 0
        assert main(["--teacher", str(brightness_model), "--data", str(root),
                     "--out", str(tmp_path / "soft")]) == 0
    wrote = [r.getMessage() for r in caplog.records if r.getMessage().startswith("wrote")]
    assert wrote == [f"wrote 1 pseudo-labelled frame (one in 1) to {tmp_path / 'frames'}",
                     f"wrote 1 soft mask (teacher weight 0.3) to {tmp_path / 'soft'}"]
