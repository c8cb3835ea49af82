"""``python -m portrait.training.export``: the app's Keras → TFLite conversion, written to a file."""

import logging
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT
from portrait.segment import tflite_utils
from portrait.training import export
from portrait.errors import ModelError
from portrait.options import SegmentOptions
from portrait.segment import create_segmenter


@pytest.fixture(scope="module")
def dynamic_model(tmp_path_factory):
    """A small fully convolutional model with a dynamic input size and seeded random weights."""
    import keras

    keras.utils.set_random_seed(3)
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(x)
    outputs = keras.layers.Conv2D(1, 3, padding="same", activation="sigmoid")(x)
    model = keras.Model(inputs, outputs)
    path = tmp_path_factory.mktemp("models") / "dynamic.hdf5"
    model.save(path)
    return path, model


@pytest.fixture(scope="module")
def unit_model(tmp_path_factory):
    """A model without a Rescaling layer: it expects pixels already scaled (x/255)."""
    import keras

    inputs = keras.Input((32, 32, 3))
    model = keras.Model(inputs, keras.layers.Conv2D(1, 1, activation="sigmoid")(inputs))
    path = tmp_path_factory.mktemp("models") / "unit.hdf5"
    model.save(path)
    return path


def run_tflite(content: bytes, images: np.ndarray) -> np.ndarray:
    interpreter = tflite_utils.make_interpreter(content, 1)
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    interpreter.set_tensor(detail["index"], images)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


def test_exported_model_matches_keras_and_carries_its_norm(dynamic_model, tmp_path):
    path, model = dynamic_model
    out = export.export_model(str(path), str(tmp_path / "dynamic.tflite"), input_size=(48, 32))
    content = out.read_bytes()
    images = np.random.default_rng(0).uniform(0, 255, (1, 32, 48, 3)).astype(np.float32)
    found = run_tflite(content, images)
    assert found.shape == (1, 32, 48, 1)
    np.testing.assert_allclose(found, np.asarray(model(images)), atol=1e-5)
    assert tflite_utils.read_tflite_input_norm(out) == "raw"  # Rescaling layer → raw pixels
    shape, _ = tflite_utils.input_shape(out)
    assert shape == [1, 32, 48, 3]


def test_the_app_runs_the_export_as_it_runs_the_keras_file(dynamic_model, tmp_path):
    path, _ = dynamic_model
    out = export.export_model(str(path), str(tmp_path / "dynamic.tflite"), input_size=(48, 32))
    frame = np.random.default_rng(1).integers(0, 256, (64, 96, 3), np.uint8)
    keras_options = SegmentOptions(model=str(path), backend="tflite", input_size=(48, 32))
    with create_segmenter(keras_options) as from_keras, \
            create_segmenter(SegmentOptions(model=str(out))) as from_export:
        # The very file the app converts and caches for itself, plus the record of its source.
        info = tflite_utils.read_export_info(out)
        assert info["source"] == "dynamic.hdf5" and info["source_sha256"] == tflite_utils.file_sha256(path)
        assert tflite_utils.mark_export_info(from_keras.cache_path.read_bytes(), info) == out.read_bytes()
        assert from_export.input_size == from_keras.input_size == (48, 32)
        assert from_export.input_norm == from_keras.input_norm == "raw"
        np.testing.assert_array_equal(from_export.segment(frame), from_keras.segment(frame))


def test_model_marked_with_its_training_size_exports_one_file_for_every_aspect(dynamic_model, tmp_path):
    import shutil

    import h5py

    from portrait.segment import SHORT_SIDE_ATTR, AspectSegmenter

    marked = tmp_path / "trained.hdf5"
    shutil.copy(dynamic_model[0], marked)
    with h5py.File(marked, "a") as f:
        f.attrs[SHORT_SIDE_ATTR] = 64  # what portrait.training.train writes
    out = export.export_model(str(marked), str(tmp_path / "exported" / "trained.tflite"))
    assert tflite_utils.input_shape(out)[1] == [1, -1, -1, 3]  # dynamic height and width
    assert tflite_utils.read_export_info(out)["input_short_px"] == 64
    rng = np.random.default_rng(2)
    with create_segmenter(SegmentOptions(model=str(marked), backend="tflite")) as from_keras, \
            create_segmenter(SegmentOptions(model=str(out))) as from_export:
        assert isinstance(from_export, AspectSegmenter) and "short side 64 px" in from_export.description
        for shape in ((720, 1280, 3), (800, 600, 3), (90, 160, 3)):
            frame = rng.integers(0, 256, shape, np.uint8)
            expected = from_keras.segment(frame)
            found = from_export.segment(frame)
            assert found.shape == expected.shape
            np.testing.assert_allclose(found, expected, atol=1e-5)


def test_fixed_input_size_wins_over_input_size(brightness_model, tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        out = export.export_model(str(brightness_model), str(tmp_path / "b.tflite"),
                                  input_size=(96, 96))
    assert tflite_utils.input_shape(out)[0] == [1, 64, 64, 3]
    assert "fixed 64x64 input" in caplog.text


def test_norm_mark_auto_leaves_unknown_models_unmarked_and_can_be_set(unit_model, tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        plain = export.export_model(str(unit_model), str(tmp_path / "plain.tflite"))
    assert tflite_utils.read_tflite_input_norm(plain) is None
    assert "unmarked" in caplog.text
    marked = export.export_model(str(unit_model), str(tmp_path / "unit.tflite"), input_norm="unit")
    assert tflite_utils.read_tflite_input_norm(marked) == "unit"
    with create_segmenter(SegmentOptions(model=str(marked))) as segmenter:
        assert segmenter.input_norm == "unit"


def test_a_model_whose_output_is_no_mask_is_refused_and_nothing_written(tmp_path, capsys):
    """A classifier (ten scores, no map) was exported, checked against itself and written;
    the app then refused the file ('model output shape (1, 10) is not a mask'). export refuses
    it with the app's own line before converting, and writes nothing."""
    import keras

    inputs = keras.Input((None, None, 3))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Rescaling(1 / 255)(inputs))
    keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(x)).save(
        tmp_path / "classifier.hdf5")
    out = tmp_path / "classifier.tflite"
    assert export.main(["--model", str(tmp_path / "classifier.hdf5"), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == ("error: model output shape (1, 10) is not a mask: expected (1, H, W, 1) or "
                       "(1, H, W, 2); pass a segmentation model with a one-channel sigmoid or a "
                       "two-channel softmax output"), err
    assert not out.exists() and list(tmp_path.iterdir()) == [tmp_path / "classifier.hdf5"]


def _one_conv_model(bias: float):
    """A real model small enough to convert in a moment: x/255, a 1x1 sigmoid convolution of
    weights 1 and ``bias`` (nan: the weights of a run that diverged)."""
    import keras

    inputs = keras.Input((32, 32, 3))
    conv = keras.layers.Conv2D(1, 1, activation="sigmoid")
    model = keras.Model(inputs, conv(keras.layers.Rescaling(1 / 255)(inputs)))
    conv.set_weights([np.ones((1, 1, 3, 1), np.float32), np.full(1, bias, np.float32)])
    return model


def test_a_model_that_gives_nan_is_refused_as_broken_not_as_a_bad_conversion(tmp_path, capsys):
    """A model whose weights hold a nan (a diverged training run) gives nan in Keras and in its
    export alike: the check refused it as an export that "disagrees by nan" and advised
    --input-size, which cannot help. It is named as the broken model it is; nothing is written."""
    _one_conv_model(float("nan")).save(tmp_path / "diverged.hdf5")
    out = tmp_path / "diverged.tflite"
    assert export.main(["--model", str(tmp_path / "diverged.hdf5"), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (f"error: '{tmp_path / 'diverged.hdf5'}' gives no probability (nan) on a "
                       "random image at 32x32, in Keras and in its TFLite export: its weights are "
                       "broken (a training run that diverged?); export a model that predicts"), err
    assert not out.exists()


def test_the_export_check_says_which_side_gave_nan(tmp_path):
    """Where only the TFLite export gives nan (a conversion gone wrong: here the export of a
    twin whose bias is nan, checked against the sound model), the weights are not blamed: the
    line says the conversion went wrong and what to try. Where only Keras gives nan, the
    weights are. Every nan was put down to broken weights, "in Keras or in its TFLite
    export"."""
    from portrait.segment.convert import convert_keras

    sound, broken = _one_conv_model(0.0), _one_conv_model(float("nan"))
    path = tmp_path / "model.hdf5"
    sound_export = convert_keras(sound, path, (32, 32), "try --input-size WxH")
    broken_export = convert_keras(broken, path, (32, 32), "try --input-size WxH")
    assert export.compare_export(sound, sound_export, (32, 32)).largest <= export.MAX_DIFFERENCE

    only_tflite = (f"the TFLite export of '{path}' gives no probability (nan) on a random image "
                   "at 32x32 where the Keras model gives one: the conversion went wrong, not the "
                   "weights; try --input-size WxH, or run the .hdf5 itself")
    only_keras = (f"'{path}' gives no probability (nan) on a random image at 32x32, in Keras (its "
                  "TFLite export gives numbers): its weights are broken (a training run that "
                  "diverged?); export a model that predicts")
    for model, exported, nan, message in ((sound, broken_export, (False, True), only_tflite),
                                          (broken, sound_export, (True, False), only_keras)):
        difference = export.compare_export(model, exported, (32, 32))
        assert (difference.keras_nan, difference.tflite_nan) == nan
        with pytest.raises(ModelError) as raised:
            export.check_difference(path, difference, (32, 32), "try --input-size WxH")
        assert str(raised.value) == message


def test_bad_paths_are_model_errors(brightness_model, tmp_path):
    with pytest.raises(ModelError, match="must end in .tflite"):
        export.export_model(str(brightness_model), str(tmp_path / "x.onnx"))
    selfie = tmp_path / "selfie.tflite"
    selfie.write_bytes(b"not needed")
    with pytest.raises(ModelError, match="converts Keras models"):
        export.export_model(str(selfie), str(tmp_path / "y.tflite"))
    # Not "pass --model PATH to a .hdf5 or .tflite model", the app's words: export takes no .tflite.
    with pytest.raises(ModelError, match=r"not found \(also looked in weights/\); pass --model "
                                         r"PATH to a Keras model \(.hdf5, .h5, .keras\); a "
                                         r"\.tflite needs no export$"):
        export.export_model(str(tmp_path / "none.hdf5"), str(tmp_path / "z.tflite"))


def test_command_line_writes_and_reports(brightness_model, tmp_path, caplog):
    out = tmp_path / "sub" / "bright.tflite"
    with caplog.at_level(logging.INFO):
        assert export.main(["--model", str(brightness_model), "--out", str(out), "--debug"]) == 0
    assert out.is_file() and tflite_utils.read_tflite_input_norm(out) == "raw"
    assert f"wrote {out}" in caplog.text and "kB" in caplog.text


def test_command_line_error_is_one_line(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "portrait.training.export", "--model", str(tmp_path / "none.hdf5"),
         "--out", str(tmp_path / "x.tflite")],
        cwd=ROOT, env=dict(os.environ), capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: model") and "not found" in lines[0]
    assert not (tmp_path / "x.tflite").exists()


def test_shipped_takes_no_option_that_would_change_the_files(capsys):
    """--shipped exports the shipped models as they are: an option it would not apply is refused,
    before anything is written (--input-norm was ignored without a word)."""
    before = {path: path.stat().st_mtime_ns for path in (ROOT / "weights").glob("*.tflite")}
    for extra in (["--input-norm", "raw"], ["--input-size", "256x256"], ["--out", "x.tflite"]):
        assert export.main(["--shipped", *extra]) == 2, extra
        err = capsys.readouterr().err.strip().splitlines()
        assert err == ["error: --shipped exports the shipped models beside themselves, as they "
                       "are; it takes no --model, --out, --input-size or --input-norm"], extra
    assert {path: path.stat().st_mtime_ns for path in (ROOT / "weights").glob("*.tflite")} == before


def test_an_input_norm_that_contradicts_the_models_own_scaling_is_refused(dynamic_model, tmp_path,
                                                                          capsys):
    """The model rescales pixels itself (Rescaling first), so it takes raw pixels; marked unit,
    the app would feed it x/255 and mark nobody, and the check (both models fed alike) passes."""
    path, _ = dynamic_model
    out = tmp_path / "unit.tflite"
    assert export.main(["--model", str(path), "--out", str(out), "--input-norm", "unit",
                        "--input-size", "32x32"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--input-norm unit contradicts" in err[0], err
    assert "rescales pixels itself" in err[0] and "leave --input-norm out" in err[0]
    with pytest.raises(ModelError, match="--input-norm symmetric contradicts"):
        export.export_model(str(path), str(out), input_size=(32, 32), input_norm="symmetric")
    assert not out.exists()


def test_input_size_not_a_multiple_of_32_is_refused_as_the_app_refuses_it(dynamic_model, tmp_path,
                                                                         capsys):
    path, _ = dynamic_model
    out = tmp_path / "odd.tflite"
    with pytest.raises(SystemExit) as done:
        export.main(["--model", str(path), "--out", str(out), "--input-size", "100x100"])
    assert done.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "size '100x100' is not a multiple of 32" in err[0], err
    assert not out.exists()


def test_bad_paths_are_refused_before_tensorflow_starts(brightness_model, tmp_path):
    """A .tflite --model, an --out of another suffix, the model itself, a file export did not
    write (it was replaced without a word), the export the app runs for another model (a shipped
    one too), a folder, or a folder that takes no file: each one line, exit 2, before TensorFlow
    is imported or anything converted."""
    from conftest import assert_refused_before_tensorflow

    selfie = tmp_path / "selfie.tflite"
    selfie.write_bytes(b"not needed")
    link = tmp_path / "link.tflite"
    link.symlink_to(brightness_model)
    blocker = tmp_path / "file.txt"
    blocker.write_text("a file, not a folder")
    other = tmp_path / "other.hdf5"  # another model, whose export the app looks for beside it
    other.write_bytes(b"a Keras file")
    shipped = ROOT / "weights" / "unet_live.tflite"
    model = str(brightness_model)
    cases = [
        (["--model", model, "--out", str(selfie)], f"--out '{selfie}' already holds a file that "
         "export did not write (no export record: a model from elsewhere, or another file)"),
        (["--model", model, "--out", str(tmp_path / "other.tflite")],
         f"--out '{tmp_path / 'other.tflite'}' is where the app looks for the export of '{other}' "
         "beside it"),
        (["--model", model, "--out", str(shipped)], f"the export of '{shipped.with_suffix('.hdf5')}'"),
        (["--model", str(selfie)], "a .tflite model needs no export"),
        (["--model", model, "--out", str(tmp_path / "x.onnx")], "must end in .tflite"),
        (["--model", model, "--out", str(link)], f"--out '{link}' is the model file itself"),
        (["--model", model, "--out", str(tmp_path) + os.sep + "dir.tflite" + os.sep],
         "is a folder; give a file name"),
        (["--model", model, "--out", str(blocker / "x.tflite")],
         f"'{blocker}' is a file, not a folder"),
    ]
    if sys.platform.startswith("linux"):  # root may write anywhere by os.access, but not here
        cases.append((["--model", model, "--out", "/proc/x.tflite"], "cannot write model "
                      "'/proc/x.tflite': folder '/proc' is not writable"))
    assert_refused_before_tensorflow("portrait.training.export", cases)
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == ["file.txt", "link.tflite", "other.hdf5", "selfie.tflite"]  # nothing written
    assert selfie.read_bytes() == b"not needed"


def test_a_file_that_is_no_model_is_named_as_such_not_as_a_tflite(tmp_path):
    """A photo or a text file given as --model was told 'a .tflite model needs no export', as if
    it were one; it is named as no model file, before TensorFlow is imported, and a .tflite
    still gets its own line."""
    import cv2

    from conftest import assert_refused_before_tensorflow

    photo = tmp_path / "photo.jpg"
    cv2.imwrite(str(photo), np.full((32, 48, 3), 128, np.uint8))
    notes = tmp_path / "notes"
    notes.write_text("not a model")
    selfie = tmp_path / "selfie.tflite"
    selfie.write_bytes(b"\x1c\x00\x00\x00TFL3" + bytes(64))
    cases = [
        (["--model", str(photo)], f"error: --model '{photo}' is not a model file: export converts "
         "Keras models (.hdf5, .h5, .keras), and its type '.jpg' is none of them; pass --model "
         "PATH to a Keras model"),
        (["--model", str(notes)], "and its type '(none)' is none of them"),
        (["--model", str(selfie)], "a .tflite model needs no export"),
    ]
    assert_refused_before_tensorflow("portrait.training.export", cases)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes", "photo.jpg", "selfie.tflite"]


def test_a_re_export_replaces_the_earlier_one_whole_and_readable(brightness_model, tmp_path):
    """An earlier export at --out is replaced (a re-export); the file takes the name with its
    sharing permissions already set, leaving no temporary file beside it."""
    out = tmp_path / "bright.tflite"
    out.write_bytes(b"placeholder")
    with pytest.raises(ModelError, match="already holds a file that export did not write"):
        export.export_model(str(brightness_model), str(out))
    out.unlink()
    export.export_model(str(brightness_model), str(out))
    first = out.read_bytes()
    os.chmod(out, 0o600)
    export.export_model(str(brightness_model), str(out))
    umask = os.umask(0)
    os.umask(umask)
    assert out.read_bytes() == first and out.stat().st_mode & 0o777 == 0o666 & ~umask
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bright.tflite"]
