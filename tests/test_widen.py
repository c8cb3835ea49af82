"""portrait.training.widen: a wider decoder that predicts what the trained model does."""

from pathlib import Path

import numpy as np
import pytest


def _trained_like(path: Path, seed: int = 1, output_stride: int = 16, context: str = "none") -> Path:
    """A small MobileNetV2-UNet whose batch-norm parameters and statistics are random (as after
    training, not as initialised; kernels are random anyway), so a misplaced channel shows."""
    import keras

    from portrait.training.model import build_unet
    from portrait.training.train import save_model

    keras.utils.set_random_seed(seed)
    model = build_unet((64, 64), alpha=0.35, output_stride=output_stride,
                       decoder_filters=(16, 12, 8, 6), fixed_input=False, context=context)
    rng = np.random.default_rng(seed)
    ranges = {"gamma": (0.5, 1.5), "beta": (-0.3, 0.3), "moving_mean": (-0.3, 0.3),
              "moving_variance": (0.5, 2.0)}
    for variable in model.weights:
        kind = variable.path.rsplit("/", 1)[-1]
        if kind in ranges:
            variable.assign(rng.uniform(*ranges[kind], variable.shape).astype(np.float32))
    save_model(model, path, 64)
    return path


def _predict(path: Path, image: np.ndarray) -> np.ndarray:
    import keras

    return keras.models.load_model(path, compile=False).predict(image, verbose=0)


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
