"""Segmenters: every model kind loads and maps a frame to a probability that covers the frame.

The tiny Keras models here have known weights, so their output is known exactly: a pixel's
person logit is 8/3 · (r + g + b) / 255 − 4, i.e. sigmoid(+4) ≈ 0.982 on white and
sigmoid(−4) ≈ 0.018 on black. Test frames are white on the left half and black on the right.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import cv2
import h5py
import keras
import numpy as np
import pytest
from keras import layers

from portrait import segment
from portrait.segment import keras_compat, tflite_utils
from portrait.errors import DeviceError, ModelError
from portrait.segment.model_io import OutputReader, Placement, Preprocessor, place_frame
from portrait.options import SegmentOptions
from portrait.segment import Segmenter, create_segmenter, resolve_model_path

SHARED = Path(__file__).parents[2] / "shared"
SELFIE = SHARED / "models" / "selfie_segmentation.tflite"
EG1800 = SHARED / "data" / "eg1800"
needs_shared = pytest.mark.skipif(not SELFIE.is_file(), reason="../shared/models is absent")

WHITE = 1.0 / (1.0 + np.exp(-4.0))  # 0.982
BLACK = 1.0 / (1.0 + np.exp(4.0))  # 0.018


# ---------------------------------------------------------------- fixtures


def half_white(width: int = 640, height: int = 360) -> np.ndarray:
    frame = np.zeros((height, width, 3), np.uint8)
    frame[:, : width // 2] = 255
    return frame


def tiny_model(
    size=(None, None), head: str = "sigmoid", rescale: bool = True, extra=None
) -> keras.Model:
    """A model with known weights: brightness → person logit 8/3·mean·3 − 4 (see module doc).

    head: ``sigmoid``, ``logits`` (no activation), ``softmax`` (2 channels), ``softmax_logits``
    (2 channels, no activation) or ``five`` (a 5-channel output, not a mask).
    """
    inputs = keras.Input((size[1], size[0], 3), name="image")
    x = layers.Rescaling(1.0 / 255.0, name="rescale")(inputs) if rescale else inputs
    x = layers.BatchNormalization(name="bn")(x)  # fresh statistics: x / sqrt(1 + 1e-3)
    if extra is not None:
        x = extra(x)
    # A depthwise layer, so the Keras 2 fixture carries DepthwiseConv2D(groups=1).
    depthwise = layers.DepthwiseConv2D(3, padding="same", name="dw")
    x = depthwise(x)
    channels = {"sigmoid": 1, "logits": 1, "softmax": 2, "softmax_logits": 2, "five": 5}[head]
    activation = {"sigmoid": "sigmoid", "softmax": "softmax"}.get(head, "linear")
    conv = layers.Conv2D(channels, 1, activation=activation, name="head")
    outputs = conv(x)
    model = keras.Model(inputs, outputs, name=f"tiny_{head}")
    kernel = np.zeros((3, 3, 3, 1), np.float32)
    kernel[1, 1, :, 0] = 1.0  # identity
    depthwise.set_weights([kernel, np.zeros(3, np.float32)])
    weight, bias = np.full((1, 1, 3, channels), 8.0 / 3.0, np.float32), np.full(channels, -4.0, np.float32)
    if channels == 2:  # person logit in channel 1, 0 in channel 0: softmax gives the same values
        weight[..., 0] = 0.0
        bias[0] = 0.0
    conv.set_weights([weight, bias])
    return model


def keras2ify(config: dict) -> dict:
    """Rewrite a Keras 3 HDF5 model config the way tf.keras 2.x wrote it."""

    def strip(value):
        if isinstance(value, dict):
            if value.get("class_name") == "DTypePolicy":
                return value["config"]["name"]
            if value.get("class_name") == "__keras_tensor__":
                return value
            return {k: strip(v) for k, v in value.items() if k not in ("module", "registered_name")}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    config = strip(config)
    if config["class_name"] == "Sequential":
        # Keras 2 kept no InputLayer: the first layer carried the batch input shape.
        sequence = config["config"]["layers"]
        first_input = sequence.pop(0)
        sequence[0]["config"]["batch_input_shape"] = first_input["config"]["batch_shape"]
        for layer in sequence:
            if layer["class_name"] == "DepthwiseConv2D":
                layer["config"]["groups"] = 1
        return config
    for layer in config["config"]["layers"]:
        layer_config = layer["config"]
        if layer["class_name"] == "InputLayer":
            layer_config["batch_input_shape"] = layer_config.pop("batch_shape")
            layer_config.pop("optional", None)
        if layer["class_name"] == "DepthwiseConv2D":
            layer_config["groups"] = 1  # what Keras 3 rejects
        if layer["class_name"] == "BatchNormalization":
            layer_config["axis"] = [3]  # tf.keras 2 saved the built axis as a list
            for key in ("synchronized", "renorm", "renorm_clipping", "renorm_momentum"):
                layer_config.pop(key, None)
        nodes = []
        for node in layer["inbound_nodes"]:
            args = node["args"]
            tensors = args[0] if isinstance(args[0], list) else args
            nodes.append([[*t["config"]["keras_history"], {}] for t in tensors])
        layer["inbound_nodes"] = nodes
    for key in ("input_layers", "output_layers"):
        value = config["config"][key]
        if value and not isinstance(value[0], list):
            config["config"][key] = [value]
    return config


def save_keras2(model: keras.Model, path: Path) -> Path:
    model.save(path)
    with h5py.File(path, "r+") as f:
        f.attrs["model_config"] = json.dumps(keras2ify(json.loads(f.attrs["model_config"])))
        f.attrs["keras_version"] = "2.12.0"
        f.attrs["backend"] = "tensorflow"
        f["model_weights"].attrs["keras_version"] = "2.12.0"
    return path


@pytest.fixture(autouse=True)
def cache_dir(tmp_path_factory, monkeypatch):
    """Every test converts into one temporary cache, never the user's."""
    path = tmp_path_factory.getbasetemp() / "portrait-cache"
    monkeypatch.setenv("PORTRAIT_CACHE_DIR", str(path))
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("models")
    paths = {}
    for head in ("sigmoid", "logits", "softmax", "softmax_logits", "five"):
        paths[head] = folder / f"tiny_{head}.hdf5"
        tiny_model(head=head).save(paths[head])
    paths["fixed512"] = folder / "fixed512.h5"
    tiny_model(size=(512, 512)).save(paths["fixed512"])
    paths["keras"] = folder / "tiny.keras"
    tiny_model().save(paths["keras"])
    paths["keras2"] = save_keras2(tiny_model(), folder / "keras2.hdf5")
    functional = tiny_model(size=(128, 96))
    sequential = keras.Sequential([keras.Input((96, 128, 3))] + functional.layers[1:], name="tiny_sequential")
    paths["keras2_sequential"] = save_keras2(sequential, folder / "keras2_sequential.hdf5")
    paths["lambda"] = folder / "lambda.h5"
    tiny_model(extra=layers.Lambda(lambda t: t * 1.0, name="scale")).save(paths["lambda"])
    paths["lambda_keras"] = folder / "lambda.keras"
    tiny_model(extra=layers.Lambda(lambda t: t * 1.0, name="scale")).save(paths["lambda_keras"])
    # A plain .tflite of a model that rescales inside: unmarked, and marked ``raw``.
    content = tflite_utils.convert_keras_to_tflite(tiny_model(), (96, 64))
    paths["tflite"] = folder / "tiny.tflite"
    paths["tflite"].write_bytes(content)
    paths["tflite_raw"] = folder / "tiny_raw.tflite"
    paths["tflite_raw"].write_bytes(tflite_utils.mark_tflite_input_norm(content, "raw"))
    return paths


def check_halves(prob: np.ndarray, expected_shape) -> None:
    """The probability has the expected shape, is in [0, 1], and reads white left, black right."""
    assert prob.dtype == np.float32
    assert prob.shape == expected_shape
    assert 0.0 <= prob.min() and prob.max() <= 1.0
    width = prob.shape[1]
    np.testing.assert_allclose(prob[:, : width // 2 - 2], WHITE, atol=2e-3)
    np.testing.assert_allclose(prob[:, width // 2 + 2:], BLACK, atol=2e-3)


# ---------------------------------------------------------------- geometry and pixels


def test_place_frame_letterbox_centres_and_keeps_aspect():
    placement = place_frame((640, 360), (512, 512), letterbox=True)
    assert (placement.x, placement.y, placement.width, placement.height) == (0, 112, 512, 288)
    assert placement.output_window((256, 256)) == (slice(56, 200), slice(0, 256))
    stretched = place_frame((640, 360), (512, 512), letterbox=False)
    assert (stretched.x, stretched.y, stretched.width, stretched.height) == (0, 0, 512, 512)


def test_preprocessor_scales_converts_to_rgb_and_pads():
    frame = np.zeros((20, 40, 3), np.uint8)
    frame[..., 0], frame[..., 1], frame[..., 2] = 10, 100, 250  # B, G, R
    expected = {"raw": [250, 100, 10], "unit": [250 / 255, 100 / 255, 10 / 255],
                "symmetric": [250 / 127.5 - 1, 100 / 127.5 - 1, 10 / 127.5 - 1]}
    for norm, rgb in expected.items():
        dst = np.full((1, 32, 32, 3), 7.0, np.float32)
        placement = Preprocessor((32, 32), norm, letterbox=True)(frame, dst)
        assert (placement.y, placement.height) == (8, 16)
        np.testing.assert_allclose(dst[0, 8:24], np.broadcast_to(rgb, (16, 32, 3)), rtol=1e-6)
        pad = 0.0 if norm != "symmetric" else -1.0
        assert np.all(dst[0, :8] == pad) and np.all(dst[0, 24:] == pad)


def test_place_frame_and_its_output_window_on_a_model_that_is_not_square():
    """A wide model (512x256) letterboxes a tall frame left and right, a tall one (256x512) a
    wide frame above and below; the output window scales x by widths and y by heights."""
    wide = place_frame((300, 400), (512, 256), letterbox=True)
    assert (wide.x, wide.y, wide.width, wide.height) == (160, 0, 192, 256)
    assert wide.output_window((256, 128)) == (slice(0, 128), slice(80, 176))
    tall = place_frame((400, 300), (256, 512), letterbox=True)
    assert (tall.x, tall.y, tall.width, tall.height) == (0, 160, 256, 192)
    assert tall.output_window((128, 256)) == (slice(80, 176), slice(0, 128))


def test_preprocessor_pads_every_side_on_every_frame():
    """The runtime reuses its input buffer: the padding is written on each frame, left and right
    of a tall frame and above and below a wide one, wherever an earlier frame's pixels were."""
    preprocess = Preprocessor((32, 32), "symmetric", letterbox=True)
    dst = np.full((1, 32, 32, 3), 7.0, np.float32)
    tall = preprocess(np.full((40, 20, 3), 255, np.uint8), dst)
    assert (tall.x, tall.width) == (8, 16)
    assert np.all(dst[0, :, :8] == -1.0) and np.all(dst[0, :, 24:] == -1.0)
    np.testing.assert_allclose(dst[0, :, 8:24], 1.0)
    dst[0, :, :8] = dst[0, :, 24:] = 7.0  # what a runtime may leave there between frames
    preprocess(np.full((40, 20, 3), 255, np.uint8), dst)
    assert np.all(dst[0, :, :8] == -1.0) and np.all(dst[0, :, 24:] == -1.0)
    wide = preprocess(np.full((20, 40, 3), 255, np.uint8), dst)
    assert (wide.y, wide.height) == (8, 16)
    assert np.all(dst[0, :8] == -1.0) and np.all(dst[0, 24:] == -1.0)  # the tall frame's pixels
    np.testing.assert_allclose(dst[0, 8:24], 1.0)

@pytest.mark.parametrize("frame_size", [(1280, 720), (1920, 1080), (1280, 640), (300, 200), (100, 80)])
@pytest.mark.parametrize("letterbox", [False, True])
def test_preprocessor_resize_matches_a_single_area_resize(frame_size, letterbox):
    width, height = frame_size
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    frame = np.dstack([x * 255 / width, y * 255 / height, 128 + 100 * np.sin(x / 37 + y / 53)]).astype(np.uint8)
    cv2.circle(frame, (width // 2, height // 2), height // 3, (20, 240, 60), -1)
    preprocess = Preprocessor((256, 256), "raw", letterbox)
    dst = np.zeros((1, 256, 256, 3), np.float32)
    p = preprocess(frame, dst)
    shrinking = p.width <= width and p.height <= height
    reference = cv2.resize(frame, (p.width, p.height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
    got = dst[0, p.y: p.y + p.height, p.x: p.x + p.width]
    assert np.abs(got - reference[..., ::-1].astype(np.float32)).mean() < 1.5


def test_preprocessor_follows_frame_size_changes_and_rejects_bad_frames():
    preprocess = Preprocessor((32, 32), "raw", letterbox=True)
    dst = np.zeros((1, 32, 32, 3), np.float32)
    assert preprocess(np.zeros((20, 40, 3), np.uint8), dst).height == 16
    assert preprocess(np.zeros((40, 20, 3), np.uint8), dst).width == 16
    with pytest.raises(ValueError, match=r"unexpected frame shape: \(20, 40\) != \(H, W, 3\)"):
        preprocess(np.zeros((20, 40), np.uint8), dst)
    with pytest.raises(ValueError, match="unexpected frame dtype: float32 != uint8"):
        preprocess(np.zeros((20, 40, 3), np.float32), dst)
    for empty in ((0, 40, 3), (20, 0, 3)):  # either side alone empties it
        with pytest.raises(ValueError,
                           match=rf"unexpected empty frame: \({empty[0]}, {empty[1]}, 3\)"):
            preprocess(np.zeros(empty, np.uint8), dst)


def test_output_reader_softmax_logits_and_bad_shapes():
    full = Placement((4, 4), 0, 0, 4, 4)
    logits = np.full((1, 4, 4, 1), 4.0, np.float32)
    reader = OutputReader(logits.shape, None)
    np.testing.assert_allclose(reader(logits, full), WHITE, rtol=1e-6)
    assert reader.activation == "logits"  # latched after the first out-of-range output
    np.testing.assert_allclose(reader(np.full((1, 4, 4, 1), 0.5, np.float32), full), 0.6225, atol=1e-4)

    softmax = np.stack([np.full((4, 4), 0.3), np.full((4, 4), 0.7)], -1)[None].astype(np.float32)
    np.testing.assert_allclose(OutputReader(softmax.shape, "softmax")(softmax, full), 0.7, rtol=1e-6)
    two_logits = np.stack([np.full((4, 4), -2.0), np.full((4, 4), 2.0)], -1)[None].astype(np.float32)
    np.testing.assert_allclose(OutputReader(two_logits.shape, None)(two_logits, full), WHITE, rtol=1e-6)

    with pytest.raises(ModelError, match=r"model output shape \(1, 256, 256, 5\) is not a mask: "
                                         r"expected \(1, H, W, 1\) or \(1, H, W, 2\)"):
        OutputReader((1, 256, 256, 5))
    with pytest.raises(ModelError, match="is not a mask"):
        OutputReader((1, 10))


# ---------------------------------------------------------------- model kinds


def test_keras_hdf5_converts_to_cached_tflite(models, cache_dir, monkeypatch):
    options = SegmentOptions(model=str(models["sigmoid"]), device="cpu")
    frame = half_white()
    with create_segmenter(options) as first:
        assert first.cache_path is not None and first.cache_path.is_file()
        assert cache_dir in first.cache_path.parents  # the user's cache folder, not the repo
        assert "TFLite (CPU" in first.description and "RGB 0..255 (Rescaling layer" in first.description
        assert first.input_norm == "raw" and first.input_size == (256, 256)
        assert first.description.endswith(", --device cpu")  # why TFLite runs it
        check_halves(first.segment(frame), (256, 256))
        cached, mtime = first.cache_path, first.cache_path.stat().st_mtime_ns
    assert not [p for p in cached.parent.iterdir() if p.suffix != ".tflite"]  # no temporary files

    def no_keras(*args, **kwargs):
        raise AssertionError("a cache hit must not load the Keras model")

    with monkeypatch.context() as patch:
        patch.setattr(keras_compat, "load_keras_model", no_keras)
        second = create_segmenter(options)  # a second start reuses the conversion
    with second:
        assert second.cache_hit and second.cache_path == cached
        assert "(cached)" in second.description
        prob = second.segment(frame)
        check_halves(prob, (256, 256))
    assert cached.stat().st_mtime_ns == mtime
    assert cv2.resize(prob, (640, 360)).shape == (360, 640)
    # A different input size is a different cache entry.
    with create_segmenter(SegmentOptions(model=str(models["sigmoid"]), input_size=(128, 96))) as other:
        assert other.cache_path != cached and other.input_size == (128, 96)
        check_halves(other.segment(frame), (96, 128))


def test_a_model_file_saved_again_is_converted_again(tmp_path):
    """The cache is keyed by the file's bytes, not its name: a model retrained and saved over
    the same file runs with its new weights, not the conversion of the old ones."""
    path = tmp_path / "retrained.hdf5"
    frame = np.random.default_rng(2).integers(0, 256, (48, 64, 3), np.uint8)
    lopsided_model(1, (48, 64, 3)).save(path)
    with create_segmenter(SegmentOptions(model=str(path), device="cpu")) as first:
        before = first.segment(frame).copy()
    lopsided_model(2, (48, 64, 3)).save(path)
    with create_segmenter(SegmentOptions(model=str(path), device="cpu")) as second:
        assert not second.cache_hit and "converted now" in second.description
        after = second.segment(frame).copy()
    keras_options = SegmentOptions(model=str(path), backend="keras", device="cpu")
    with create_segmenter(keras_options) as keras_run:
        np.testing.assert_allclose(after, keras_run.segment(frame), atol=1e-5)
    assert np.abs(after - before).max() > 0.05  # the two models differ


def test_a_conversion_is_cached_by_the_files_bytes_the_size_and_the_converter(monkeypatch):
    """A newer TensorFlow converts anew (its converter may write another graph); the installed
    one is asked, as no other can run here."""
    key = tflite_utils.cache_key("ab" * 32, (256, 256))
    assert key == tflite_utils.cache_key("ab" * 32, (256, 256))
    assert key != tflite_utils.cache_key("cd" * 32, (256, 256))
    assert key != tflite_utils.cache_key("ab" * 32, (256, 192))
    monkeypatch.setattr(tflite_utils, "converter_version", lambda: "99.0.0")
    assert key != tflite_utils.cache_key("ab" * 32, (256, 256))

def test_unwritable_cache_converts_in_memory(models, tmp_path, monkeypatch):
    not_a_folder = tmp_path / "file"
    not_a_folder.write_bytes(b"")
    monkeypatch.setenv("PORTRAIT_CACHE_DIR", str(not_a_folder))
    with create_segmenter(SegmentOptions(model=str(models["sigmoid"]), input_size=(64, 32))) as segmenter:
        assert segmenter.cache_path is None and "not cached" in segmenter.description
        check_halves(segmenter.segment(half_white(128, 64)), (32, 64))


def test_an_atomic_write_that_fails_leaves_no_temporary_file(tmp_path):
    """A cache entry that cannot take its place (here a folder holds its name) raises, and
    the half-made temporary file beside it is removed, not left to fill the cache folder."""
    (tmp_path / "entry.tflite").mkdir()
    with pytest.raises(OSError):
        tflite_utils.write_atomic(tmp_path / "entry.tflite", b"model bytes")
    assert [p.name for p in tmp_path.iterdir()] == ["entry.tflite"]
    tflite_utils.write_atomic(tmp_path / "other.tflite", b"model bytes", mode=0o640)
    assert (tmp_path / "other.tflite").read_bytes() == b"model bytes"
    assert (tmp_path / "other.tflite").stat().st_mode & 0o777 == 0o640


def test_cache_folder_follows_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("PORTRAIT_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert tflite_utils.cache_dir() == tmp_path / "portrait"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert tflite_utils.cache_dir() == Path.home() / ".cache" / "portrait"
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("PORTRAIT_CACHE_DIR", "~/conversions")  # as a config line leaves it
    assert tflite_utils.cache_dir() == tmp_path / "conversions"


def test_dot_keras_model_loads(models):
    with create_segmenter(SegmentOptions(model=str(models["keras"]), input_size=(128, 96))) as segmenter:
        assert segmenter.input_norm == "raw"
        check_halves(segmenter.segment(half_white()), (96, 128))


def test_xla_compiled_keras_segmenter(models):
    # The GPU path compiles with XLA; XLA also runs on the CPU, so the same code is tested here.
    segmenter = segment.KerasSegmenter(tiny_model(), "raw", (128, 96), jit_compile=True)
    assert segmenter.jit_compile and "XLA" in segmenter.description
    check_halves(segmenter.segment(half_white()), (96, 128))


def test_keras_backend_runs_tf_function_and_matches_tflite(models):
    frame = half_white()
    with create_segmenter(SegmentOptions(model=str(models["sigmoid"]), backend="keras")) as keras_run:
        assert isinstance(keras_run, segment.KerasSegmenter)
        assert "tf.function" in keras_run.description
        prob = keras_run.segment(frame)
    with create_segmenter(SegmentOptions(model=str(models["sigmoid"]))) as tflite_run:
        np.testing.assert_allclose(tflite_run.segment(frame), prob, atol=1e-5)
    check_halves(prob, (256, 256))


@pytest.mark.parametrize("head", ["logits", "softmax", "softmax_logits"])
def test_logits_and_two_channel_outputs_give_person_probability(models, head):
    with create_segmenter(SegmentOptions(model=str(models[head]), input_size=(128, 96))) as segmenter:
        check_halves(segmenter.segment(half_white()), (96, 128))


def test_letterbox_leaves_a_model_run_at_the_frames_aspect_as_it_is(caplog):
    """--letterbox pads into a fixed input; the shipped model runs at each frame's aspect
    (352x192 for 16:9), which it keeps, with a warning (it ran square at 256x256 before)."""
    options = SegmentOptions(model="weights/unet_live.hdf5", letterbox=True, frame_size=(1280, 720))
    with caplog.at_level(logging.WARNING, logger="portrait.segment"):
        with create_segmenter(options) as segmenter:
            assert segmenter.input_size == (288, 160)
    assert any("--letterbox is ignored: this model runs at each frame's own aspect ratio"
               in r.getMessage() for r in caplog.records)


def test_fixed_512_model_letterboxed_covers_the_frame(models):
    frame = half_white(640, 360)
    options = SegmentOptions(model=str(models["fixed512"]), input_size=(128, 128), letterbox=True)
    with create_segmenter(options) as segmenter:
        assert segmenter.input_size == (512, 512)  # the model's fixed size wins
        prob = segmenter.segment(frame)
        check_halves(prob, (288, 512))  # padding removed: 640x360 fits 512x288
        # An all-white frame stays white everywhere: no black padding left in the output.
        assert segmenter.segment(np.full((360, 640, 3), 255, np.uint8)).min() > 0.98
        # A new frame size mid-stream re-plans the letterbox.
        check_halves(segmenter.segment(half_white(200, 400)), (512, 256))
    with create_segmenter(SegmentOptions(model=str(models["fixed512"]))) as stretched:
        check_halves(stretched.segment(frame), (512, 512))


def test_plain_tflite_uses_its_input_norm_mark(models):
    assert tflite_utils.read_tflite_input_norm(models["tflite"]) is None
    assert tflite_utils.read_tflite_input_norm(models["tflite_raw"]) == "raw"
    frame = half_white(192, 128)
    with create_segmenter(SegmentOptions(model=str(models["tflite_raw"]))) as marked:
        assert marked.input_size == (96, 64) and marked.input_norm == "raw"
        check_halves(marked.segment(frame), (64, 96))
    # Unmarked, the file gets the x/255 default, which this model (rescaling inside) misreads...
    with create_segmenter(SegmentOptions(model=str(models["tflite"]))) as unmarked:
        assert unmarked.input_norm == "unit"
        assert unmarked.segment(frame)[:, :40].max() < 0.05
    # ...until the user says how it scales.
    with create_segmenter(SegmentOptions(model=str(models["tflite"]), input_norm="raw")) as told:
        check_halves(told.segment(frame), (64, 96))
    # What the user says wins over the mark, too (here wrongly: the model rescales inside).
    unit = SegmentOptions(model=str(models["tflite_raw"]), input_norm="unit")
    with create_segmenter(unit) as over:
        assert over.input_norm == "unit" and "RGB x/255 (--input-norm unit)" in over.description
        assert over.segment(frame)[:, :40].max() < 0.05


def test_a_dynamic_tflite_from_elsewhere_runs_at_the_input_size_asked_for(tmp_path, cache_dir):
    """A .tflite with a dynamic input and no record of our export is resized in the interpreter
    to --input-size, width and height as given; only our own exports are fixed at each size
    through the cache (exported.create_tflite), so it leaves no entry there."""
    path = tmp_path / "from_elsewhere.tflite"
    path.write_bytes(tflite_utils.convert_keras_to_tflite(tiny_model(), None))
    assert tflite_utils.input_shape(path)[1] == [1, -1, -1, 3]
    options = SegmentOptions(model=str(path), input_norm="raw", input_size=(96, 64))
    with create_segmenter(options) as segmenter:
        assert segmenter.input_size == (96, 64) and "input 96x64" in segmenter.description
        check_halves(segmenter.segment(half_white(192, 128)), (64, 96))
    assert not list(cache_dir.glob("tflite/from_elsewhere-*"))


def concrete_tflite(path: Path, spec: list, graph) -> Path:
    """``graph`` (tensors in, tensors out) converted by TFLiteConverter for an input of shape
    ``spec`` (None: any size), written to ``path``."""
    import tensorflow as tf

    function = tf.function(graph, input_signature=[tf.TensorSpec(spec, tf.float32)])
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [function.get_concrete_function()], function)
    path.write_bytes(converter.convert())
    return path


def test_a_tflite_that_cannot_be_set_up_at_its_size_says_so_not_that_it_is_corrupt(tmp_path):
    """A model that loads but cannot be made ready at the size it is run at was called 'the file
    may be truncated or corrupt, re-download or re-export it'; the message now says the size.
    Its own size or, for a dynamic input, the size asked for (the default when none is)."""
    import tensorflow as tf

    def mean(image):
        return tf.reduce_mean(image, axis=-1, keepdims=True)

    # Any height and width, in the file; but it adds a 32x32 map, so it runs at 32x32 only.
    one_size = concrete_tflite(tmp_path / "one_size.tflite", [1, None, None, 3],
                               lambda image: tf.sigmoid(mean(image) + tf.ones((1, 32, 32, 1))))
    assert tflite_utils.input_shape(one_size)[1] == [1, -1, -1, 3]
    options = SegmentOptions(model=str(one_size), input_norm="raw", input_size=(32, 32))
    with create_segmenter(options) as segmenter:
        assert segmenter.input_size == (32, 32)
    for input_size, shown in (((64, 32), "64x32"), (None, "256x256")):
        options = SegmentOptions(model=str(one_size), input_norm="raw", input_size=input_size)
        with pytest.raises(ModelError) as error:
            create_segmenter(options)
        message = str(error.value)
        assert message.startswith(f"TFLite model '{one_size}' does not run at {shown}: "), message
        assert message.endswith("; its input size is not fixed, so give --input-size WxH at a "
                                "size it was made for"), message
        assert "corrupt" not in message and "\n" not in message

    # A fixed 32x32 with any batch, that pairs its frames with a padding one: one frame at a
    # time leaves an odd count, which it cannot pair.
    def pairs(image):
        frames = tf.concat([mean(image), tf.zeros_like(mean(image)),
                            tf.zeros_like(mean(image))[:1]], 0)
        return tf.reshape(frames, [-1, 2, 32, 32, 1])[:, 0]

    any_batch = concrete_tflite(tmp_path / "pairs.tflite", [None, 32, 32, 3], pairs)
    assert tflite_utils.input_shape(any_batch)[1] == [-1, 32, 32, 3]
    with pytest.raises(ModelError) as error:
        create_segmenter(SegmentOptions(model=str(any_batch), input_norm="raw"))
    message = str(error.value)
    assert message.startswith(f"TFLite model '{any_batch}' cannot be prepared to run one frame "
                              "at its input size 32x32: "), message
    assert "corrupt" not in message and "\n" not in message


def test_an_export_the_size_fixing_cannot_rewrite_runs_unfixed_with_one_warning(tmp_path, caplog):
    """Our export's record on a model with a branch (an IF op: three subgraphs), which fixing
    the input size does not rewrite (fixed_size takes one subgraph): the app says so in one
    warning and runs it resized in the interpreter, slower but right."""
    import tensorflow as tf

    def graph(image):
        mean = tf.reduce_mean(image, -1, keepdims=True)
        return tf.cond(tf.reduce_max(image) > 1000.0, lambda: tf.zeros_like(mean),
                       lambda: tf.sigmoid(mean / 64 - 2))

    path = concrete_tflite(tmp_path / "branch.tflite", [1, None, None, 3], graph)
    info = {"source": "gone.hdf5", "source_sha256": "0" * 64, "format": tflite_utils.EXPORT_FORMAT}
    path.write_bytes(tflite_utils.mark_export_info(path.read_bytes(), info))
    with caplog.at_level(logging.WARNING):
        options = SegmentOptions(model=str(path), input_norm="raw", input_size=(96, 64))
        with create_segmenter(options) as segmenter:
            assert segmenter.input_size == (96, 64)
            prob = segmenter.segment(half_white(192, 128))
    [line] = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert line.startswith(f"running {path} at 96x64 unfixed (slower): 3 subgraphs"), line
    assert prob.shape == (64, 96)
    np.testing.assert_allclose(prob[:, :40], 1 / (1 + np.exp(-(255 / 64 - 2))), atol=1e-4)
    np.testing.assert_allclose(prob[:, 56:], 1 / (1 + np.exp(2)), atol=1e-4)


def test_a_tflite_with_a_fixed_size_and_any_batch_runs_at_its_own_size(tmp_path):
    """TFLiteConverter.from_keras_model keeps the batch dynamic, (-1, 48, 64, 3): the app ran such
    a model at 256x256, as if its height and width were dynamic, so one that reshapes failed to
    run and the others ran at a size they were not made for."""
    import tensorflow as tf

    inputs = keras.Input((48, 64, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(1, 1, activation="sigmoid")(x)
    reshaping = keras.Model(inputs, layers.Reshape((48, 64, 1))(layers.Reshape((48 * 64,))(x)))
    frame = half_white(128, 96)
    for name, model in (("tiny", tiny_model((64, 48))), ("reshaping", reshaping)):
        path = tmp_path / f"{name}.tflite"
        path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
        assert tflite_utils.input_shape(path)[1] == [-1, 48, 64, 3]
        with create_segmenter(SegmentOptions(model=str(path), input_norm="raw")) as segmenter:
            assert segmenter.input_size == (64, 48) and "input 64x48" in segmenter.description
            prob = segmenter.segment(frame)
        assert prob.shape == (48, 64), name
        if name == "tiny":
            check_halves(prob, (48, 64))


def test_an_integer_model_takes_uint8_pixels_and_its_output_is_dequantised(tmp_path):
    """A fully integer model (uint8 input, int8 output, as the converter writes one with a
    representative data set) gets the frame's 0..255 pixels, whatever the scaling option says,
    and its output is read through its scale and zero point (-128 for int8)."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(tiny_model((64, 48)))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    rng = np.random.default_rng(0)
    converter.representative_dataset = lambda: (
        [rng.integers(0, 256, (1, 48, 64, 3)).astype(np.float32)] for _ in range(8))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type, converter.inference_output_type = tf.uint8, tf.int8
    path = tmp_path / "integer.tflite"
    path.write_bytes(converter.convert())
    with create_segmenter(SegmentOptions(model=str(path))) as segmenter:
        assert segmenter.input_norm == "raw"
        assert "RGB 0..255 (uint8 model input)" in segmenter.description
        prob = segmenter.segment(half_white(64, 48))
    assert prob.shape == (48, 64) and prob.dtype == np.float32
    np.testing.assert_allclose(prob[:, :30], WHITE, atol=0.01)  # one int8 step is 1/256
    np.testing.assert_allclose(prob[:, 34:], BLACK, atol=0.01)

def test_mark_rejects_unknown_norm_and_non_tflite_bytes():
    with pytest.raises(ValueError, match="unknown input norm 'bgr'"):
        tflite_utils.mark_tflite_input_norm(b"\0\0\0\0TFL3", "bgr")
    with pytest.raises(ValueError, match="not a TFLite flatbuffer"):
        tflite_utils.read_tflite_input_norm(b"PK\x03\x04 not a model")


def test_keras2_sequential_hdf5_loads_through_the_shim(models):
    with pytest.raises(Exception, match="groups"):
        keras.models.load_model(models["keras2_sequential"], compile=False)
    with create_segmenter(SegmentOptions(model=str(models["keras2_sequential"]))) as segmenter:
        assert segmenter.input_size == (128, 96) and segmenter.input_norm == "raw"
        check_halves(segmenter.segment(half_white()), (96, 128))


def test_keras2_hdf5_loads_through_the_shim(models):
    with pytest.raises(Exception, match="groups"):
        keras.models.load_model(models["keras2"], compile=False)
    model = keras_compat.load_keras_model(models["keras2"])
    assert [type(l).__name__ for l in model.layers][2:4] == ["BatchNormalization", "DepthwiseConv2D"]
    with create_segmenter(SegmentOptions(model=str(models["keras2"]), input_size=(128, 96))) as segmenter:
        assert segmenter.input_norm == "raw"
        check_halves(segmenter.segment(half_white()), (96, 128))


# ---------------------------------------------------------------- real models (../shared)


def iou_on_eg1800(segmenter: Segmenter, stem: str = "00002") -> float:
    image = cv2.imread(str(EG1800 / "images" / f"{stem}.jpg"))
    truth = cv2.imread(str(EG1800 / "masks" / f"{stem}.png"), cv2.IMREAD_GRAYSCALE) > 127
    prob = segmenter.segment(image)
    assert prob.dtype == np.float32 and 0.0 <= prob.min() and prob.max() <= 1.0
    predicted = cv2.resize(prob, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_LINEAR) > 0.5
    assert predicted.shape == truth.shape
    return float((predicted & truth).sum() / (predicted | truth).sum())


@needs_shared
@pytest.mark.parametrize("backend", ["tflite", "mediapipe"])
def test_input_size_on_a_fixed_size_model_is_named_in_a_warning(backend, caplog):
    options = SegmentOptions(model=str(SELFIE), backend=backend, input_size=(320, 192))
    with caplog.at_level(logging.WARNING, logger="portrait.segment"):
        with create_segmenter(options) as segmenter:
            assert segmenter.input_size == (256, 256)
    assert [r.getMessage() for r in caplog.records] == [
        "the model has a fixed 256x256 input; ignoring --input-size"]


def test_input_size_is_compared_as_width_by_height_with_a_fixed_tflite(models, caplog):
    """A fixed 96x64 model: --input-size 96x64 is its own size (no warning), 64x96 is not."""
    for asked, warned in (((96, 64), []),
                          ((64, 96), ["the model has a fixed 96x64 input; ignoring --input-size"])):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="portrait.segment"):
            options = SegmentOptions(model=str(models["tflite_raw"]), input_size=asked)
            with create_segmenter(options) as segmenter:
                assert segmenter.input_size == (96, 64)
        assert [r.getMessage() for r in caplog.records] == warned, asked


def test_input_size_is_compared_as_width_by_height_with_a_fixed_keras_model(models, caplog):
    """The converted path too: a fixed 128x96 Keras model takes --input-size 128x96 without a
    word, and names 96x128 in a warning; it runs at 128x96 either way."""
    path = models["keras2_sequential"]
    for asked, warned in (((128, 96), []), ((96, 128), [
            f"model '{path}' has a fixed 128x96 input; ignoring --input-size"])):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="portrait.segment"):
            options = SegmentOptions(model=str(path), device="cpu", input_size=asked)
            with create_segmenter(options) as segmenter:
                assert "converted from" in segmenter.description
                assert segmenter.input_size == (128, 96)
        assert [r.getMessage() for r in caplog.records] == warned, asked


@needs_shared
@pytest.mark.parametrize("backend", ["tflite", "mediapipe"])
@pytest.mark.parametrize("letterbox", [False, True])
def test_selfie_model_segments_a_real_portrait(backend, letterbox):
    options = SegmentOptions(model=str(SELFIE), backend=backend, letterbox=letterbox)
    with create_segmenter(options) as segmenter:
        assert segmenter.input_size == (256, 256)
        assert ("MediaPipe" if backend == "mediapipe" else "TFLite") in segmenter.description
        assert iou_on_eg1800(segmenter) > 0.9


@needs_shared
def test_tflite_and_mediapipe_agree_on_the_selfie_model():
    frame = cv2.resize(cv2.imread(str(EG1800 / "images" / "00002.jpg")), (1280, 720))
    with create_segmenter(SegmentOptions(model=str(SELFIE))) as tflite_run, create_segmenter(
        SegmentOptions(model=str(SELFIE), backend="mediapipe")
    ) as mediapipe_run:
        np.testing.assert_allclose(tflite_run.segment(frame), mediapipe_run.segment(frame), atol=0.02)


@needs_shared
def test_marking_keeps_mediapipe_metadata(tmp_path):
    marked = tflite_utils.mark_tflite_input_norm(SELFIE, "unit")
    metadata = tflite_utils.read_tflite_metadata(marked)
    assert metadata["portrait_input_norm"] == b"unit"
    assert metadata["TFLITE_METADATA"] == tflite_utils.read_tflite_metadata(SELFIE)["TFLITE_METADATA"]
    path = tmp_path / "marked.tflite"
    path.write_bytes(marked)
    with create_segmenter(SegmentOptions(model=str(path), backend="mediapipe")) as segmenter:
        assert iou_on_eg1800(segmenter) > 0.9


@needs_shared
def test_an_unknown_input_norm_mark_is_ignored_and_a_mark_replaces_the_last():
    """A mark this version does not know (a newer export's) is no scaling to apply; marking
    again leaves one entry of the name, not two."""
    odd = tflite_utils.mark_tflite_metadata(SELFIE, {"portrait_input_norm": b"log"})
    assert tflite_utils.read_tflite_input_norm(odd) is None
    padded = tflite_utils.mark_tflite_metadata(SELFIE, {"portrait_input_norm": b"unit\x00"})
    assert tflite_utils.read_tflite_input_norm(padded) == "unit"  # as a C string is written
    twice = tflite_utils.mark_tflite_input_norm(tflite_utils.mark_tflite_input_norm(SELFIE, "raw"),
                                                "unit")
    model = tflite_utils._schema().Model.GetRootAs(twice, 0)
    names = [model.Metadata(i).Name() for i in range(model.MetadataLength())]
    assert names.count(b"portrait_input_norm") == 1, names
    assert tflite_utils.read_tflite_input_norm(twice) == "unit"


@needs_shared
def test_a_metadata_entry_naming_a_buffer_the_model_lacks_is_left_out():
    """A damaged file whose mark points past the model's buffers: that entry reads as absent
    (no scaling mark), the others are still read."""
    schema = tflite_utils._schema()
    marked = tflite_utils.mark_tflite_input_norm(SELFIE, "raw")
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(marked, 0))
    [entry] = [m for m in model.metadata if m.name == b"portrait_input_norm"]
    entry.buffer = len(model.buffers)
    damaged = tflite_utils.pack_model(model)
    assert set(tflite_utils.read_tflite_metadata(damaged)) == {"TFLITE_METADATA"}
    assert tflite_utils.read_tflite_input_norm(damaged) is None


@needs_shared
def test_an_export_record_that_is_not_an_object_is_no_record():
    """A damaged or foreign ``portrait_export`` entry (JSON, but a list) reads as none, so
    nothing asks it for its fields."""
    odd = tflite_utils.mark_tflite_metadata(SELFIE, {tflite_utils.EXPORT_KEY: b"[1, 2]"})
    assert tflite_utils.read_export_info(odd) is None
    info = {"source": "m.hdf5", "source_sha256": "ab", "format": tflite_utils.EXPORT_FORMAT}
    assert tflite_utils.read_export_info(tflite_utils.mark_export_info(SELFIE, info)) == info


LIVE_TFLITE = Path(__file__).parents[1] / "weights" / "unet_live.tflite"  # read only


def _litert_output(content: bytes, image: np.ndarray) -> np.ndarray:
    interpreter = tflite_utils.make_interpreter(content, 1, which="LiteRT")
    index = interpreter.get_input_details()[0]["index"]
    interpreter.resize_tensor_input(index, image.shape)  # the model takes any height and width
    interpreter.allocate_tensors()
    interpreter.set_tensor(index, image)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


def test_marking_again_with_the_same_entries_gives_the_same_bytes(tmp_path):
    """A re-mark reuses the replaced entry's buffer: marking twice (or a third time) gives the
    bytes of marking once, not a file ~20 bytes larger each time; a mark that sets an entry to
    the value it has gives the file back as it was; a longer value grows the file by its own
    length (and padding) only, once. The marked model loads in LiteRT and gives the same output."""
    original = LIVE_TFLITE.read_bytes()
    entries = {"note": b"marked twice", tflite_utils.EXPORT_KEY: b'{"format": 1}'}
    once = tflite_utils.mark_tflite_metadata(original, entries)
    twice = tflite_utils.mark_tflite_metadata(once, entries)
    assert twice == once and tflite_utils.mark_tflite_metadata(twice, entries) == once
    assert tflite_utils.read_tflite_metadata(twice) == {**tflite_utils.read_tflite_metadata(original),
                                                        **entries}
    # The shipped file's own marks, set again to what they are: the same file.
    marks = tflite_utils.read_tflite_metadata(original)
    assert tflite_utils.mark_tflite_input_norm(original, marks["portrait_input_norm"].decode()) == original
    again = {tflite_utils.EXPORT_KEY: marks[tflite_utils.EXPORT_KEY]}
    assert tflite_utils.mark_tflite_metadata(original, again) == original
    # A longer record replaces the old one's bytes instead of adding a buffer beside them.
    longer = tflite_utils.mark_tflite_metadata(original, {"note": b"x" * 100})
    longer_again = tflite_utils.mark_tflite_metadata(longer, {"note": b"y" * 100})
    assert len(longer_again) == len(longer) <= len(original) + 100 + 64

    path = tmp_path / "marked.tflite"
    path.write_bytes(twice)
    image = np.random.default_rng(0).uniform(0, 255, (1, 160, 288, 3)).astype(np.float32)
    np.testing.assert_array_equal(_litert_output(path.read_bytes(), image),
                                  _litert_output(original, image))


def test_a_buffer_a_tensor_reads_too_is_not_overwritten_by_a_mark():
    """A (damaged or hand-made) entry that names a tensor's buffer: marking the entry gives it a
    buffer of its own, and the tensor's weights stay as they were."""
    schema = tflite_utils._schema()
    original = LIVE_TFLITE.read_bytes()
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(original, 0))
    weights = next(t.buffer for t in model.subgraphs[0].tensors
                   if t.buffer and model.buffers[t.buffer].data is not None)
    shared = schema.MetadataT()
    shared.name, shared.buffer = b"note", weights
    model.metadata.append(shared)
    damaged = tflite_utils.pack_model(model)
    marked = tflite_utils.mark_tflite_metadata(damaged, {"note": b"own buffer"})
    after = schema.ModelT.InitFromObj(schema.Model.GetRootAs(marked, 0))
    np.testing.assert_array_equal(after.buffers[weights].data, model.buffers[weights].data)
    assert tflite_utils.read_tflite_metadata(marked)["note"] == b"own buffer"


def test_a_mark_leaves_one_entry_of_its_name_and_the_older_metadata_list_s_buffers():
    """A damaged file with two entries of a name: marking it leaves one, with the new value. An
    entry whose buffer the older metadataBuffer list also names gets a buffer of its own, the
    listed one kept. A reused buffer is written in the flatbuffer, not at the offset a >2 GB
    model's buffer had."""
    schema = tflite_utils._schema()
    original = tflite_utils.mark_tflite_metadata(LIVE_TFLITE.read_bytes(), {"note": b"first"})
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(original, 0))
    [note] = [m for m in model.metadata if m.name == b"note"]
    again = schema.MetadataT()
    again.name, again.buffer = b"note", note.buffer
    model.metadata.append(again)
    marked = tflite_utils.mark_tflite_metadata(tflite_utils.pack_model(model), {"note": b"x"})
    after = schema.Model.GetRootAs(marked, 0)
    names = [after.Metadata(i).Name() for i in range(after.MetadataLength())]
    assert names.count(b"note") == 1 and tflite_utils.read_tflite_metadata(marked)["note"] == b"x"

    model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(original, 0))
    [note] = [m for m in model.metadata if m.name == b"note"]
    model.metadataBuffer = list(model.metadataBuffer or []) + [note.buffer]
    listed = note.buffer
    marked = tflite_utils.mark_tflite_metadata(tflite_utils.pack_model(model), {"note": b"new"})
    after = schema.ModelT.InitFromObj(schema.Model.GetRootAs(marked, 0))
    assert bytes(after.buffers[listed].data) == b"first"
    assert tflite_utils.read_tflite_metadata(marked)["note"] == b"new"

    model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(original, 0))
    [note] = [m for m in model.metadata if m.name == b"note"]
    model.buffers[note.buffer].offset, model.buffers[note.buffer].size = 1, 1
    marked = tflite_utils.mark_tflite_metadata(tflite_utils.pack_model(model), {"note": b"in"})
    after = schema.Model.GetRootAs(marked, 0)
    buffer = after.Buffers(note.buffer)
    assert (buffer.Offset(), buffer.Size(), bytes(buffer.DataAsNumpy())) == (0, 0, b"in")


def test_a_mark_never_writes_into_buffer_0_the_schema_s_empty_one():
    """An entry naming buffer 0 (which no tensor of the live model reads, so only the entry
    does): the mark gets a buffer of its own and buffer 0 stays empty, as the schema has it."""
    schema = tflite_utils._schema()
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(LIVE_TFLITE.read_bytes(), 0))
    assert not any(t.buffer == 0 for g in model.subgraphs for t in g.tensors)
    empty = schema.MetadataT()
    empty.name, empty.buffer = b"note", 0
    model.metadata.append(empty)
    marked = tflite_utils.mark_tflite_metadata(tflite_utils.pack_model(model), {"note": b"own"})
    after = schema.Model.GetRootAs(marked, 0)
    assert after.Buffers(0).DataLength() == 0
    assert tflite_utils.read_tflite_metadata(marked)["note"] == b"own"


def test_the_interpreter_is_picked_by_name_and_a_wrong_name_is_refused():
    assert tflite_utils.interpreter_module("LiteRT")[1] == "LiteRT"
    assert tflite_utils.interpreter_module("tf.lite")[1] == "tf.lite"
    assert tflite_utils.interpreter_module()[1] == "LiteRT"  # installed here: the default
    with pytest.raises(ValueError, match="unknown interpreter 'tflite': expected 'LiteRT' or 'tf.lite'"):
        tflite_utils.interpreter_module("tflite")


def test_an_image_input_is_dynamic_only_when_both_sides_are():
    """A model with one side fixed runs at that side; only (batch, -1, -1, C) takes any size."""
    assert tflite_utils.dynamic_image_input([1, -1, -1, 3])
    assert tflite_utils.dynamic_image_input([-1, -1, -1, 3])
    for signature in ([1, -1, 256, 3], [1, 256, -1, 3], [1, 256, 256, 3], [-1, -1, -1]):
        assert not tflite_utils.dynamic_image_input(signature), signature


def test_a_fixed_input_size_is_read_as_width_by_height():
    import keras

    inputs = keras.Input((64, 128, 3))  # height 64, width 128
    model = keras.Model(inputs, keras.layers.Conv2D(1, 1)(inputs))
    assert keras_compat.saved_input_size(model) == (128, 64)
    dynamic = keras.Input((None, None, 3))
    assert keras_compat.saved_input_size(keras.Model(dynamic, dynamic)) is None
    grey = keras.Input((64, 128, 1))  # one channel: no RGB image
    with pytest.raises(ModelError, match=r"model input shape \(None, 64, 128, 1\) is not an image"):
        keras_compat.saved_input_size(keras.Model(grey, keras.layers.Conv2D(1, 1)(grey)))


def test_a_model_that_normalises_its_own_input_takes_0_to_255():
    import keras

    inputs = keras.Input((32, 32, 3))
    for first, norm in ((keras.layers.Normalization(mean=127.5, variance=5000.0), "raw"),
                        (keras.layers.Rescaling(1 / 255), "raw"),
                        (keras.layers.Conv2D(3, 1), None)):
        model = keras.Model(inputs, keras.layers.Conv2D(1, 1)(first(inputs)))
        assert keras_compat.keras_input_norm(model) == norm, first
        wrapper = keras.Model(inputs, model(inputs))  # nested, as an ensemble holds its members
        assert keras_compat.keras_input_norm(wrapper) == norm, first


def test_an_ensemble_of_members_with_different_outputs_has_no_one_activation():
    """The mean of a sigmoid and a softmax member is neither: the app must not be told it is."""
    import keras

    def member(activation, name):
        inputs = keras.Input((8, 8, 3))
        return keras.Model(inputs, keras.layers.Conv2D(1, 1, activation=activation)(inputs),
                           name=name)

    def ensemble(*members):
        inputs = keras.Input((8, 8, 3))
        return keras.Model(inputs, keras.layers.Average()([m(inputs) for m in members]))

    sigmoid = member("sigmoid", "a")
    assert keras_compat.keras_output_activation(
        ensemble(sigmoid, member("sigmoid", "b"))) == "sigmoid"
    assert keras_compat.keras_output_activation(ensemble(sigmoid, member("softmax", "c"))) is None


def test_a_config_input_of_other_than_one_rgb_image_gives_no_size():
    """A grey-input model (one channel) or one of two inputs is no image model of ours: the
    size is not read from its config, and loading it says why."""
    def config(batch_shape):
        return {"config": {"layers": [{"class_name": "InputLayer",
                                       "config": {"batch_shape": batch_shape}}]}}

    assert keras_compat.config_input_size(config([None, 64, 128, 3])) == (128, 64)
    assert keras_compat.config_input_size(config([None, None, None, 3])) == "dynamic"
    keras2 = {"config": {"layers": [{"class_name": "InputLayer",  # Keras 2's key for the shape
                                     "config": {"batch_input_shape": [None, 96, 128, 3]}}]}}
    assert keras_compat.config_input_size(keras2) == (128, 96)
    assert keras_compat.config_input_size(config([None, 64, 128, 1])) is None
    two_inputs = config([None, 64, 128, 3])
    two_inputs["config"]["layers"].append(two_inputs["config"]["layers"][0])
    assert keras_compat.config_input_size(two_inputs) is None  # which one is the image?


def test_serialised_code_is_found_wherever_a_config_holds_it():
    """Keras 3 serialises a Python function given as an activation as ``__lambda__``, outside
    any Lambda layer; a name such as "relu" is no code."""
    config = {"config": {"layers": [
        {"class_name": "Dense", "config": {"name": "head", "activation": {
            "class_name": "__lambda__", "config": {"code": "4wEAAAAA", "defaults": None}}}},
        {"class_name": "Dense", "config": {"name": "plain", "activation": "relu"}},
    ]}}
    assert keras_compat.find_serialized_code(config) == ["a serialised Python function"]
    assert keras_compat.find_serialized_code(config["config"]["layers"][1]) == []
    # Keras 2 marks a Python function given as a layer's output shape the same way.
    shape_code = {"class_name": "Dense", "name": "head", "output_shape_type": "lambda"}
    assert keras_compat.find_serialized_code(shape_code) == ["serialised Python code in 'head'"]


def test_a_refusal_names_the_first_three_places_with_code_and_counts_the_rest():
    config = {"config": {"layers": [{"class_name": "Lambda", "config": {"name": name}}
                                    for name in "abcde"]}}
    with pytest.raises(ModelError) as error:
        keras_compat.check_model_safety(Path("m.h5"), config, trust_model=False)
    assert str(error.value) == (
        "refusing model 'm.h5': it contains Lambda layer 'a', Lambda layer 'b', Lambda layer 'c' "
        "and 2 more, which would run Python code from the file when loaded; pass --trust-model "
        "only if you trust where the file came from")
    keras_compat.check_model_safety(Path("m.h5"), config, trust_model=True)  # trusted: no error


# ---------------------------------------------------------------- errors and lifecycle


def test_resolve_model_path_looks_in_weights(tmp_path, monkeypatch):
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")  # not the checkout, whose weights/unet.hdf5 exists
    monkeypatch.setattr(segment.locate, "WEIGHTS_DIR", tmp_path)
    monkeypatch.setattr(segment.locate, "PROJECT_ROOT", tmp_path / "nowhere")
    (tmp_path / "mine.tflite").write_bytes(b"x")
    assert resolve_model_path("mine.tflite") == tmp_path / "mine.tflite"
    assert resolve_model_path(str(tmp_path / "mine.tflite")) == tmp_path / "mine.tflite"
    with pytest.raises(ModelError, match=r"^model 'nope.hdf5' not found \(also looked in weights/\); "
                                         r"pass --model PATH to a .hdf5 or .tflite model$"):
        resolve_model_path("nope.hdf5")
    for shipped in ("weights/unet.hdf5", "weights/unet_live.hdf5"):
        with pytest.raises(ModelError, match=f"default model '{shipped}' is missing.*"
                                             f"'git checkout -- {shipped}'.*portrait.training.train"):
            resolve_model_path(shipped)
    with pytest.raises(ModelError, match="is a folder"):
        resolve_model_path(str(tmp_path))


@pytest.mark.skipif(not Path("/proc/self/mem").is_file(), reason="needs Linux's /proc/self/mem")
@pytest.mark.parametrize("suffix", [".tflite", ".hdf5", ".keras"])
def test_a_model_the_system_will_not_read_says_why_not_that_it_is_corrupt(tmp_path, suffix):
    """A model file that is there but cannot be read (permission denied, a failing disk) was
    called 'the file may be truncated or corrupt, re-download or re-export it' (.tflite) or
    'not a valid HDF5 file' / '.keras archive'. The tests run as root, whom permissions do not
    stop: /proc/self/mem, linked as the model, is a file whose first byte no process can read
    (an input/output error)."""
    link = tmp_path / f"model{suffix}"
    link.symlink_to("/proc/self/mem")
    with pytest.raises(ModelError) as error:
        create_segmenter(SegmentOptions(model=str(link)))
    assert str(error.value) == (f"cannot read model '{link}': Input/output error; check the "
                                "file and the disk it is on")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes here")
def test_a_named_pipe_given_as_a_model_is_refused_unread(tmp_path):
    """A named pipe was 'not found' (it is there, and is no file); it is not opened, which
    would wait for a writer."""
    fifo = tmp_path / "model.tflite"
    os.mkfifo(fifo)
    with pytest.raises(ModelError, match=rf"^model '{fifo}' is not a regular file \(a named "
                                         r"pipe, a socket or a device\); pass --model PATH"):
        create_segmenter(SegmentOptions(model=str(fifo)))


def test_a_model_named_without_its_type_is_named_back_with_it(tmp_path, monkeypatch):
    # `--model unet_live` ended in "not found ...; pass --model PATH to a .hdf5 or .tflite
    # model", though weights/unet_live.hdf5 is there: the line now says what to type.
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelError, match=r"^model 'unet_live' not found \(also looked in "
                                         r"weights/\); give the name with its type: "
                                         r"'unet_live.hdf5'$"):
        resolve_model_path("unet_live")
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "mine.tflite").write_bytes(b"x")
    with pytest.raises(ModelError, match=r"give the name with its type: 'runs/mine.tflite'$"):
        resolve_model_path("runs/mine")
    with pytest.raises(ModelError, match=r"; pass --model PATH to a .hdf5 or .tflite model$"):
        resolve_model_path("runs/other")


def test_mediapipe_s_selfie_model_not_found_says_where_to_get_it(tmp_path, monkeypatch):
    """The README's evaluate example compares with selfie_segmentation.tflite, which is not in
    the repository: run as written, it ended in 'not found', with no word of where it comes
    from."""
    monkeypatch.chdir(tmp_path)
    for name in ("selfie_segmentation.tflite", "models/selfie_segmentation_landscape.tflite"):
        with pytest.raises(ModelError) as missing:
            resolve_model_path(name, "pass --compare PATH to a .hdf5 or .tflite model")
        assert str(missing.value) == (
            f"model '{name}' not found (also looked in weights/); pass --compare PATH to a .hdf5 "
            "or .tflite model (MediaPipe's selfie models are not in this repository: the "
            "README's 'The model' section takes them out of the mediapipe 0.10.21 wheel)")


@pytest.mark.parametrize("name", ["sigmoid", "keras", "tflite"])
def test_truncated_model_is_a_clear_error(models, tmp_path, name):
    source = models[name]
    broken = tmp_path / f"broken{source.suffix}"
    broken.write_bytes(source.read_bytes()[: source.stat().st_size // 2])
    with pytest.raises(ModelError, match=r"cannot (read|load) (TFLite )?model .*(truncated|corrupt)") as info:
        create_segmenter(SegmentOptions(model=str(broken)))
    assert "\n" not in str(info.value)


def test_garbage_and_unknown_model_files(tmp_path):
    garbage = tmp_path / "garbage.tflite"
    garbage.write_bytes(os.urandom(4096))
    with pytest.raises(ModelError, match="truncated or corrupt"):
        create_segmenter(SegmentOptions(model=str(garbage)))
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"\x08\x07")
    with pytest.raises(ModelError, match=r"unsupported type '.onnx': expected .hdf5, .h5, .keras or .tflite"):
        create_segmenter(SegmentOptions(model=str(onnx)))
    # A size no model runs at is refused where the options are built, before any file is read.
    with pytest.raises(ValueError, match=r"^SegmentOptions.input_size = \(0, 10\): expected None "
                                         r"or \(width, height\), two whole numbers, each from 1 "
                                         r"to 4096$"):
        create_segmenter(SegmentOptions(model=str(onnx), input_size=(0, 10)))


def test_a_weights_only_file_or_an_architecture_that_is_no_object_is_named_so(tmp_path):
    """model.save_weights() writes an HDF5 file without the architecture; a damaged one may
    hold JSON that is not an object. Each is one ModelError saying so, not a TypeError or an
    AttributeError from deeper in."""
    weights = tmp_path / "weights.h5"
    with h5py.File(weights, "w") as f:
        f.create_dataset("kernel", data=np.zeros((3, 3), np.float32))
    with pytest.raises(ModelError, match=r"holds no model architecture \(weights only\?\); save the "
                                         r"whole model with model.save\(\)"):
        create_segmenter(SegmentOptions(model=str(weights), device="cpu"))
    listed = tmp_path / "listed.h5"
    with h5py.File(listed, "w") as f:
        f.attrs["model_config"] = json.dumps([{"class_name": "Dense"}])
    with pytest.raises(ModelError, match="its architecture JSON is not an object"):
        create_segmenter(SegmentOptions(model=str(listed), device="cpu"))


@pytest.mark.parametrize("name", ["lambda", "lambda_keras"])
def test_lambda_model_needs_trust(models, name):
    options = SegmentOptions(model=str(models[name]), input_size=(64, 64))
    with pytest.raises(ModelError, match=r"refusing model .*Lambda layer 'scale'.*--trust-model") as info:
        create_segmenter(options)
    assert "\n" not in str(info.value)
    with create_segmenter(SegmentOptions(model=str(models[name]), input_size=(64, 64), trust_model=True)) as trusted:
        check_halves(trusted.segment(half_white(128, 64)), (64, 64))


def test_bad_output_shape_names_shape_found_and_expected(models):
    with pytest.raises(ModelError, match=r"model output shape \(1, 64, 64, 5\) is not a mask: "
                                         r"expected \(1, H, W, 1\) or \(1, H, W, 2\)"):
        create_segmenter(SegmentOptions(model=str(models["five"]), input_size=(64, 64)))


def test_backend_and_device_mismatches(models):
    import tensorflow as tf

    with pytest.raises(DeviceError, match="--device gpu"):
        create_segmenter(SegmentOptions(model=str(models["tflite"]), device="gpu"))
    with pytest.raises(ModelError, match="--backend keras needs a Keras model"):
        create_segmenter(SegmentOptions(model=str(models["tflite"]), backend="keras"))
    with pytest.raises(ModelError, match="--backend mediapipe needs a MediaPipe .tflite model"):
        create_segmenter(SegmentOptions(model=str(models["sigmoid"]), backend="mediapipe"))
    if not tf.config.list_physical_devices("GPU"):
        with pytest.raises(DeviceError, match=r"TensorFlow sees no GPU; .*tensorflow\[and-cuda\].*--device cpu"):
            create_segmenter(SegmentOptions(model=str(models["sigmoid"]), device="gpu"))


def test_mediapipe_refuses_a_plain_tflite(models):
    with pytest.raises(ModelError, match="MediaPipe cannot load model"):
        create_segmenter(SegmentOptions(model=str(models["tflite"]), backend="mediapipe"))


def test_close_is_safe_twice_and_segment_after_close_fails(models):
    segmenter = create_segmenter(SegmentOptions(model=str(models["tflite_raw"])))
    out = np.empty((64, 96), np.float32)
    assert segmenter.segment(half_white(96, 64), out=out) is out
    segmenter.close()
    segmenter.close()
    with pytest.raises(ValueError, match="closed"):
        segmenter.segment(half_white(96, 64))


def test_our_dynamic_models_run_at_the_frame_aspect(tmp_path):
    from portrait.segment import AspectSegmenter, size_for_frame
    from portrait.training.train import save_model

    assert size_for_frame((1280, 720), 192) == (352, 192)
    assert size_for_frame((600, 800), 192) == (192, 256)
    assert size_for_frame((5000, 10), 64) == (192, 64)  # extreme aspects are capped at 3:1
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)
    outputs = keras.layers.Conv2D(1, 3, padding="same", activation="sigmoid")(x)
    path = tmp_path / "dynamic.hdf5"
    save_model(keras.Model(inputs, outputs), path, short_px=64)
    with create_segmenter(SegmentOptions(model=str(path))) as segmenter:
        assert isinstance(segmenter, AspectSegmenter)
        assert "short side 64 px" in segmenter.description
        landscape = segmenter.segment(np.zeros((90, 160, 3), np.uint8))
        portrait = segmenter.segment(np.zeros((160, 120, 3), np.uint8))
    assert landscape.shape == (64, 128)  # 160:90 → 114:64, rounded to the stride 32
    assert portrait.shape == (96, 64)
    # Told the first frame's size, it converts for that shape at start-up and for no other.
    with create_segmenter(SegmentOptions(model=str(path), frame_size=(120, 160))) as segmenter:
        assert segmenter.input_size == (64, 96)
        assert list(segmenter._by_size) == [(64, 96)]
        # The start-up line says the size it runs at, which its cost depends on.
        assert ", input 64x96 for a 120x160 frame (each frame's aspect, short side 64 px), " in (
            segmenter.description)


def test_the_keras_path_runs_our_dynamic_models_at_the_frame_aspect_too(tmp_path):
    """The GPU path (tf.function; here --backend keras on the CPU) honours the short side the
    file notes, as the TFLite path does, instead of stretching every frame to 256x256; the two
    runtimes agree."""
    from portrait.segment import AspectSegmenter, KerasSegmenter
    from portrait.training.train import save_model

    path = tmp_path / "dynamic.hdf5"
    save_model(lopsided_model(9), path, short_px=64)
    frame = np.random.default_rng(9).integers(0, 256, (160, 120, 3), np.uint8)
    with create_segmenter(SegmentOptions(model=str(path), backend="keras", device="cpu",
                                         frame_size=(120, 160))) as keras_path:
        assert isinstance(keras_path, AspectSegmenter)
        assert isinstance(keras_path.current, KerasSegmenter)
        assert "tf.function" in keras_path.description and "short side 64 px" in keras_path.description
        by_keras = keras_path.segment(frame).copy()
        assert keras_path.input_size == (64, 96)
    with create_segmenter(SegmentOptions(model=str(path))) as tflite_path:
        by_tflite = tflite_path.segment(frame).copy()
    assert by_keras.shape == by_tflite.shape == (96, 64)
    np.testing.assert_allclose(by_keras, by_tflite, atol=1e-4)
    # Told a size, it runs at that size, as before.
    with create_segmenter(SegmentOptions(model=str(path), backend="keras", device="cpu",
                                         input_size=(96, 64))) as sized:
        assert isinstance(sized, KerasSegmenter) and sized.input_size == (96, 64)


def lopsided_model(seed: int, shape=(None, None, 3)) -> keras.Model:
    """A model whose random 3x3 kernel is not left-right symmetric (nor scale invariant)."""
    inputs = keras.Input(shape)
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)
    conv = keras.layers.Conv2D(1, 3, padding="same", activation="sigmoid")
    model = keras.Model(inputs, conv(x))
    rng = np.random.default_rng(seed)
    conv.set_weights([rng.normal(0, 1, (3, 3, 3, 1)).astype(np.float32), np.zeros(1, np.float32)])
    return model


def test_tta_mirror_averages_the_output_on_the_frame_and_on_its_mirror(tmp_path):
    """--tta mirror gives exactly the mean of the model's output on the frame and the mirrored
    output on the mirrored frame."""
    from portrait.segment import TestTimeAverage

    path = tmp_path / "lopsided.hdf5"
    lopsided_model(4, (48, 64, 3)).save(path)
    frame = np.random.default_rng(4).integers(0, 256, (48, 64, 3), np.uint8)
    with create_segmenter(SegmentOptions(model=str(path))) as plain:
        direct = plain.segment(frame).copy()
        mirrored = plain.segment(np.ascontiguousarray(frame[:, ::-1])).copy()
    with create_segmenter(SegmentOptions(model=str(path), tta="mirror")) as tta:
        assert isinstance(tta, TestTimeAverage) and tta.description.endswith("(--tta mirror)")
        assert tta.passes == 2
        assert tta.input_size == (64, 48)  # the wrapped segmenter's attributes show through
        averaged = tta.segment(frame)
        out = np.empty_like(averaged)
        assert tta.segment(frame, out=out) is out
        with pytest.raises(ValueError, match="unexpected out array"):
            tta.segment(frame, out=np.empty((5, 5), np.float32))
    np.testing.assert_allclose(averaged, (direct + mirrored[:, ::-1]) / 2, atol=1e-6)
    np.testing.assert_allclose(out, averaged, atol=1e-6)
    assert np.abs(averaged - direct).max() > 0.05  # the two views really differ
    with pytest.raises(ValueError, match="closed"):
        tta.segment(frame)


def test_tta_scales_averages_three_sizes_and_their_mirrors_on_the_largest_grid(tmp_path):
    """--tta scales runs a model that sizes itself to the frame at 5/6, 1 and 7/6 of its short
    side (192 px: 160, 192 and 224), each on the frame and on its mirror, and averages the six
    outputs resized (bilinear) to the largest grid."""
    from portrait.segment import AspectSegmenter, TestTimeAverage, tta_short_sides
    from portrait.training.train import save_model

    assert tta_short_sides(192) == (224, 192, 160)
    assert tta_short_sides(160) == (192, 160, 128)
    assert tta_short_sides(32) == (32,)  # every share rounds to one stride
    path = tmp_path / "dynamic.hdf5"
    save_model(lopsided_model(7), path, short_px=192)
    frame = np.random.default_rng(7).integers(0, 256, (300, 400, 3), np.uint8)
    mirror = np.ascontiguousarray(frame[:, ::-1])
    views = []
    for side in (160, 192, 224):
        with create_segmenter(SegmentOptions(model=str(path))) as plain:
            assert isinstance(plain, AspectSegmenter)
            plain.short_px = side
            views += [plain.segment(frame).copy(), plain.segment(mirror)[:, ::-1].copy()]
    largest = views[-1].shape
    assert [v.shape for v in views[::2]] == [(160, 224), (192, 256), largest] and largest == (224, 288)
    expected = np.mean([cv2.resize(v, largest[::-1], interpolation=cv2.INTER_LINEAR)
                        if v.shape != largest else v for v in views], axis=0)
    with create_segmenter(SegmentOptions(model=str(path), tta="scales")) as tta:
        assert isinstance(tta, TestTimeAverage) and tta.passes == 6
        assert tta.description.endswith("averaged over short sides 160, 192, 224 px, each with "
                                         "its mirror image (--tta scales)")
        assert tta.input_size == (384, 224)  # made for a 16:9 frame until told otherwise
        averaged = tta.segment(frame)
        assert tta.input_size == (288, 224)  # the largest view, at the frame's 4:3
    assert averaged.shape == largest
    np.testing.assert_allclose(averaged, expected, atol=1e-5)
    assert np.abs(averaged - views[4]).max() > 0.02  # not just the largest view
    # The segmenter wrapped is itself the view at its own short side, closed with the average;
    # the other views too are made for the first frame's size (a 3:4 photo), not for 16:9.
    from portrait.segment.wrappers import with_test_time

    with create_segmenter(SegmentOptions(model=str(path), frame_size=(120, 160))) as plain:
        wrapped = with_test_time(plain, "scales")
        assert wrapped.views[1] is plain and plain.short_px == 192
        assert [view.input_size for view in wrapped.views] == [(224, 288), (192, 256), (160, 224)]
        with pytest.raises(ValueError, match="--tta must be one of .*, got 'twice'"):
            with_test_time(plain, "twice")
        wrapped.close()
        with pytest.raises(ValueError, match="closed"):
            plain.segment(frame)


def pointwise_model() -> keras.Model:
    """A model whose output at a pixel depends on that pixel alone (a 1x1 convolution): turning
    the frame turns its output, so a turned view turned back must match the unturned one."""
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)
    conv = keras.layers.Conv2D(1, 1, activation="sigmoid")
    model = keras.Model(inputs, conv(x))
    conv.set_weights([np.array([[[[1.0], [0.5], [-1.0]]]], np.float32), np.zeros(1, np.float32)])
    return model


def test_turned_back_undoes_the_turn_on_another_grid():
    """An output on a turned frame, turned back onto a grid of another size, lands where the
    unturned frame's pixels are; the corners the turn cut off have no weight."""
    from portrait.segment.wrappers import turned_back

    yy, xx = np.mgrid[0:300, 0:400].astype(np.float32)
    smooth = (np.sin(xx / 40) * np.cos(yy / 30) + 1) / 2  # the frame's own "probability"
    turn = cv2.getRotationMatrix2D((199.5, 149.5), 8.0, 1.0)
    on_turned = cv2.warpAffine(smooth, turn, (400, 300), flags=cv2.INTER_LINEAR)
    output = cv2.resize(on_turned, (128, 96), interpolation=cv2.INTER_AREA)  # a model's grid
    back, covered = turned_back(output, turn, (400, 300), (288, 224))
    assert back.shape == covered.shape == (224, 288)
    expected = cv2.resize(smooth, (288, 224), interpolation=cv2.INTER_AREA)
    inner = (slice(40, -40), slice(40, -40))
    assert covered[inner].min() == pytest.approx(1.0)
    # Within 0.002 here; pixel corners taken for centres (half a pixel of each grid) put it a
    # frame pixel off, 0.014.
    np.testing.assert_allclose(back[inner], expected[inner], atol=0.005)
    # An 8 degree turn about the centre cuts off the frame's corners and nothing at mid-edge.
    assert covered[0, 0] == 0 and covered[-1, -1] == 0 and covered[112, 2] == pytest.approx(1.0)
    # Turned the wrong way back, the same output does not match.
    wrong, _ = turned_back(output, cv2.getRotationMatrix2D((199.5, 149.5), -8.0, 1.0), (400, 300),
                           (288, 224))
    assert np.abs(wrong[inner] - expected[inner]).max() > 0.1


def test_tta_turns_adds_each_view_turned_either_way(tmp_path):
    """--tta turns runs --tta scales' six views and each again turned by +8 and -8 degrees (18
    passes); for a model that sees one pixel at a time the turned views agree with the
    unturned ones inside the frame, and a corner that the turns cut off keeps the six
    unturned views' mean exactly."""
    from portrait.segment import TestTimeAverage
    from portrait.segment.wrappers import TEST_TIME_TURNS_DEG
    from portrait.training.train import save_model

    assert TEST_TIME_TURNS_DEG == (8.0, -8.0)
    path = tmp_path / "pointwise.hdf5"
    save_model(pointwise_model(), path, short_px=192)
    yy, xx = np.mgrid[0:300, 0:400]
    frame = np.dstack([128 + 100 * np.sin(xx / 40), 128 + 100 * np.cos(yy / 30),
                       128 + 80 * np.sin((xx + yy) / 50)]).astype(np.uint8)
    with create_segmenter(SegmentOptions(model=str(path), tta="scales")) as scales:
        six = scales.segment(frame).copy()
    with create_segmenter(SegmentOptions(model=str(path), tta="turns")) as turns:
        assert isinstance(turns, TestTimeAverage) and turns.passes == 18
        assert turns.description.endswith("averaged over short sides 160, 192, 224 px, each with "
                                          "its mirror image, and turned by +8 and -8 degrees "
                                          "(--tta turns)")
        eighteen = turns.segment(frame)
    assert eighteen.shape == six.shape == (224, 288)
    inner = (slice(20, -20), slice(20, -20))
    np.testing.assert_allclose(eighteen[inner], six[inner], atol=0.003)
    assert eighteen[0, 0] == pytest.approx(six[0, 0], abs=1e-6)
    # A model that sees a pixel's neighbours, on a frame of fine detail, gives turned views
    # that differ from the unturned ones.
    lopsided = tmp_path / "lopsided.hdf5"
    save_model(lopsided_model(3), lopsided, short_px=192)
    frame = np.random.default_rng(3).integers(0, 256, (300, 400, 3), np.uint8)
    with create_segmenter(SegmentOptions(model=str(lopsided), tta="scales")) as scales:
        six = scales.segment(frame).copy()
    with create_segmenter(SegmentOptions(model=str(lopsided), tta="turns")) as turns:
        eighteen = turns.segment(frame)
    assert np.abs(eighteen[inner] - six[inner]).max() > 0.01


def test_tta_scales_on_a_fixed_size_model_is_the_mirror_and_says_so(tmp_path):
    """A fixed input has no other scale: --tta scales (what --image asks of any model) runs the
    mirror pair, and the start-up line says why."""
    from portrait.segment import TestTimeAverage

    path = tmp_path / "fixed.hdf5"
    lopsided_model(5, (48, 64, 3)).save(path)
    with create_segmenter(SegmentOptions(model=str(path), tta="scales")) as tta:
        assert isinstance(tta, TestTimeAverage) and tta.passes == 2
        assert tta.description.endswith(
            "averaged with its mirror image (--tta scales; a model run at a fixed 64x48 has no "
            "other scale)")


@pytest.mark.parametrize("threads, words", [(1, "TFLite (CPU, 1 thread,"), (2, "TFLite (CPU, 2 threads,")])
def test_the_runtime_counts_its_threads_in_good_english(threads, words):
    """The log line a user reads ("segmenter: TFLite (CPU, 1 thread, LiteRT), ..."): not "1 threads"."""
    model = Path(__file__).resolve().parents[1] / "weights" / "unet_live.tflite"
    with create_segmenter(SegmentOptions(model=str(model), threads=threads)) as segmenter:
        assert words in segmenter.runtime and words in segmenter.description
