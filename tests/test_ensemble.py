"""portrait.training.ensemble: one model file that averages several models' person probabilities."""

import logging
import os
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import build_small_model, constant_model, make_data


def _member(path: Path, seed: int, short_px: int = 64, alpha: float = 0.35) -> Path:
    """A real, randomly initialised MobileNetV2-UNet written as portrait.training.train writes it."""
    import keras

    from portrait.training.model import build_unet
    from portrait.training.train import save_model

    keras.utils.set_random_seed(seed)
    model = build_unet((64, 64), alpha=alpha, decoder_filters=(16, 8, 8, 8), fixed_input=False)
    save_model(model, path, short_px)
    return path


def _small_member(path: Path, seed: int, short_px: int = 64) -> Path:
    """A small real model (conftest.build_small_model) written as train writes a model, for the
    tests where only the average matters: with MobileNetV2-UNet members (``_member``) the app's
    conversion of an ensemble took a minute and a half, and each soup half a minute."""
    import keras

    from portrait.training.train import save_model

    keras.utils.set_random_seed(seed)
    save_model(build_small_model(), path, short_px)
    return path


def test_the_ensemble_outputs_the_members_mean_in_keras_and_in_the_app(tmp_path):
    import keras

    from portrait.training.ensemble import main
    from portrait.options import SegmentOptions
    from portrait.segment import create_segmenter, read_short_side_hint

    members = [_small_member(tmp_path / "a.hdf5", 1), _small_member(tmp_path / "b.hdf5", 2)]
    out = tmp_path / "ab.hdf5"
    assert main([*map(str, members), "--out", str(out)]) == 0
    assert read_short_side_hint(out) == 64
    image = np.random.default_rng(0).uniform(0, 255, (1, 96, 64, 3)).astype(np.float32)
    outputs = [keras.models.load_model(p, compile=False).predict(image, verbose=0) for p in members]
    assert np.abs(outputs[0] - outputs[1]).max() > 1e-3  # the members differ, so the mean shows
    ensemble = keras.models.load_model(out, compile=False)
    np.testing.assert_allclose(ensemble.predict(image, verbose=0), np.mean(outputs, axis=0), atol=1e-5)
    # Through the app's own path (TFLite conversion at the frame's aspect) as well, against the
    # members run by the app's Keras backend at the same size (one conversion, not three).
    frame = np.random.default_rng(1).integers(0, 256, (120, 80, 3), np.uint8)
    probabilities = []
    for path in members:
        with create_segmenter(SegmentOptions(model=str(path), backend="keras", device="cpu")) as segmenter:
            probabilities.append(segmenter.segment(frame).copy())
    with create_segmenter(SegmentOptions(model=str(out))) as segmenter:
        assert segmenter.runtime != "keras" and "TFLite" in segmenter.description
        assert segmenter.output_kind == "sigmoid"  # known from the file, not guessed
        averaged = segmenter.segment(frame).copy()
    assert averaged.shape == probabilities[0].shape == (96, 64)
    np.testing.assert_allclose(averaged, (probabilities[0] + probabilities[1]) / 2, atol=1e-4)


def test_a_member_named_like_a_temporary_file_beside_out_is_kept(tmp_path):
    """``--out X.hdf5`` beside a member named ``X.tmp.h5``: the model is written through a
    temporary file of its own, so the member stays as it was (it was once written over and
    moved away)."""
    from portrait.training.ensemble import main

    first = _member(tmp_path / "seed1.tmp.h5", 1)
    second = _member(tmp_path / "seed2.hdf5", 2)
    before = first.read_bytes()
    out = tmp_path / "seed1.hdf5"
    assert main([str(first), str(second), "--out", str(out)]) == 0
    assert first.read_bytes() == before and out.is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seed1.hdf5", "seed1.tmp.h5",
                                                          "seed2.hdf5"]


def test_a_model_already_at_out_is_named_before_the_save_and_kept_beside_the_new_one(
        tmp_path, caplog):
    """--out names a model that is there (its export beside it, and an earlier-1 kept by a run
    before): a warning says, before the save, that it is replaced, where it is kept
    and that its export goes stale; the ensemble is written at --out and the earlier model,
    byte for byte, at earlier-2 (it was overwritten unsaid); earlier-1 is left as it was."""
    import keras

    from portrait.training.ensemble import main

    members = [_small_member(tmp_path / "a.hdf5", 1), _small_member(tmp_path / "b.hdf5", 2)]
    out = tmp_path / "ab.hdf5"
    earlier = Path(constant_model(out, 0.3)).read_bytes()
    (tmp_path / "ab.tflite").write_bytes(b"its export")
    (tmp_path / "ab.earlier-1.hdf5").write_bytes(b"kept by a run before")
    kept = tmp_path / "ab.earlier-2.hdf5"
    with caplog.at_level(logging.INFO, logger="portrait"):
        assert main([*map(str, members), "--out", str(out)]) == 0
    messages = [r.getMessage() for r in caplog.records]
    warning = (f"--out '{out}' exists: replacing it with this run's model when the run ends; the "
               f"earlier model is kept beside it as '{kept}'; its export "
               f"'{tmp_path / 'ab.tflite'}' will be stale until you export the new model")
    assert [r.levelname for r in caplog.records if r.getMessage() == warning] == ["WARNING"]
    loaded = next(i for i, m in enumerate(messages) if m.startswith("wrote "))
    assert messages.index(warning) < loaded
    assert f"the model that was at {out} before is kept as {kept}" in messages
    assert kept.read_bytes() == earlier
    assert (tmp_path / "ab.earlier-1.hdf5").read_bytes() == b"kept by a run before"
    assert keras.models.load_model(out, compile=False).name == "ensemble"
    caplog.clear()
    new = tmp_path / "new.hdf5"  # a new --out: no warning, nothing kept
    with caplog.at_level(logging.INFO, logger="portrait"):
        assert main([*map(str, members), "--out", str(new)]) == 0
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    assert sorted(p.name for p in tmp_path.glob("new*")) == ["new.hdf5"]


def test_a_soup_refused_after_its_members_load_says_nothing_of_replacing_out(tmp_path, caplog,
                                                                              capsys):
    """A soup whose members' weights differ in shape is refused only once they load: the model
    at --out is not said to be replaced (no warning), stays byte for byte, and nothing is kept
    beside it."""
    from portrait.training.ensemble import main

    a = _member(tmp_path / "a.hdf5", 1)
    wider = _member(tmp_path / "c.hdf5", 3, alpha=0.5)
    out = tmp_path / "soup.hdf5"
    earlier = Path(constant_model(out, 0.3)).read_bytes()
    with caplog.at_level(logging.INFO, logger="portrait"):
        assert main([str(a), str(wider), "--soup", "--out", str(out)]) == 2
    assert "weight arrays of other shapes than model 1's" in capsys.readouterr().err
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING
                and "replacing" in r.getMessage()], caplog.text
    assert out.read_bytes() == earlier
    assert sorted(p.name for p in tmp_path.glob("soup*")) == ["soup.hdf5"]


def _ensemble_of(tmp_path, first, second):
    from portrait.training.ensemble import main

    out = tmp_path / "pair.hdf5"
    assert main([str(first), str(second), "--out", str(out), "--short-side", "64"]) == 0
    return out


def test_ensemble_refusals_are_one_line_and_write_nothing(tmp_path, capsys):
    from portrait.training.ensemble import main

    a = _member(tmp_path / "a.hdf5", 1)
    b = _member(tmp_path / "b.hdf5", 2, short_px=96)
    plain = constant_model(tmp_path / "plain.h5", 0.7, rescales=False)  # nor a short side
    text = tmp_path / "text.hdf5"
    text.write_text("not a model")
    weights_only = tmp_path / "weights.h5"
    with h5py.File(weights_only, "w") as f:
        f.create_dataset("kernel", data=np.zeros(3))
    folder_out = tmp_path / "folder.hdf5"
    folder_out.mkdir()
    before = a.read_bytes()
    cases = [
        ([str(a)], "an ensemble needs at least two models, got 1"),
        ([str(a), str(b)], "the models run at different short sides (a.hdf5: 64, b.hdf5: 96)"),
        ([str(a), plain, "--short-side", "64"], "model 2 does not scale its own input"),
        ([str(a), str(tmp_path / "gone.hdf5")],
         f"model '{tmp_path / 'gone.hdf5'}' not found (also looked in weights/); pass the Keras "
         "model files to average"),
        ([str(a), str(tmp_path)], f"model '{tmp_path}' is a folder, not a model file; pass the"),
        ([str(a), str(b), "--out", str(a)], f"--out '{a}' is one of the models"),
        ([str(a), str(b), "--short-side", "64", "--calibrate", str(tmp_path)],
         "--calibrate re-estimates a soup's batch-norm statistics; pass --soup too"),
        ([str(a), str(_member(tmp_path / "c.hdf5", 3, alpha=0.5)), "--soup"],
         "weight arrays of other shapes than model 1's"),
        ([str(_ensemble_of(tmp_path, a, b)), str(a)], "model 1 is itself an ensemble of 2 models"),
        # A file that is no model is named as such, not asked for its short side.
        ([str(a), str(text)], f"cannot read model '{text}': not a valid HDF5 file"),
        ([str(a), str(weights_only)], f"cannot read model '{weights_only}': the file holds no "
                                      "model architecture"),
        # An --out that cannot be written is refused before the members load; with --debug too.
        ([str(a), str(b), "--short-side", "64", "--out", "/proc/x.hdf5"],
         "cannot write model '/proc/x.hdf5': folder '/proc' is not writable"),
        ([str(a), str(b), "--short-side", "64", "--out", "/proc/x.hdf5", "--debug"],
         "cannot write model '/proc/x.hdf5': folder '/proc' is not writable"),
        ([str(a), str(b), "--short-side", "64", "--out", str(folder_out)],
         f"--out '{folder_out}' is a folder; give a file name"),
        ([str(a), str(b), "--short-side", "64", "--out", str(tmp_path / "none" / "x.hdf5")],
         f"--out folder '{tmp_path / 'none'}' does not exist; create it first"),
    ]
    for args, message in cases:
        if "/proc/x.hdf5" in args and not sys.platform.startswith("linux"):
            continue
        target = [] if "--out" in args else ["--out", str(tmp_path / "new.hdf5")]
        assert main([*args, *target]) == 2, args
        err = capsys.readouterr().err.strip().splitlines()
        assert message in err[-1] and "Traceback" not in "\n".join(err), err
    assert not (tmp_path / "new.hdf5").exists()
    assert not (tmp_path / "none").exists() and not any(folder_out.iterdir())
    assert a.read_bytes() == before


def test_a_calibration_size_the_models_cannot_take_is_a_usage_error(tmp_path, capsys):
    """The crops must halve five times, as every size the app runs a model at does."""
    from portrait.training.ensemble import main

    with pytest.raises(SystemExit) as done:
        main(["a.hdf5", "b.hdf5", "--soup", "--calibrate", "d", "--input-size", "100x100",
              "--out", str(tmp_path / "x.hdf5")])
    assert done.value.code == 2
    assert "size '100x100' is not a multiple of 32 on both sides" in capsys.readouterr().err


def test_a_short_side_the_app_cannot_run_is_a_usage_error(tmp_path, capsys):
    """The app runs a model at sides that are multiples of 32; any other --short-side would
    write a file it cannot run."""
    from portrait.training.ensemble import main

    for value, example in (("100", "96 or 128"), ("7", "32")):
        with pytest.raises(SystemExit) as done:
            main(["a.hdf5", "b.hdf5", "--short-side", value, "--out", str(tmp_path / "x.hdf5")])
        assert done.value.code == 2
        assert f"short side '{value}' is not a multiple of 32, e.g. {example}" in \
            capsys.readouterr().err
    assert not (tmp_path / "x.hdf5").exists()


def test_no_model_files_and_unwritable_outs_are_refused_before_tensorflow_starts(tmp_path):
    """A member that is no model file, a member given twice or at a short side the app cannot run,
    and an --out no file can be written to, are refused before TensorFlow starts and the members
    load (it was after building the ensemble, or not at all)."""
    import shutil

    from conftest import assert_refused_before_tensorflow

    from portrait.segment import SHORT_SIDE_ATTR

    members = [constant_model(tmp_path / f"{name}.h5", 0.7) for name in "ab"]
    with h5py.File(members[0], "a") as f:
        f.attrs[SHORT_SIDE_ATTR] = 64  # what train writes: only the text file lacks a short side
    text = tmp_path / "text.hdf5"
    text.write_text("not a model")
    odd_side = tmp_path / "odd.h5"
    shutil.copy(members[0], odd_side)
    with h5py.File(odd_side, "a") as f:
        f.attrs[SHORT_SIDE_ATTR] = 100  # train --short-side let it through
    (tmp_path / "sub").mkdir()
    again = tmp_path / "sub" / ".." / "a.h5"  # the same file spelled otherwise
    link, hard = tmp_path / "sub" / "link.h5", tmp_path / "sub" / "hard.h5"
    link.symlink_to(members[1])
    os.link(members[1], hard)
    before = {path: Path(path).read_bytes() for path in members}
    cases = [([members[0], str(text), "--out", str(tmp_path / "x.hdf5")],
              f"cannot read model '{text}': not a valid HDF5 file"),
             # The same member twice, as a plain average or a soup, however spelled.
             ([members[0], members[1], members[0], "--out", str(tmp_path / "x.hdf5")],
              f"model 3 '{members[0]}' is model 1 '{members[0]}' again; pass each model once"),
             ([members[0], str(again), "--soup", "--out", str(tmp_path / "x.hdf5")],
              f"model 2 '{again}' is model 1 '{members[0]}' again; pass each model once"),
             # An --out that is a member, however spelled: through '..', a link, a hard link.
             ([*members, "--out", str(again)], f"--out '{again}' is one of the models"),
             ([*members, "--out", str(link)], f"--out '{link}' is one of the models"),
             ([*members, "--out", str(hard)], f"--out '{hard}' is one of the models"),
             # An --out the app would read as another kind of model file.
             ([*members, "--out", str(tmp_path / "x.tflite")],
              f"--out '{tmp_path / 'x.tflite'}' must end in .hdf5 or .h5"),
             # A stored short side the app cannot run is not copied into the new file.
             ([members[0], str(odd_side), "--out", str(tmp_path / "x.hdf5")],
              f"'{odd_side}' says it runs at a short side of 100 px, not a multiple of 32; "
              "pass --short-side PX, a multiple of 32")]
    if sys.platform.startswith("linux"):  # root may write anywhere by os.access, but not here
        cases.append(([*members, "--short-side", "64", "--out", "/proc/x.hdf5"], "cannot write "
                      "model '/proc/x.hdf5': folder '/proc' is not writable"))
    assert_refused_before_tensorflow("portrait.training.ensemble", cases)
    assert not (tmp_path / "x.hdf5").exists()
    assert {path: Path(path).read_bytes() for path in members} == before


def test_a_converted_ensemble_reads_as_a_probability_and_a_scaled_sigmoid_does_not():
    """The mean of 2 or 3 sigmoids (ADDs and a MUL by 1/n after conversion) is a probability;
    a sigmoid times 2, or a sigmoid averaged with a linear output, is not. The members are as
    small as a member can be (input scaling, one convolution, a sigmoid): what is read is the
    graph's tail, and a MobileNetV2-UNet member only made each conversion take half a minute."""
    import keras

    from portrait.segment import tflite_utils
    from portrait.training.ensemble import average_models

    def member(seed: int):
        keras.utils.set_random_seed(seed)
        inputs = keras.Input((64, 64, 3))
        scaled = keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)
        return keras.Model(inputs, keras.layers.Conv2D(1, 3, padding="same",
                                                       activation="sigmoid")(scaled))

    members = [member(i) for i in range(3)]
    for count in (2, 3):
        content = tflite_utils.convert_keras_to_tflite(average_models(members[:count]), (64, 64))
        assert tflite_utils.output_activation(content) == "LOGISTIC", count

    inputs = keras.Input((64, 64, 3))
    probability = keras.layers.Conv2D(1, 1, activation="sigmoid")(inputs)
    linear = keras.layers.Conv2D(1, 1)(inputs)
    doubled = keras.Model(inputs, keras.layers.Rescaling(2.0)(probability))
    mixed = keras.Model(inputs, keras.layers.Average()([probability, linear]))
    for model in (doubled, mixed):
        content = tflite_utils.convert_keras_to_tflite(model, (64, 64))
        assert tflite_utils.output_activation(content) != "LOGISTIC", model.layers[-1]


def _weights(path: Path, kind: str) -> list[np.ndarray]:
    """A model file's kernels ("kernel") or batch-norm moving means ("moving_mean"), in order."""
    import keras

    model = keras.models.load_model(path, compile=False)
    return [w.numpy() for w in model.weights if w.path.endswith(kind)]


def test_the_soup_is_one_model_with_the_members_mean_weights(tmp_path, caplog):
    """--soup: one model of a member's size whose every weight (batch-norm statistics too,
    without --calibrate) is the members' mean, at the members' short side, run by the app."""
    import keras

    from portrait.options import SegmentOptions
    from portrait.segment import create_segmenter, read_short_side_hint
    from portrait.training.ensemble import main

    members = [_small_member(tmp_path / "a.hdf5", 1), _small_member(tmp_path / "b.hdf5", 2)]
    out = tmp_path / "soup.hdf5"
    with caplog.at_level(logging.WARNING, logger="portrait.training.ensemble"):
        assert main(["--soup", *map(str, members), "--out", str(out), "--seed", "3"]) == 0
    # The calibration's options do nothing without it, and say so.
    assert "--seed is ignored without --calibrate" in caplog.text
    assert read_short_side_hint(out) == 64
    loaded = [keras.models.load_model(p, compile=False) for p in [*members, out]]
    assert loaded[2].count_params() == loaded[0].count_params()
    first, second, soup = (m.get_weights() for m in loaded)
    assert max(np.abs(x - y).max() for x, y in zip(first, second)) > 1e-3  # the members differ
    for got, x, y in zip(soup, first, second):
        np.testing.assert_allclose(got, (x + y) / 2, atol=1e-6)
    frame = np.random.default_rng(1).integers(0, 256, (120, 80, 3), np.uint8)
    with create_segmenter(SegmentOptions(model=str(out))) as segmenter:
        probability = segmenter.segment(frame)
        assert segmenter.output_kind == "sigmoid"
    # At the frame's aspect, short side 64, a probability.
    assert probability.shape == (96, 64) and 0.0 <= probability.min() <= probability.max() <= 1.0


def test_a_calibrated_soup_keeps_the_mean_kernels_and_re_estimates_batch_norm(tmp_path):
    """--calibrate DATA: the kernels stay the members' mean; the batch-norm moving means are
    measured on crops of DATA through the soup's own weights, not averaged."""
    data = make_data(tmp_path / "data")
    members = [_small_member(tmp_path / "a.hdf5", 1), _small_member(tmp_path / "b.hdf5", 2)]
    calibrated, plain = tmp_path / "calibrated.hdf5", tmp_path / "plain.hdf5"
    from portrait.training.ensemble import main

    assert main(["--soup", *map(str, members), "--calibrate", str(data), "--input-size", "64x64",
                 "--bn-steps", "3", "--out", str(calibrated)]) == 0
    assert main(["--soup", *map(str, members), "--out", str(plain)]) == 0
    for got, x, y in zip(_weights(calibrated, "kernel"), *(_weights(p, "kernel") for p in members)):
        np.testing.assert_allclose(got, (x + y) / 2, atol=1e-6)
    means = [(_weights(calibrated, "moving_mean")), _weights(plain, "moving_mean")]
    assert len(means[0]) == len(means[1]) > 0
    assert max(np.abs(x - y).max() for x, y in zip(*means)) > 1e-3


def _tiny(shape=(64, 64, 3), channels: int = 1, activation: str = "sigmoid"):
    """A member as small as one can be: input scaling, one convolution, ``activation``."""
    import keras

    inputs = keras.Input(shape)
    scaled = keras.layers.Rescaling(1 / 255)(inputs)
    return keras.Model(inputs, keras.layers.Conv2D(channels, 1, activation=activation)(scaled))


def test_members_that_give_no_one_probability_or_take_other_inputs_are_refused():
    """An output average needs members that each give one person probability (a 1-channel
    sigmoid) for the same input: a linear or 2-channel member, or one that takes another
    input size, is named (1-based) with what it gives; a soup needs two models too."""
    from portrait.errors import ModelError
    from portrait.training.ensemble import average_models, soup_models

    cases = [
        (_tiny(activation=None), "model 2 does not end in a 1-channel sigmoid (output "
                                 "(None, 64, 64, 1))"),
        (_tiny(channels=2), "model 2 does not end in a 1-channel sigmoid (output "
                            "(None, 64, 64, 2))"),
        (_tiny((96, 96, 3)), "model 2 takes input (96, 96, 3), model 1 takes (64, 64, 3); "
                             "members must take the same input"),
    ]
    for other, message in cases:
        with pytest.raises(ModelError) as refused:
            average_models([_tiny(), other])
        assert message in str(refused.value), str(refused.value)
    with pytest.raises(ModelError, match="a soup needs at least two models, got 1"):
        soup_models([_tiny()])


def test_a_member_without_a_short_side_is_named_with_what_to_pass(tmp_path):
    from portrait.errors import InputError
    from portrait.training.ensemble import members_short_side

    plain = [Path(constant_model(tmp_path / f"{name}.h5", 0.7)) for name in "ab"]
    with pytest.raises(InputError) as refused:
        members_short_side(plain)
    assert str(refused.value) == (f"'{plain[0]}' does not say which short side it runs at; "
                                  "pass --short-side PX")


def test_calibration_weighs_a_list_named_twice_twice_and_runs_the_steps_asked(tmp_path, caplog):
    """--calibrate A A takes A's pairs twice (as train --data does), and --bn-steps N runs N
    batches: from a fresh model's zero moving means, at the calibration's momentum 0.9, one batch
    moves them a tenth of the way to the crops' means and ten batches about two thirds
    (1 - 0.9 ** 10), so the ten-batch means are several times the one-batch ones."""
    import keras

    from portrait.training.ensemble import calibrate_soup

    data = str(make_data(tmp_path / "data"))  # 9 training pairs
    keras.utils.set_random_seed(4)
    model = build_small_model()
    start = model.get_weights()
    means = {}
    for steps in (1, 10):
        model.set_weights(start)
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="portrait.training.ensemble"):
            calibrate_soup(model, [data, data], (64, 64), steps, seed=1, batch=2)
        assert caplog.messages[-1].endswith("of 2 crops from 18 pairs"), caplog.messages
        (mean,) = [w.numpy() for w in model.weights if w.path.endswith("moving_mean")]
        means[steps] = float(np.abs(mean).mean())
    assert means[1] > 0 and means[10] > 3 * means[1], means
