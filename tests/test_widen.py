"""portrait.training.widen: a wider decoder that predicts what the trained model does."""

import logging
import os
from pathlib import Path

import numpy as np
import pytest

BACKBONE = Path(__file__).resolve().parents[2] / "shared" / "models" / "mobilenetv2_1.0_backbone.weights.h5"


def _trained_like(path: Path, seed: int = 1, output_stride: int = 16, context: str = "none") -> Path:
    """A small MobileNetV2-UNet whose batch-norm parameters and statistics and biases are random
    (as after training, not as initialised; kernels are random anyway), so a misplaced channel
    or a bias left at its initial zero shows."""
    import keras

    from portrait.training.model import build_unet
    from portrait.training.train import save_model

    keras.utils.set_random_seed(seed)
    model = build_unet((64, 64), alpha=0.35, output_stride=output_stride,
                       decoder_filters=(16, 12, 8, 6), fixed_input=False, context=context)
    rng = np.random.default_rng(seed)
    ranges = {"gamma": (0.5, 1.5), "beta": (-0.3, 0.3), "moving_mean": (-0.3, 0.3),
              "moving_variance": (0.5, 2.0), "bias": (-0.3, 0.3)}
    for variable in model.weights:
        kind = variable.path.rsplit("/", 1)[-1]
        if kind in ranges:
            variable.assign(rng.uniform(*ranges[kind], variable.shape).astype(np.float32))
    save_model(model, path, 64)
    return path


def _predict(path: Path, image: np.ndarray) -> np.ndarray:
    import keras

    return keras.models.load_model(path, compile=False).predict(image, verbose=0)


@pytest.mark.slow
def test_the_widened_model_predicts_the_same_and_its_new_channels_can_learn(tmp_path):
    import keras
    import tensorflow as tf

    from portrait.segment import read_short_side_hint
    from portrait.training.widen import decoder_widths, main

    image = np.random.default_rng(0).uniform(0, 255, (2, 96, 64, 3)).astype(np.float32)
    for stride, context, new in [(16, "none", "20,14,10"), (32, "lraspp", "18,16,14,8")]:
        source = _trained_like(tmp_path / f"s{stride}.hdf5", output_stride=stride, context=context)
        out = tmp_path / f"wide{stride}.hdf5"
        assert main([str(source), "--decoder", new, "--out", str(out)]) == 0
        assert read_short_side_hint(out) == 64
        wide = keras.models.load_model(out, compile=False)
        assert decoder_widths(wide) == [int(c) for c in new.split(",")]
        before = _predict(source, image)
        assert before.std() > 1e-3  # not a constant output, so agreement means something
        np.testing.assert_allclose(wide.predict(image, verbose=0), before, atol=1e-5)

        # The weights that read the new channels start at 0 but get a gradient.
        logits = wide.get_layer("logits").kernel
        old = keras.models.load_model(source, compile=False).get_layer("logits").kernel.shape[2]
        assert np.all(logits.numpy()[:, :, old:] == 0)
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(wide(image, training=True))
        gradient = tape.gradient(loss, logits).numpy()
        assert np.abs(gradient[:, :, old:]).max() > 0


def test_every_trained_channel_of_the_widened_decoder_carries_the_same_values(tmp_path):
    """The final probability barely depends on the deepest layers of a random small model (its
    spread is about 0.001), so a weight left uncopied there (the context module's) did not show
    in it: each stage's trained channels, and the context module's output, are compared too."""
    import keras

    from portrait.training.widen import decoder_widths, widen_decoder

    image = np.random.default_rng(0).uniform(0, 255, (2, 96, 64, 3)).astype(np.float32)
    for stride, context, widths in [(16, "none", [20, 14, 10]), (32, "lraspp", [18, 16, 14, 8])]:
        model = keras.models.load_model(
            _trained_like(tmp_path / f"s{stride}.hdf5", output_stride=stride, context=context),
            compile=False)
        old = decoder_widths(model)
        wide = widen_decoder(model, widths)
        names = [f"decoder{stage}_conv_pw_relu" for stage in range(len(old))]
        names += ["context_gated"] * (context != "none")
        names.append("logits")

        def features(m):
            return keras.Model(m.inputs, [m.get_layer(n).output for n in names]).predict(image, verbose=0)

        for name, before, after in zip(names, features(model), features(wide)):
            assert before.std() > 1e-3, name  # the layer's values vary, so agreement means something
            np.testing.assert_allclose(after[..., :before.shape[-1]], before, atol=1e-4, err_msg=name)


def test_the_encoder_tail_joins_without_changing_the_prediction(tmp_path, caplog):
    """--tail: blocks 13 to 16 added back through a projection that starts at zero; with
    --decoder too, both at once. The projection gets a gradient, so training can use it."""
    import keras
    import tensorflow as tf

    from portrait.training.widen import decoder_widths, main

    image = np.random.default_rng(0).uniform(0, 255, (2, 96, 64, 3)).astype(np.float32)
    source = _trained_like(tmp_path / "s.hdf5")
    out = tmp_path / "grown.hdf5"
    with caplog.at_level(logging.INFO, logger="portrait.training.widen"):
        assert main([str(source), "--tail", "--backbone", "none", "--decoder", "20,14,10",
                     "--out", str(out)]) == 0
    assert (f"wrote {out}: decoder 12,8,6 -> 20,14,10 channels, the encoder's tail added "
            "(blocks 13 to 16), ") in caplog.text
    caplog.clear()
    alone = tmp_path / "tail-alone.hdf5"  # the log says what changed: not "12,8,6 -> 12,8,6"
    with caplog.at_level(logging.INFO, logger="portrait.training.widen"):
        assert main([str(source), "--tail", "--backbone", "none", "--out", str(alone)]) == 0
    wrote = [r.getMessage() for r in caplog.records if r.getMessage().startswith("wrote")]
    assert len(wrote) == 1 and wrote[0].startswith(
        f"wrote {alone}: the encoder's tail added (blocks 13 to 16), "), wrote
    grown = keras.models.load_model(out, compile=False)
    assert decoder_widths(grown) == [20, 14, 10]
    encoder = grown.get_layer("encoder")
    assert [o.shape[-1] for o in encoder.outputs][-1] == 112  # block_16_project: 320 x 0.35
    np.testing.assert_allclose(grown.predict(image, verbose=0), _predict(source, image), atol=1e-5)
    projection = grown.get_layer("context_tail").kernel
    assert np.all(projection.numpy() == 0)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(grown(image, training=True))
    assert np.abs(tape.gradient(loss, projection).numpy()).max() > 0


@pytest.mark.skipif(not BACKBONE.is_file(), reason="../shared/models (the MobileNetV2 backbone) not present")
def test_the_tail_starts_from_the_imagenet_backbone(tmp_path):
    import keras

    from portrait.training.model import build_unet
    from portrait.training.train import save_model
    from portrait.training.widen import main

    keras.utils.set_random_seed(3)
    model = build_unet((64, 64), decoder_filters=(16, 12, 8, 6), fixed_input=False)
    save_model(model, tmp_path / "a1.hdf5", 64)
    out = tmp_path / "tail.hdf5"
    assert main([str(tmp_path / "a1.hdf5"), "--tail", "--out", str(out)]) == 0
    reference = keras.applications.MobileNetV2(input_shape=(None, None, 3), include_top=False,
                                               weights=None)
    reference.load_weights(BACKBONE)
    encoder = keras.models.load_model(out, compile=False).get_layer("encoder")
    for name in ("block_14_expand", "block_16_project"):
        np.testing.assert_array_equal(encoder.get_layer(name).get_weights()[0],
                                      reference.get_layer(name).get_weights()[0])
    # What the model had before the tail stays its own, not the backbone's.
    np.testing.assert_array_equal(encoder.get_layer("Conv1").get_weights()[0],
                                  model.get_layer("encoder").get_layer("Conv1").get_weights()[0])


def _backbone_weights(path: Path, alpha: float = 0.35) -> Path:
    """MobileNetV2 encoder weights (include_top=False) as ``model.save_weights`` writes them."""
    import keras

    keras.applications.MobileNetV2(input_shape=(None, None, 3), alpha=alpha, include_top=False,
                                   weights=None).save_weights(path)
    return path


def test_widen_refusals_are_one_line_and_write_nothing(tmp_path, capsys):
    from conftest import constant_model

    from portrait.training.widen import main

    source = _trained_like(tmp_path / "s.hdf5")
    plain = constant_model(tmp_path / "plain.h5", 0.5)
    before = source.read_bytes()
    cases = [
        ([str(source), "--decoder", "20,14"], "the model has 3 decoder stages (12,8,6); got 2 widths"),
        ([str(source), "--decoder", "20,6,10"], "decoder stage 1 has 8 channels; its new width "
                                                "must be an even number at least as large, got 6"),
        ([str(source), "--decoder", "20,14,9"], "got 9"),
        ([plain, "--decoder", "20,14,10"], "does not say which short side it runs at"),
        ([str(source), "--decoder", "20,14,10", "--out", str(source)], "is the model itself"),
        ([str(tmp_path / "gone.hdf5"), "--decoder", "20,14,10"], "not found"),
        ([str(source)], "nothing to add: pass --decoder C1,C2,C3, --tail or both"),
        ([str(source), "--tail", "--backbone", str(tmp_path / "no.h5")], "backbone weights"),
        ([str(_trained_like(tmp_path / "s32.hdf5", output_stride=32)), "--tail", "--backbone", "none"],
         "the tail joins a stride-16 model without a context module; this one has 4 decoder stages"),
        # The widths it has already: the copy would be the model itself.
        ([str(source), "--decoder", "12,8,6"], "the model's decoder already has 12,8,6 channels: "
                                               "nothing to widen; pass wider --decoder widths or --tail"),
        # Weights of another network: an HDF5 weights file, but not of MobileNetV2 alpha 1.0.
        ([str(source), "--tail", "--backbone", str(_backbone_weights(tmp_path / "a035.weights.h5"))],
         f"backbone weights '{tmp_path / 'a035.weights.h5'}' do not fit MobileNetV2 alpha 1.0"),
    ]
    for args, message in cases:
        target = [] if "--out" in args else ["--out", str(tmp_path / "new.hdf5")]
        assert main([*args, *target]) == 2, args
        err = capsys.readouterr().err.strip().splitlines()
        assert message in err[-1] and "Traceback" not in "\n".join(err), err
    with pytest.raises(SystemExit) as exit_info:  # argparse's own exit, one usage line
        main([str(source), "--decoder", "a,b", "--out", str(tmp_path / "new.hdf5")])
    assert exit_info.value.code == 2
    assert "expected comma-separated channel counts such as 128,64,32, got 'a,b'" in capsys.readouterr().err
    assert not (tmp_path / "new.hdf5").exists()
    assert source.read_bytes() == before


def test_inputs_unwritable_outs_and_files_of_the_wrong_kind_are_refused_before_tensorflow_starts(tmp_path):
    """An --out that is an input, a folder or in a folder no file can be made in; a --backbone
    that is no weights file; a MODEL that is no Keras model or says a short side the app cannot
    run: each refused from the arguments and the files' headers, in one line, before TensorFlow
    starts (they were found after the model loaded, or not at all)."""
    import shutil
    import sys

    import h5py
    from conftest import assert_refused_before_tensorflow, constant_model

    from portrait.segment import SHORT_SIDE_ATTR

    model = Path(constant_model(tmp_path / "m1.hdf5", 0.7))
    with h5py.File(model, "a") as f:
        f.attrs[SHORT_SIDE_ATTR] = 64  # what train writes
    odd_side = tmp_path / "odd.hdf5"
    shutil.copy(model, odd_side)
    with h5py.File(odd_side, "a") as f:
        f.attrs[SHORT_SIDE_ATTR] = 100
    backbone = tmp_path / "bb2.weights.h5"
    with h5py.File(backbone, "w") as f:  # the groups of Keras 3's save_weights
        f.create_group("layers")
        f.create_group("vars")
    renamed = tmp_path / "bb3.h5"
    shutil.copy(backbone, renamed)
    empty = tmp_path / "empty.h5"
    with h5py.File(empty, "w") as f:
        f.create_dataset("kernel", data=np.zeros(3))
    text = tmp_path / "notamodel.hdf5"
    text.write_text("not a model")
    tflite, jpeg = tmp_path / "m.tflite", tmp_path / "photo.jpg"
    tflite.write_bytes(b"\x1c\x00\x00\x00TFL3")
    jpeg.write_bytes(b"\xff\xd8\xff\xe0")
    folder_out = tmp_path / "adir.hdf5"
    folder_out.mkdir()
    (tmp_path / "sub").mkdir()
    link, hard = tmp_path / "sub" / "link.hdf5", tmp_path / "sub" / "hard.hdf5"
    link.symlink_to(model)
    os.link(model, hard)
    before = {path: path.read_bytes() for path in (model, backbone)}
    new = tmp_path / "new.hdf5"
    expects = "--backbone expects MobileNetV2 alpha 1.0 weights (include_top=False)"
    cases = [
        ([model, "--tail", "--backbone", backbone, "--out", backbone],
         f"--out '{backbone}' is the --backbone weights file; choose a new file"),
        ([model, "--tail", "--backbone", backbone, "--out", tmp_path / "sub" / ".." / backbone.name],
         "is the --backbone weights file; choose a new file"),  # another spelling, the same file
        ([model, "--decoder", "20,14,10", "--out", tmp_path / "sub" / ".." / model.name],
         "is the model itself; choose a new file"),
        ([model, "--decoder", "20,14,10", "--out", link], f"--out '{link}' is the model itself"),
        ([model, "--decoder", "20,14,10", "--out", hard], f"--out '{hard}' is the model itself"),
        ([model, "--decoder", "20,14,10", "--out", folder_out],
         f"--out '{folder_out}' is a folder; give a file name, e.g. --out {folder_out / 'wide.hdf5'}"),
        ([model, "--tail", "--backbone", text, "--out", new],
         f"backbone weights '{text}' is not an HDF5 file; {expects}"),
        ([model, "--tail", "--backbone", model, "--out", new],
         f"'{model}' is a whole Keras model, not backbone weights; {expects}"),
        ([model, "--tail", "--backbone", renamed, "--out", new],
         f"backbone weights '{renamed}' are Keras 3 weights, which Keras reads only from a file "
         "named *.weights.h5; rename it"),
        ([model, "--tail", "--backbone", empty, "--out", new], f"'{empty}' holds no layer weights; {expects}"),
        ([text, "--decoder", "20,14,10", "--out", new], f"cannot read model '{text}': not a valid HDF5 file"),
        ([tflite, "--decoder", "20,14,10", "--out", new],
         f"model '{tflite}' is not a Keras model file (.tflite); widen a .hdf5 model that "
         "portrait.training.train wrote"),
        ([jpeg, "--decoder", "20,14,10", "--out", new], f"model '{jpeg}' is not a Keras model file (.jpg)"),
        ([odd_side, "--decoder", "20,14,10", "--out", new],
         f"'{odd_side}' says it runs at a short side of 100 px, not a multiple of 32"),
    ]
    if sys.platform.startswith("linux"):  # root may write anywhere by os.access, but not here
        cases.append(([model, "--decoder", "20,14,10", "--out", "/proc/wide.hdf5"],
                      "cannot write model '/proc/wide.hdf5': folder '/proc' is not writable"))
    assert_refused_before_tensorflow("portrait.training.widen", cases)
    assert {path: path.read_bytes() for path in before} == before
    assert not new.exists() and not any(folder_out.iterdir())


def test_a_model_already_at_out_is_named_before_the_save_and_kept_beside_the_new_one(
        tmp_path, caplog):
    """--out names a model that is there (an earlier widening, its export beside it): a
    warning says, before the save, that it is replaced, where it is kept and that its
    export goes stale; the widened model is written at --out and the earlier one, byte for
    byte, at earlier-1 (it was overwritten unsaid)."""
    import keras
    from conftest import constant_model

    from portrait.training.widen import decoder_widths, main

    source = _trained_like(tmp_path / "s.hdf5")
    out = tmp_path / "wide.hdf5"
    earlier = Path(constant_model(out, 0.3)).read_bytes()
    (tmp_path / "wide.tflite").write_bytes(b"its export")
    kept = tmp_path / "wide.earlier-1.hdf5"
    with caplog.at_level(logging.INFO, logger="portrait"):
        assert main([str(source), "--decoder", "20,14,10", "--out", str(out)]) == 0
    messages = [r.getMessage() for r in caplog.records]
    warning = (f"--out '{out}' exists: replacing it with this run's model when the run ends; the "
               f"earlier model is kept beside it as '{kept}'; its export "
               f"'{tmp_path / 'wide.tflite'}' will be stale until you export the new model")
    assert [r.levelname for r in caplog.records if r.getMessage() == warning] == ["WARNING"]
    assert messages.index(warning) < next(i for i, m in enumerate(messages)
                                          if m.startswith("wrote "))
    assert f"the model that was at {out} before is kept as {kept}" in messages
    assert kept.read_bytes() == earlier
    assert decoder_widths(keras.models.load_model(out, compile=False)) == [20, 14, 10]


@pytest.mark.parametrize("decoder, said", [
    ("12,8,6", "the model's decoder already has 12,8,6 channels: nothing to widen"),
    ("20,6,10", "decoder stage 1 has 8 channels; its new width must be an even number")])
def test_a_widening_refused_after_the_model_loads_says_nothing_of_replacing_out(tmp_path, caplog,
                                                                                capsys, decoder,
                                                                                said):
    """Widths refused only once the model loads (those it has already, or narrower ones): the
    model at --out is not said to be replaced (no warning), stays byte for byte, and nothing
    is kept beside it."""
    from conftest import constant_model

    from portrait.training.widen import main

    source = _trained_like(tmp_path / "s.hdf5")
    out = tmp_path / "wide.hdf5"
    earlier = Path(constant_model(out, 0.3)).read_bytes()
    with caplog.at_level(logging.INFO, logger="portrait"):
        assert main([str(source), "--decoder", decoder, "--out", str(out)]) == 2
    assert said in capsys.readouterr().err
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING
                and "replacing" in r.getMessage()], caplog.text
    assert out.read_bytes() == earlier
    assert sorted(p.name for p in tmp_path.glob("wide*")) == ["wide.hdf5"]


def test_the_new_channels_are_the_seeds_own(tmp_path):
    """--seed sets the new channels' random weights: the same seed writes the same model, another
    seed other new channels (the trained ones stay the model's own either way)."""
    import keras

    from portrait.training.widen import main

    source = _trained_like(tmp_path / "s.hdf5")
    kernels = []
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        out = tmp_path / f"{name}.hdf5"
        assert main([str(source), "--decoder", "14,10,8", "--seed", str(seed), "--out", str(out)]) == 0
        kernels.append(keras.models.load_model(out, compile=False).get_layer("decoder0_conv_pw")
                       .kernel.numpy())
    trained = keras.models.load_model(source, compile=False).get_layer("decoder0_conv_pw").kernel.shape[-1]
    np.testing.assert_array_equal(kernels[0], kernels[1])
    np.testing.assert_array_equal(kernels[0][..., :trained], kernels[2][..., :trained])
    assert np.abs(kernels[0][..., trained:] - kernels[2][..., trained:]).max() > 1e-3
