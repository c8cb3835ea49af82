"""The ``.tflite`` exported beside a Keras model: used when fresh, refused in one line otherwise,
fixed at each input size without changing a value, and run without importing TensorFlow.

The shipped files (``weights/unet.tflite``, ``weights/unet_live.tflite``) must be fresh exports of
the ``.hdf5`` beside them and give the same probabilities. When a ``weights/*.hdf5`` changes, these
tests fail (they never skip for it) until ``python -m portrait.training.export --shipped`` is run.
"""

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest

from conftest import ROOT, SHARED, write_video
from portrait.options import LIVE_MODEL, CaptureOptions, SegmentOptions
from portrait.segment import (
    SHIPPED_MODELS,
    SHORT_SIDE_ATTR,
    AspectSegmenter,
    create_segmenter,
    exported,
    fixed_size,
    keras_compat,
    size_for_frame,
    tflite_utils,
)
from portrait.training import export

REGENERATE = "python -m portrait.training.export --shipped"
TOLERANCE = 1e-3  # probability; the export check itself sees about 3e-6 on the shipped models


def unet_like(path: Path, short_px: int = 64, seed: int = 0) -> Path:
    """A small real model shaped like ours: padding + strided conv down, bilinear UpSampling2D
    up (the ops a dynamic export computes sizes for), Rescaling in, sigmoid out, the short-side
    mark our training writes."""
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)
    x = keras.layers.ZeroPadding2D(((0, 1), (0, 1)))(x)
    down = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(x)
    up = keras.layers.UpSampling2D(2, interpolation="bilinear")(down)
    skip = keras.layers.Conv2D(8, 1)(inputs)
    x = keras.layers.Concatenate()([up, skip])
    outputs = keras.layers.Conv2D(1, 3, padding="same", activation="sigmoid")(x)
    keras.Model(inputs, outputs).save(path)
    with h5py.File(path, "a") as f:
        f.attrs[SHORT_SIDE_ATTR] = short_px
    return path


@pytest.fixture()
def with_export(tmp_path):
    """A model and its fresh export beside it, in a folder of their own."""
    model = unet_like(tmp_path / "mine.hdf5")
    export.export_model(str(model), str(tmp_path / "mine.tflite"))
    return model


def refusals(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "portrait.segment.exported" and r.levelno >= logging.WARNING]


# ---------------------------------------------------------------- the mechanism, on a small model


def test_a_fresh_export_beside_the_model_runs_instead_of_a_conversion(with_export, caplog):
    frame = np.random.default_rng(0).integers(0, 256, (720, 1280, 3), np.uint8)
    with caplog.at_level(logging.INFO):
        with create_segmenter(SegmentOptions(model=str(with_export), device="cpu")) as fast:
            assert isinstance(fast, AspectSegmenter)
            assert "mine.tflite (exported from" in fast.description and "short side 64 px" in fast.description
            assert fast.input_size == (128, 64)
            found = fast.segment(frame)
    assert not refusals(caplog)
    with create_segmenter(SegmentOptions(model=str(with_export), device="cpu", backend="keras",
                                         input_size=(128, 64))) as keras_run:
        expected = keras_run.segment(frame)
    np.testing.assert_allclose(found, expected, atol=1e-5)


def test_a_stale_export_is_refused_in_one_line_and_the_model_converted(with_export, caplog):
    with h5py.File(with_export, "a") as f:  # the .hdf5 changes after the export was made
        f.attrs[SHORT_SIDE_ATTR] = 96
    with caplog.at_level(logging.INFO):
        with create_segmenter(SegmentOptions(model=str(with_export), device="cpu")) as segmenter:
            assert "converted from" in segmenter.description
            assert "short side 96 px" in segmenter.description  # the model as it is now
    [line] = refusals(caplog)
    message = line.getMessage()
    assert "\n" not in message
    assert "mine.tflite" in message and "stale" in message and "SHA-256" in message
    assert "python -m portrait.training.export --model" in message and "mine.tflite" in message


@pytest.mark.parametrize("damage", ["truncated", "garbage", "unmarked", "older recipe",
                                    "newer recipe"])
def test_a_corrupt_or_unmarked_export_is_refused_in_one_line(with_export, caplog, damage):
    beside = with_export.with_suffix(".tflite")
    content = beside.read_bytes()
    if damage == "truncated":
        beside.write_bytes(content[: len(content) // 2])
    elif damage == "garbage":
        beside.write_bytes(os.urandom(4096))
    elif damage == "unmarked":  # a plain conversion without the record of its source, as older
        # exports were
        beside.write_bytes(tflite_utils.mark_tflite_metadata(content, {tflite_utils.EXPORT_KEY: b""}))
    else:  # this very model's export, by a recipe since changed (or by a later version's)
        step = -1 if damage == "older recipe" else 1
        info = dict(tflite_utils.read_export_info(content), format=tflite_utils.EXPORT_FORMAT + step)
        beside.write_bytes(tflite_utils.mark_tflite_metadata(
            content, {tflite_utils.EXPORT_KEY: json.dumps(info).encode()}))
    with caplog.at_level(logging.INFO):
        with create_segmenter(SegmentOptions(model=str(with_export), device="cpu")) as segmenter:
            assert "converted from" in segmenter.description
            segmenter.segment(np.zeros((72, 128, 3), np.uint8))
    [line] = refusals(caplog)
    message = line.getMessage()
    assert "\n" not in message and "mine.tflite" in message and "regenerate it with" in message
    expected = {"truncated": "not a readable TFLite model", "garbage": "not a readable TFLite model",
                "unmarked": "does not record which mine.hdf5",
                "older recipe": "made by an older export recipe (format "
                                f"{tflite_utils.EXPORT_FORMAT - 1}, "
                                f"now {tflite_utils.EXPORT_FORMAT})",
                "newer recipe": "made by a newer export recipe (format "
                                f"{tflite_utils.EXPORT_FORMAT + 1}, "
                                f"now {tflite_utils.EXPORT_FORMAT})"}[damage]
    assert expected in message


def test_an_export_at_the_size_a_model_from_elsewhere_runs_at_is_used(tmp_path, caplog):
    """A model with a dynamic input that notes no short side (one trained elsewhere): export
    writes it at 256x256, the size the app converts it at, and the app refused that file ('its
    input is fixed at 256x256, not the model's size') with the advice to run the very export
    that wrote it, and converted the model at every start. The export is used; one fixed with
    --input-size serves the app's --input-size; a size the app does not run is refused."""
    model = unet_like(tmp_path / "theirs.hdf5")
    with h5py.File(model, "a") as f:
        del f.attrs[SHORT_SIDE_ATTR]
    beside = export.export_model(str(model), str(tmp_path / "theirs.tflite"))
    assert tflite_utils.input_shape(beside)[1] == [1, 256, 256, 3]
    with caplog.at_level(logging.INFO):
        with create_segmenter(SegmentOptions(model=str(model), device="cpu")) as segmenter:
            assert "theirs.tflite (exported from" in segmenter.description
            assert segmenter.input_size == (256, 256)
    assert not refusals(caplog)
    config = keras_compat.read_model_config(model)
    assert exported.fresh_companion(model, config, (128, 96)) is None  # the app runs 128x96
    [line] = refusals(caplog)
    assert "its input is fixed at 256x256, not the size the model runs at here" in line.getMessage()
    export.export_model(str(model), str(beside), input_size=(128, 96))
    assert exported.fresh_companion(model, config, (128, 96)) == beside.read_bytes()
    assert exported.fresh_companion(model, config) is None  # without --input-size: 256x256


def test_no_export_beside_a_model_is_no_refusal_and_a_square_one_is_no_aspect_run(with_export,
                                                                                 caplog):
    """A Keras model with no ``.tflite`` beside it (the usual case) is converted without a
    word about an export. One that notes its short side runs at each frame's aspect, so its
    export fixed at 256x256 (the size for models without the note) is refused."""
    config = keras_compat.read_model_config(with_export)
    beside = with_export.with_suffix(".tflite")
    square = fixed_size.fix_input_size(beside.read_bytes(), (256, 256))
    beside.unlink()
    with caplog.at_level(logging.INFO):
        assert exported.fresh_companion(with_export, config) is None
    assert not refusals(caplog)
    beside.write_bytes(square)
    assert tflite_utils.input_shape(beside)[1] == [1, 256, 256, 3]
    with caplog.at_level(logging.INFO):
        assert exported.fresh_companion(with_export, config) is None
    [line] = refusals(caplog)
    assert "its input is fixed at 256x256, not the size the model runs at here" in line.getMessage()
    # Given by name, that file runs at its own size, though its record still notes the short side.
    assert tflite_utils.read_export_info(square)["input_short_px"] == 64
    with create_segmenter(SegmentOptions(model=str(beside))) as segmenter:
        assert not isinstance(segmenter, AspectSegmenter) and segmenter.input_size == (256, 256)


def no_size_model(path: Path, short_px=None) -> Path:
    """A real Sequential model whose saved config states no input size (its InputLayer entry
    left out, as a Sequential that ``build()`` sized is stored without one); it loads with a
    dynamic input. ``short_px``: the short-side mark our training writes."""
    import json

    import keras

    model = keras.Sequential([keras.layers.Rescaling(1 / 255),
                              keras.layers.Conv2D(4, 3, padding="same", activation="relu"),
                              keras.layers.Conv2D(1, 1, activation="sigmoid")])
    model.build((None, None, None, 3))
    model.save(path)
    with h5py.File(path, "a") as f:
        config = json.loads(f.attrs["model_config"])
        config["config"]["layers"] = [layer for layer in config["config"]["layers"]
                                      if layer["class_name"] != "InputLayer"]
        f.attrs["model_config"] = json.dumps(config)
        if short_px:
            f.attrs[SHORT_SIDE_ATTR] = short_px
    assert keras_compat.config_input_size(keras_compat.read_model_config(path)) is None
    return path


def _converted(model: Path, **options):
    """The app's own conversion of ``model`` (no export used): (runs at each frame's aspect,
    the input size it runs at now)."""
    from portrait.segment.convert import create_converted

    config = keras_compat.read_model_config(model)
    segmenter = create_converted(model, config, SegmentOptions(model=str(model), device="cpu",
                                                               **options), "a test")
    with segmenter:
        return isinstance(segmenter, AspectSegmenter), segmenter.input_size


def test_a_model_whose_config_states_no_input_size_is_run_by_one_rule(tmp_path, caplog):
    """A model whose config states no input: export wrote it at 256x256 (no short side) and the
    app refused that very export ('fixed at 256x256, not the size the model runs at here') and
    converted at 256x256; one that notes its short side was exported dynamic, but converted at
    256x256, square, where its export ran at each frame's aspect. Now the export is used and the
    conversion runs as the export does."""
    plain = no_size_model(tmp_path / "plain.hdf5")
    beside = export.export_model(str(plain), str(tmp_path / "plain.tflite"))
    assert tflite_utils.input_shape(beside)[1] == [1, 256, 256, 3]
    with caplog.at_level(logging.WARNING):
        with create_segmenter(SegmentOptions(model=str(plain), device="cpu")) as segmenter:
            assert "plain.tflite (exported from" in segmenter.description
            assert segmenter.input_size == (256, 256)
    assert not refusals(caplog)
    assert _converted(plain) == (False, (256, 256))

    marked = no_size_model(tmp_path / "marked.hdf5", short_px=64)
    camera = CaptureOptions()
    aspect = (True, size_for_frame((camera.width, camera.height), 64))
    assert _converted(marked) == aspect  # was (False, (256, 256))
    export.export_model(str(marked), str(tmp_path / "marked.tflite"))
    with create_segmenter(SegmentOptions(model=str(marked), device="cpu")) as segmenter:
        assert "marked.tflite (exported from" in segmenter.description
        assert (isinstance(segmenter, AspectSegmenter), segmenter.input_size) == aspect


@pytest.mark.slow
def test_a_fixed_export_is_used_exactly_where_the_conversion_runs_at_its_size(tmp_path, caplog):
    """For a model that notes its short side, one that does not and one whose config states no
    size, each exported at 128x96: with or without --letterbox (which changes where a frame
    goes, not the input's size) and with or without --input-size, the app takes the export
    where, and only where, converting the model would run it at 128x96."""
    models = [unet_like(tmp_path / "marked.hdf5"), no_size_model(tmp_path / "plain.hdf5")]
    unmarked = unet_like(tmp_path / "unmarked.hdf5")
    with h5py.File(unmarked, "a") as f:
        del f.attrs[SHORT_SIDE_ATTR]
    models.append(unmarked)
    for model in models:
        export.export_model(str(model), str(model.with_suffix(".tflite")), input_size=(128, 96))
        config = keras_compat.read_model_config(model)
        for letterbox in (False, True):
            for input_size in (None, (128, 96), (96, 128)):
                aspect, size = _converted(model, letterbox=letterbox, input_size=input_size)
                used = exported.fresh_companion(model, config, input_size) is not None
                assert used == (not aspect and size == (128, 96)), (model.name, letterbox,
                                                                    input_size, aspect, size)
                if input_size == (128, 96):
                    assert used, model.name


@pytest.mark.slow
def test_the_keras_runtime_runs_each_model_at_the_size_the_conversion_does(tmp_path):
    """The tf.function path (the GPU's; here --backend keras --device cpu) and the CPU's
    conversion size a model by one rule (keras_run_size): for a model that notes its short side,
    one that does not, one whose config states no size (with and without the note) and one with
    a fixed input, with and without --letterbox and --input-size, both run at each frame's aspect
    or both at the same input size. The Keras path kept its own copy of the rule, free to drift."""
    import keras

    fixed = tmp_path / "fixed.hdf5"
    inputs = keras.Input((96, 128, 3))
    keras.Model(inputs, keras.layers.Conv2D(1, 1, activation="sigmoid")(inputs)).save(fixed)
    unmarked = unet_like(tmp_path / "unmarked.hdf5")
    with h5py.File(unmarked, "a") as f:
        del f.attrs[SHORT_SIDE_ATTR]
    models = [unet_like(tmp_path / "marked.hdf5"), unmarked, no_size_model(tmp_path / "plain.hdf5"),
              no_size_model(tmp_path / "plain_marked.hdf5", short_px=64), fixed]
    seen = set()
    for model in models:
        for extra in ({}, {"letterbox": True}, {"input_size": (96, 64)},
                      {"input_size": (64, 96), "letterbox": True}, {"frame_size": (120, 160)}):
            with create_segmenter(SegmentOptions(model=str(model), backend="keras", device="cpu",
                                                 **extra)) as segmenter:
                assert "tf.function" in segmenter.description
                by_keras = isinstance(segmenter, AspectSegmenter), segmenter.input_size
            assert by_keras == _converted(model, **extra), (model.name, extra)
            seen.add(by_keras)
    assert {aspect for aspect, _ in seen} == {True, False}  # both kinds of choice were compared


def test_an_export_named_as_the_model_runs_and_warns_when_its_source_changed(with_export, caplog):
    beside = with_export.with_suffix(".tflite")
    with caplog.at_level(logging.WARNING):
        create_segmenter(SegmentOptions(model=str(beside))).close()
    assert not refusals(caplog)
    with h5py.File(with_export, "a") as f:
        f.attrs["changed"] = 1
    with caplog.at_level(logging.WARNING):
        with create_segmenter(SegmentOptions(model=str(beside))) as segmenter:
            assert "mine.tflite" in segmenter.description  # asked for by name: it still runs
    [line] = refusals(caplog)
    assert "another version of" in line.getMessage() and "\n" not in line.getMessage()
    caplog.clear()
    moved = with_export.parent / "elsewhere" / "mine.tflite"  # copied without its source
    moved.parent.mkdir()
    moved.write_bytes(beside.read_bytes())
    with caplog.at_level(logging.WARNING):
        with create_segmenter(SegmentOptions(model=str(moved))) as segmenter:
            assert "mine.tflite" in segmenter.description
    assert not refusals(caplog)


def test_a_dynamic_conversion_keeps_each_upsampling_s_interpolation():
    """The dynamic conversion traces bilinear UpSampling2D layers as a resize of its own; a
    nearest-neighbour one is left as Keras computes it, not made bilinear."""
    import keras

    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(2, 3, strides=2, padding="same")(inputs)
    outputs = keras.layers.Concatenate()([keras.layers.UpSampling2D(2)(x),
                                          keras.layers.UpSampling2D(2, interpolation="bilinear")(x)])
    model = keras.Model(inputs, outputs)
    content = tflite_utils.convert_keras_to_tflite(model, None)
    frame = np.random.default_rng(0).uniform(0, 1, (1, 48, 64, 3)).astype(np.float32)
    interpreter = tflite_utils.make_interpreter(content, 1)
    [detail] = interpreter.get_input_details()
    interpreter.resize_tensor_input(detail["index"], frame.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(detail["index"], frame)
    interpreter.invoke()
    found = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    np.testing.assert_allclose(found, keras.ops.convert_to_numpy(model(frame)), atol=1e-5)


def test_fixing_the_input_size_keeps_the_output_and_folds_the_shape_ops(with_export):
    content = with_export.with_suffix(".tflite").read_bytes()
    fixed = fixed_size.fix_input_size(content, (96, 64))
    assert tflite_utils.input_shape(fixed) == ([1, 64, 96, 3], [1, 64, 96, 3])
    assert tflite_utils.read_export_info(fixed) == tflite_utils.read_export_info(content)
    image = np.random.default_rng(1).uniform(0, 255, (1, 64, 96, 3)).astype(np.float32)

    def run(model: bytes, resize: bool) -> np.ndarray:
        interpreter = tflite_utils.make_interpreter(model, 1)
        index = interpreter.get_input_details()[0]["index"]
        if resize:
            interpreter.resize_tensor_input(index, [1, 64, 96, 3], strict=False)
        interpreter.allocate_tensors()
        interpreter.set_tensor(index, image)
        interpreter.invoke()
        return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])

    np.testing.assert_allclose(run(fixed, False), run(content, True), atol=1e-6)  # float rounding

    def outputs(model: bytes) -> list[str]:
        return [d["name"] for d in tflite_utils.make_interpreter(model, 1).get_output_details()]

    assert outputs(fixed) == outputs(content)  # not the shape values read to fold them
    ops = op_names(fixed)
    assert "SHAPE" not in ops and "PACK" not in ops and "RESIZE_BILINEAR" in ops
    assert "SHAPE" in op_names(content)  # what was folded
    with pytest.raises(ValueError, match="expected \\(1, -1, -1, 3\\)"):
        fixed_size.fix_input_size(fixed, (96, 64))  # only a dynamic input can be fixed


_FIX_MEMORY = """
import resource, sys
from portrait.segment import fixed_size
content = open(sys.argv[1], "rb").read()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
fixed_size.fix_input_size(content, (640, 480))
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)
"""


def test_fixing_the_input_size_keeps_the_shape_values_not_every_activation():
    """The shape values were read from a run that kept every tensor (preserve_all_tensors):
    fixing the shipped photo file at 640x480 grew the process by 2.4 GB, at 1024x1024
    (--input-size 1024) by 8.5 GB in 50 s, and at 2048x2048 the system killed the app
    without a word. Only the small shape tensors are kept now (273 MB at 640x480)."""
    pytest.importorskip("resource")  # POSIX
    done = subprocess.run([sys.executable, "-c", _FIX_MEMORY, str(ROOT / "weights/unet.tflite")],
                          cwd=ROOT, capture_output=True, text=True, check=True)
    grown_mb = int(done.stdout) / (1024 * 1024 if sys.platform == "darwin" else 1024)
    assert grown_mb < 1000, f"fixing the input size at 640x480 took {grown_mb:.0f} MB more"


def test_each_export_is_fixed_in_a_cache_entry_of_its_own(with_export, tmp_path, monkeypatch):
    """The fixed model is cached by the export's bytes and the size: an export written again
    (retrained, same name) is fixed again, not served the earlier one's entry."""
    monkeypatch.setenv("PORTRAIT_CACHE_DIR", str(tmp_path / "cache"))  # empty, this test's own
    content = with_export.with_suffix(".tflite").read_bytes()
    again = tflite_utils.mark_tflite_metadata(content, {"note": b"exported again"})
    fixed, path, hit = fixed_size.fixed_cached(content, (96, 64), "mine")
    assert not hit and path is not None and "mine-96x64" in path.name
    assert fixed_size.fixed_cached(content, (96, 64), "mine") == (fixed, path, True)
    fixed_again, path_again, hit = fixed_size.fixed_cached(again, (96, 64), "mine")
    assert not hit and path_again != path
    assert tflite_utils.read_tflite_metadata(fixed_again)["note"] == b"exported again"
    other_size, other_path, hit = fixed_size.fixed_cached(content, (64, 96), "mine")
    assert not hit and other_path not in (path, path_again)
    assert tflite_utils.input_shape(other_size)[0] == [1, 96, 64, 3]

def op_names(content: bytes) -> set[str]:
    schema = tflite_utils._schema()
    model = schema.Model.GetRootAs(content, 0)
    graph = model.Subgraphs(0)
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    found = set()
    for i in range(graph.OperatorsLength()):
        code = model.OperatorCodes(graph.Operators(i).OpcodeIndex())
        found.add(names[max(code.BuiltinCode(), code.DeprecatedBuiltinCode())])
    return found


# ---------------------------------------------------------------- the shipped files


@pytest.fixture(scope="module", params=SHIPPED_MODELS)
def shipped(request) -> tuple[Path, bytes]:
    """A shipped model and its exported .tflite, which must be fresh: never skipped."""
    return fresh_shipped(request.param)


def fresh_shipped(name: str) -> tuple[Path, bytes]:
    """The shipped model ``name`` and its exported .tflite; fails, naming the fix, unless fresh."""
    model = ROOT / name
    beside = exported.companion_path(model)
    assert beside.is_file(), f"{beside} is missing; make it with '{REGENERATE}' and commit it"
    content = beside.read_bytes()
    info = tflite_utils.read_export_info(content)
    assert info, f"{beside} does not record its source; regenerate it with '{REGENERATE}'"
    actual = tflite_utils.file_sha256(model)
    assert info["source_sha256"] == actual, (
        f"{beside} is stale: exported from another {model.name} (SHA-256 {info['source_sha256'][:12]}, "
        f"the file is {actual[:12]}); regenerate it with '{REGENERATE}' and commit it")
    assert info["format"] == tflite_utils.EXPORT_FORMAT, f"old export recipe; run '{REGENERATE}'"
    with h5py.File(model, "r") as f:
        assert info["input_short_px"] == int(f.attrs[SHORT_SIDE_ATTR])
    assert exported.fresh_companion(model, keras_compat.read_model_config(model)) == content
    return model, content


@pytest.mark.parametrize("extra, aspect", [
    ({}, True), ({"letterbox": True}, True), ({"input_size": (256, 256)}, False),
    ({"input_size": (256, 192), "letterbox": True}, False)])
def test_the_app_picks_the_shipped_export_at_every_size_rule(extra, aspect):
    """Pins today's choice for both shipped models: their dynamic exports serve the frame's
    aspect (with --letterbox too, which such a model ignores) and any --input-size, started
    without a conversion (TensorFlow not imported)."""
    code = ("import sys\n"
            "from portrait.options import SegmentOptions\n"
            "from portrait.segment import SHIPPED_MODELS, AspectSegmenter, create_segmenter\n"
            "for name in SHIPPED_MODELS:\n"
            f"    with create_segmenter(SegmentOptions(model=name, device='cpu', **{extra!r})) as s:\n"
            "        print(name, isinstance(s, AspectSegmenter), s.input_size, "
            "'(exported from' in s.description)\n"
            "print('tensorflow' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "CUDA_VISIBLE_DEVICES": "-1"})
    assert done.returncode == 0, done.stderr
    *lines, imported = done.stdout.split("\n")[:-1]
    for name, line in zip(SHIPPED_MODELS, lines):
        with h5py.File(ROOT / name, "r") as f:
            short_px = int(f.attrs[SHORT_SIDE_ATTR])
        camera = CaptureOptions()  # the frame size an aspect model starts at
        size = size_for_frame((camera.width, camera.height), short_px) if aspect else extra["input_size"]
        assert line == f"{name} {aspect} {size} True", line
    assert imported == "False"


def frames() -> list[tuple[str, np.ndarray]]:
    """A synthetic 720p frame (always) and a few real EG1800 portraits (when ../shared has them)."""
    rng = np.random.default_rng(5)
    synthetic = cv2.GaussianBlur(rng.integers(0, 256, (720, 1280, 3), np.uint8), (0, 0), 6)
    synthetic[200:700, 500:800] = (60, 90, 200)  # a figure-sized block over the noise
    found = [("synthetic 1280x720", synthetic)]
    data = SHARED / "data" / "eg1800"
    if (data / "test.txt").is_file():
        for stem in (data / "test.txt").read_text().split()[:3]:
            image = cv2.imread(str(data / "images" / f"{stem}.jpg"))
            if image is not None:
                found.append((f"eg1800 {stem}", image))
    return found


@pytest.mark.slow
def test_the_shipped_export_gives_the_probabilities_of_its_hdf5(shipped):
    model, _ = shipped
    with h5py.File(model, "r") as f:
        short_px = int(f.attrs[SHORT_SIDE_ATTR])
    with create_segmenter(SegmentOptions(model=str(model), device="cpu")) as fast:
        assert "(exported from" in fast.description, f"the app did not use the export: {fast.description}"
        for name, frame in frames():
            size = size_for_frame((frame.shape[1], frame.shape[0]), short_px)
            with create_segmenter(SegmentOptions(model=str(model), backend="keras", device="cpu",
                                                 input_size=size)) as keras_run:
                expected = keras_run.segment(frame)
            found = fast.segment(frame)
            assert fast.input_size == size
            difference = float(np.abs(found - expected).max())
            assert difference <= TOLERANCE, (
                f"{model.name}: the .tflite beside it differs from the .hdf5 by {difference:.2g} on "
                f"{name}; regenerate it with '{REGENERATE}'")


def test_a_folder_of_many_shapes_keeps_a_few_models_loaded():
    """Photos of ever new aspect ratios (a folder of crops): the segmenter kept an interpreter
    for every input size it met, about 60 MB each for the photo model (4.6 GB after 26 photos
    with --tta's three short sides). It keeps the last few now and closes the others; a shape
    that comes back is loaded again and gives what it gave before."""
    kept = 4  # AspectSegmenter.SIZES_KEPT: landscape, portrait and two more shapes
    shapes = [(100, 100), (160, 100), (200, 100), (300, 100), (100, 160), (100, 200), (100, 300)]
    rng = np.random.default_rng(3)
    photos = [cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3), np.uint8), (0, 0), 3)
              for w, h in shapes]
    with create_segmenter(SegmentOptions(model=LIVE_MODEL, device="cpu")) as segmenter:
        assert isinstance(segmenter, AspectSegmenter)
        sizes = {size_for_frame(shape, segmenter.short_px) for shape in shapes}
        assert len(sizes) == len(shapes) > kept  # each photo needs a model of its own
        runtimes, first = [], []
        for photo in photos:
            first.append(segmenter.segment(photo).copy())
            runtimes.append(segmenter.current)
        still_open = []
        for runtime, photo in zip(runtimes, photos):
            try:
                runtime.segment(photo)
                still_open.append(runtime)
            except ValueError as error:  # closed
                assert "closed" in str(error)
        assert still_open == runtimes[-kept:]
        again = segmenter.segment(photos[0])  # its model was closed: loaded again
        np.testing.assert_allclose(again, first[0], atol=1e-6)
        assert segmenter.current is not runtimes[0]
        # A size used again counts as used last: a new shape closes the one used longest ago.
        reused, oldest = runtimes[-3], runtimes[-2]
        segmenter.segment(photos[-3])
        assert segmenter.current is reused
        new_shape = cv2.GaussianBlur(rng.integers(0, 256, (100, 120, 3), np.uint8), (0, 0), 3)
        assert size_for_frame((120, 100), segmenter.short_px) not in sizes
        segmenter.segment(new_shape)
        reused.segment(photos[-3])
        with pytest.raises(ValueError, match="closed"):
            oldest.segment(photos[-2])


# ---------------------------------------------------------------- start-up cost

NO_HEAVY_IMPORTS = """
import sys
import numpy as np
from portrait.options import SegmentOptions
from portrait.segment import create_segmenter
with create_segmenter(SegmentOptions(model=MODEL, device=DEVICE)) as segmenter:
    assert "exported from" in segmenter.description, segmenter.description
    segmenter.segment(np.zeros((720, 1280, 3), np.uint8))
print(sorted(m for m in ("tensorflow", "keras", "mediapipe") if m in sys.modules))
"""


@pytest.mark.parametrize("device, env", [("cpu", {}), ("auto", {"CUDA_VISIBLE_DEVICES": "-1"})])
def test_the_fast_path_imports_neither_tensorflow_nor_keras(device, env):
    """In a fresh process: the shipped live model on the CPU, through its export. (``auto`` asks
    TensorFlow about GPUs where one is plausible; hiding the GPUs makes the test machine-proof.)"""
    fresh_shipped(LIVE_MODEL)
    code = NO_HEAVY_IMPORTS.replace("MODEL", repr(LIVE_MODEL)).replace("DEVICE", repr(device))
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                            timeout=120, env={**os.environ, **env})
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_the_app_runs_a_video_without_importing_tensorflow(tmp_path):
    fresh_shipped(LIVE_MODEL)
    video = write_video(tmp_path / "in.avi", 3, size=(160, 90))
    code = ("import atexit, sys, runpy\n"
            "atexit.register(lambda: print('imported:', sorted({m.split('.')[0] for m in sys.modules}"
            " & {'tensorflow', 'keras', 'mediapipe'})))\n"
            f"sys.argv = ['app.py', '--source', {str(video)!r}, '--max-frames', '2', '--out', "
            f"{str(tmp_path / 'out.avi')!r}]\n"
            "runpy.run_path('app.py', run_name='__main__')\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                            timeout=120, env={**os.environ, "CUDA_VISIBLE_DEVICES": "-1"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert "imported: []" in result.stdout
    assert "deprecated" not in result.stderr and "(exported from" in result.stderr


def test_without_litert_the_tflite_interpreter_of_tensorflow_runs_quietly(with_export, tmp_path):
    """Where ai-edge-litert is not installed, tf.lite.Interpreter runs the model, and its
    deprecation warning is not shown."""
    code = ("import sys, warnings\n"
            "sys.modules['ai_edge_litert'] = None  # as if the package were not installed\n"
            "warnings.simplefilter('default')\n"
            "import numpy as np\n"
            "from portrait.options import SegmentOptions\n"
            "from portrait.segment import create_segmenter\n"
            f"with create_segmenter(SegmentOptions(model={str(with_export)!r}, device='cpu')) as s:\n"
            "    print(s.description)\n"
            "    print(s.segment(np.zeros((72, 128, 3), np.uint8)).shape)\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                            timeout=180)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "tf.lite)" in result.stdout and "(exported from" in result.stdout
    assert "(64, 128)" in result.stdout
    assert "deprecated" not in result.stderr.lower()
