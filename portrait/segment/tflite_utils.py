"""TFLite helpers: Keras → TFLite conversion, the conversion cache, and our metadata marks.

The cache lives in the user's cache folder (``$PORTRAIT_CACHE_DIR``, else
``$XDG_CACHE_HOME/portrait``, else ``~/.cache/portrait``), never in the repository. A cached file
is keyed by the SHA-256 of the model file's bytes, the input size and the converter version, so a
changed model, size or TensorFlow gives a fresh conversion. Files are written atomically (a
temporary file in the same folder, then ``os.replace``) so a crash or a second process never
leaves a half-written model behind.

Metadata: a ``.tflite`` flatbuffer holds named metadata entries that point at buffers. We add one
named ``portrait_input_norm`` whose buffer is the ASCII name of the input scaling (``raw``,
``unit`` or ``symmetric``); ``export.py`` and the cache write it, the segmenter reads it.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import tempfile
import warnings
from pathlib import Path
from typing import Callable, Optional, Union

log = logging.getLogger(__name__)

INPUT_NORM_KEY = "portrait_input_norm"
INPUT_NORMS = ("raw", "unit", "symmetric")
# Bump when the conversion recipe changes so old cache entries are not reused.
CACHE_FORMAT = "1"

BytesOrPath = Union[str, os.PathLike, bytes, bytearray]


def cache_dir() -> Path:
    """Return the folder for cached conversions (not created here).

    ``$PORTRAIT_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/portrait``, else ``~/.cache/portrait``.
    """
    explicit = os.environ.get("PORTRAIT_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "portrait"


def file_sha256(path: Union[str, os.PathLike]) -> str:
    """Return the hex SHA-256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def converter_version() -> str:
    """Return the TensorFlow version that does the conversion (part of the cache key)."""
    import tensorflow as tf

    return tf.__version__


def cache_key(model_sha256: str, input_size: tuple[int, int]) -> str:
    """Return the cache key for a model file hash and an input size (width, height)."""
    width, height = input_size
    text = f"{model_sha256}|{width}x{height}|tf{converter_version()}|fmt{CACHE_FORMAT}"
    return hashlib.sha256(text.encode()).hexdigest()


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: a temporary file beside it, then ``os.replace``.

    Raises:
        OSError: the folder cannot be created or written.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise


def convert_keras_to_tflite(model, input_size: tuple[int, int]) -> bytes:
    """Convert a Keras model to an fp32 TFLite flatbuffer with a fixed (1, H, W, 3) input.

    The model is wrapped in a new functional model whose input has batch 1 and the given spatial
    size, so the TFLite graph has fully static shapes (XNNPACK runs fastest that way).

    Args:
        model: a Keras 3 model taking (batch, H, W, 3).
        input_size: (width, height) to fix.

    Returns:
        The ``.tflite`` file's bytes.

    Raises:
        Exception: whatever the TFLite converter raises; the caller turns it into a ModelError.
    """
    import keras
    import tensorflow as tf

    width, height = input_size
    fixed_input = keras.Input(batch_shape=(1, height, width, 3), name="image")
    fixed = keras.Model(fixed_input, model(fixed_input, training=False), name="fixed_input")
    converter = tf.lite.TFLiteConverter.from_keras_model(fixed)
    # Keras' exporter prints the temporary SavedModel's signature to stdout; keep it in the log.
    captured = io.StringIO()
    tf_logger = logging.getLogger("tensorflow")
    level = tf_logger.level
    tf_logger.setLevel(max(level, logging.WARNING))  # "Assets written to <tmp>" is noise here
    try:
        with contextlib.redirect_stdout(captured):
            flatbuffer = converter.convert()
    finally:
        tf_logger.setLevel(level)
    log.debug("TFLite converter output: %s", captured.getvalue().strip())
    return bytes(flatbuffer)


def cached_conversion(
    model_path: Union[str, os.PathLike],
    input_size: tuple[int, int],
    convert: Callable[[], bytes],
) -> tuple[bytes, Optional[Path], bool]:
    """Return a TFLite conversion of ``model_path`` from the cache, converting on a miss.

    Args:
        model_path: the source model file (its bytes are hashed).
        input_size: (width, height) the conversion is fixed at.
        convert: called on a cache miss; returns the ``.tflite`` bytes (already marked with any
            metadata the caller wants cached with it).

    Returns:
        (tflite bytes, cache file path or None when the cache folder is not writable, hit).
        A cache that cannot be written is logged and the conversion is used from memory.
    """
    key = cache_key(file_sha256(model_path), input_size)
    width, height = input_size
    path = cache_dir() / "tflite" / f"{Path(model_path).stem}-{width}x{height}-{key[:24]}.tflite"
    try:
        data = path.read_bytes()
    except OSError:
        data = b""
    if data:
        log.debug("TFLite cache hit: %s", path)
        return data, path, True
    data = convert()
    try:
        write_atomic(path, data)
    except OSError as error:
        log.warning("cannot write the TFLite cache %s (%s); converting again next start", path, error)
        return data, None, False
    log.info("cached TFLite conversion in %s", path)
    return data, path, False


def _read_bytes(source: BytesOrPath) -> bytes:
    if isinstance(source, (bytes, bytearray)):
        return bytes(source)
    return Path(source).read_bytes()


def _schema():
    from tensorflow.lite.python import schema_py_generated

    return schema_py_generated


def read_tflite_metadata(source: BytesOrPath) -> dict[str, bytes]:
    """Return the named metadata entries of a ``.tflite`` model as ``{name: buffer bytes}``.

    Args:
        source: a path or the file's bytes.

    Raises:
        ValueError: the bytes are not a TFLite flatbuffer.
    """
    data = _read_bytes(source)
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise ValueError(f"not a TFLite flatbuffer: identifier {data[4:8]!r} != b'TFL3'")
    model = _schema().Model.GetRootAs(data, 0)
    entries = {}
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        name = (entry.Name() or b"").decode("utf-8", "replace")
        buffer_index = entry.Buffer()
        if 0 <= buffer_index < model.BuffersLength():
            buffer = model.Buffers(buffer_index)
            if buffer.DataLength():
                entries[name] = buffer.DataAsNumpy().tobytes()
            elif buffer.Offset() and buffer.Size():
                # Large models keep buffers after the flatbuffer, addressed by offset.
                entries[name] = data[buffer.Offset(): buffer.Offset() + buffer.Size()]
            else:
                entries[name] = b""
    return entries


def read_tflite_input_norm(source: BytesOrPath) -> Optional[str]:
    """Return the input scaling our export marked in a ``.tflite`` model, or None if unmarked.

    Args:
        source: a path or the file's bytes.

    Returns:
        ``raw``, ``unit`` or ``symmetric``; None for a model without (or with an unknown) mark.

    Raises:
        ValueError: the bytes are not a TFLite flatbuffer.
    """
    value = read_tflite_metadata(source).get(INPUT_NORM_KEY)
    if value is None:
        return None
    norm = value.decode("ascii", "replace").strip("\x00 ")
    if norm not in INPUT_NORMS:
        log.warning("ignoring unknown %s mark %r in the model", INPUT_NORM_KEY, norm)
        return None
    return norm


def mark_tflite_input_norm(source: BytesOrPath, norm: str) -> bytes:
    """Return the ``.tflite`` model with a ``portrait_input_norm`` metadata entry set to ``norm``.

    An existing mark is replaced; other metadata (such as MediaPipe's) is kept. Pass a path to
    mark a file and write the returned bytes yourself (for example with :func:`write_atomic`).

    Args:
        source: a path or the file's bytes.
        norm: ``raw`` (0..255), ``unit`` (x/255) or ``symmetric`` (x/127.5-1).

    Returns:
        The marked model's bytes.

    Raises:
        ValueError: an unknown ``norm`` or bytes that are not a TFLite flatbuffer.
    """
    if norm not in INPUT_NORMS:
        raise ValueError(f"unknown input norm {norm!r}: expected one of {INPUT_NORMS}")
    data = _read_bytes(source)
    read_tflite_metadata(data)  # validates the identifier
    schema = _schema()
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(data, 0))
    buffer = schema.BufferT()
    buffer.data = list(norm.encode("ascii"))
    model.buffers = list(model.buffers or [])
    entries = [m for m in (model.metadata or []) if (m.name or b"") not in (INPUT_NORM_KEY, INPUT_NORM_KEY.encode())]
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = INPUT_NORM_KEY
    entry.buffer = len(model.buffers) - 1
    entries.append(entry)
    model.metadata = entries
    from tensorflow.lite.tools import flatbuffer_utils

    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def output_activation(source: BytesOrPath) -> Optional[str]:
    """Return the builtin op whose values the model's first output carries (``LOGISTIC``, ...).

    Used to tell probabilities from logits without running the model. Usually that is the op
    that produces the output. The mean of several sigmoid outputs (a ``portrait.training.ensemble``
    model: the Keras ``Average`` layer converts to ADDs of the members' LOGISTIC outputs and a
    MUL by 1/n) is also a probability, and reads as ``LOGISTIC``.

    Args:
        source: a path or the file's bytes.

    Returns:
        The op's name, or None when it cannot be told (custom op, no producer).
    """
    import numpy as np

    data = _read_bytes(source)
    schema = _schema()
    model = schema.Model.GetRootAs(data, 0)
    if not model.SubgraphsLength():
        return None
    graph = model.Subgraphs(0)
    if not graph.OutputsLength():
        return None
    names = {value: name for name, value in vars(schema.BuiltinOperator).items() if not name.startswith("_")}
    producers = {}
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        code = model.OperatorCodes(op.OpcodeIndex())
        # Newer files store codes > 127 in BuiltinCode and keep a placeholder in the old field.
        name = names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()))
        inputs = [op.Inputs(j) for j in range(op.InputsLength())]
        for j in range(op.OutputsLength()):
            producers[op.Outputs(j)] = (name, inputs)

    def constant(tensor: int) -> Optional[float]:
        """The value of a one-element float32 constant tensor, else None."""
        if tensor in producers or tensor < 0:
            return None
        described = graph.Tensors(tensor)
        if described.Type() != schema.TensorType.FLOAT32:
            return None
        raw = model.Buffers(described.Buffer()).DataAsNumpy()
        if isinstance(raw, int) or raw.size != 4:
            return None
        return float(np.frombuffer(raw.tobytes(), np.float32)[0])

    def summed_sigmoids(tensor: int) -> int:
        """How many LOGISTIC outputs ``tensor`` adds up (0 when it is anything else)."""
        name, inputs = producers.get(tensor, (None, []))
        if name == "LOGISTIC":
            return 1
        if name == "ADD" and len(inputs) == 2:
            parts = [summed_sigmoids(x) for x in inputs]
            return sum(parts) if all(parts) else 0
        return 0

    output = graph.Outputs(0)
    name, inputs = producers.get(output, (None, []))
    if name == "MUL" and len(inputs) == 2:
        for summed, scale in ((inputs[0], inputs[1]), (inputs[1], inputs[0])):
            count, factor = summed_sigmoids(summed), constant(scale)
            if count > 1 and factor is not None and abs(factor * count - 1.0) < 1e-6:
                return "LOGISTIC"
    return name


def make_interpreter(model_content: bytes, threads: int):
    """Create a ``tf.lite.Interpreter`` for the bytes with ``threads`` CPU threads.

    The deprecation warning that TF 2.20+ prints for ``tf.lite.Interpreter`` is silenced: it is
    still the interpreter TensorFlow ships, and the message would otherwise greet every start.
    """
    import tensorflow as tf

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*tf\.lite\.Interpreter is deprecated.*")
        return tf.lite.Interpreter(model_content=model_content, num_threads=threads)


def input_shape(source: BytesOrPath) -> tuple[list[int], list[int]]:
    """Return (shape, shape_signature) of the model's first input; -1 marks a dynamic size.

    Raises:
        ValueError: not a TFLite flatbuffer, or a model without inputs.
    """
    data = _read_bytes(source)
    read_tflite_metadata(data)  # validates the identifier
    model = _schema().Model.GetRootAs(data, 0)
    if not model.SubgraphsLength() or not model.Subgraphs(0).InputsLength():
        raise ValueError("TFLite model has no input tensor")
    graph = model.Subgraphs(0)
    tensor = graph.Tensors(graph.Inputs(0))
    shape = [int(v) for v in tensor.ShapeAsNumpy()] if tensor.ShapeLength() else []
    signature = [int(v) for v in tensor.ShapeSignatureAsNumpy()] if tensor.ShapeSignatureLength() else shape
    return shape, signature
