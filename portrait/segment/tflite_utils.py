"""TFLite helpers: Keras → TFLite conversion, the conversion cache, our metadata marks, and the
interpreter.

The interpreter is LiteRT's (``ai_edge_litert``, a small package that starts in a fraction of a
second) when it is installed, else TensorFlow's ``tf.lite.Interpreter`` (deprecated there, its
warning silenced). Reading and writing metadata uses the flatbuffer schema LiteRT ships, so neither
needs TensorFlow; only the conversion does.

The cache lives in the user's cache folder (``$PORTRAIT_CACHE_DIR``, else
``$XDG_CACHE_HOME/portrait``, else ``~/.cache/portrait``), never in the repository. A cached file
is keyed by the SHA-256 of the model file's bytes, the input size and the converter version, so a
changed model, size or TensorFlow gives a fresh conversion. Files are written atomically (a
temporary file in the same folder, then ``os.replace``) so a crash or a second process never
leaves a half-written model behind.

Metadata: a ``.tflite`` flatbuffer holds named metadata entries that point at buffers. We add:

* ``portrait_input_norm``: the ASCII name of the input scaling (``raw``, ``unit`` or
  ``symmetric``); ``export.py`` and the cache write it, the segmenter reads it.
* ``portrait_export``: JSON written by ``python -m portrait.training.export``: the Keras file it
  was made from (``source``, ``source_sha256``), the short side the app runs it at
  (``input_short_px``, when the model notes one) and ``format`` (:data:`EXPORT_FORMAT`). The app
  uses a ``.tflite`` beside a Keras file only when these say it was made from that very file.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import struct
import tempfile
import warnings
from collections import Counter
from pathlib import Path
from typing import Callable, Optional, Union

log = logging.getLogger(__name__)

INPUT_NORM_KEY = "portrait_input_norm"
INPUT_NORMS = ("raw", "unit", "symmetric")
EXPORT_KEY = "portrait_export"
# Bump when the export recipe changes: files made by an older recipe are then re-exported.
EXPORT_FORMAT = 1
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


def write_atomic(path: Path, data: bytes, mode: Optional[int] = None) -> None:
    """Write ``data`` to ``path`` atomically: a temporary file beside it, then ``os.replace``.

    Args:
        mode: permission bits the file gets before it takes ``path`` (default: the
            temporary file's own, readable by the user only).

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
        if mode is not None:
            os.chmod(tmp_name, mode)
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise


def convert_keras_to_tflite(model, input_size: Optional[tuple[int, int]]) -> bytes:
    """Convert a Keras model to an fp32 TFLite flatbuffer with a (1, H, W, 3) input.

    The model is wrapped in a new functional model whose input has batch 1 and the given spatial
    size, so the TFLite graph has fully static shapes (XNNPACK runs fastest that way). With
    ``input_size`` None the height and width stay dynamic: one file for every frame shape, which
    the app fixes at each size it needs before running it (:mod:`portrait.segment.fixed_size`).

    Args:
        model: a Keras 3 model taking (batch, H, W, 3).
        input_size: (width, height) to fix, or None to keep them dynamic.

    Returns:
        The ``.tflite`` file's bytes.

    Raises:
        Exception: whatever the TFLite converter raises; the caller turns it into a ModelError.
    """
    import keras
    import tensorflow as tf

    width, height = input_size or (None, None)
    if input_size is None:
        model = _with_shape_agnostic_upsampling(model)
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


def _with_shape_agnostic_upsampling(model):
    """The model with its bilinear ``UpSampling2D`` layers traced as plain ``tf.image.resize``.

    Keras 3's ``UpSampling2D`` checks its target size with Python comparisons, which fail on the
    symbolic height and width of a dynamic input. The clone shares every layer (and so every
    weight) with ``model``; only the upsampling calls are replaced, by the same op
    (``ResizeBilinear``, half-pixel centres) on ``tf.shape``.
    """
    import keras
    import tensorflow as tf

    class ResizeBy(keras.layers.Layer):
        def __init__(self, factors, **kwargs):
            super().__init__(**kwargs)
            self.factors = tuple(int(f) for f in factors)

        def call(self, inputs):
            shape = tf.shape(inputs)
            size = tf.stack([shape[1] * self.factors[0], shape[2] * self.factors[1]])
            return tf.image.resize(inputs, size, method="bilinear")

        def compute_output_shape(self, input_shape):
            batch, height, width, channels = input_shape
            return (batch, height and height * self.factors[0], width and width * self.factors[1],
                    channels)

    def call(layer, *args, **kwargs):
        if (isinstance(layer, keras.layers.UpSampling2D) and layer.interpolation == "bilinear"
                and layer.data_format == "channels_last"):
            return ResizeBy(layer.size, name=layer.name)(*args)
        return layer(*args, **kwargs)

    if isinstance(model, keras.Sequential):  # clone_model has no call_function for these
        return model
    return keras.models.clone_model(model, clone_function=lambda layer: layer,
                                    call_function=call, recursive=True)


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
    return cached_file(f"{Path(model_path).stem}-{width}x{height}", key, convert)


def cached_file(name: str, key: str, make: Callable[[], bytes]) -> tuple[bytes, Optional[Path], bool]:
    """Return the cached ``.tflite`` called ``name`` with ``key``, calling ``make`` on a miss.

    Args:
        name: readable part of the file name (model stem and size).
        key: hex digest of everything the content depends on.
        make: returns the bytes to cache.

    Returns:
        (bytes, cache file path or None when the cache folder is not writable, hit).
    """
    path = cache_dir() / "tflite" / f"{name}-{key[:24]}.tflite"
    try:
        data = path.read_bytes()
    except OSError:
        data = b""
    if data:
        log.debug("TFLite cache hit: %s", path)
        return data, path, True
    data = make()
    try:
        write_atomic(path, data)
    except OSError as error:
        log.warning("cannot write the TFLite cache %s (%s); making it again next start", path, error)
        return data, None, False
    log.info("cached %s in %s", name, path)
    return data, path, False


def _read_bytes(source: BytesOrPath) -> bytes:
    if isinstance(source, (bytes, bytearray)):
        return bytes(source)
    return Path(source).read_bytes()


def _schema():
    """The TFLite flatbuffer schema: LiteRT's copy (no TensorFlow import), else TensorFlow's."""
    try:
        from ai_edge_litert import schema_py_generated
    except ImportError:
        from tensorflow.lite.python import schema_py_generated
    return schema_py_generated


def pack_model(model) -> bytes:
    """Serialise a flatbuffer ``ModelT`` object (see :func:`_schema`) as ``.tflite`` bytes."""
    import flatbuffers

    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


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
    with _corrupt_as_value_error():
        return _metadata_entries(data)


@contextlib.contextmanager
def _corrupt_as_value_error():
    """Reading a truncated or damaged flatbuffer fails with struct or index errors: say ValueError."""
    try:
        yield
    except (struct.error, IndexError, TypeError) as error:
        raise ValueError(f"corrupt TFLite flatbuffer ({error})") from None


def _metadata_entries(data: bytes) -> dict[str, bytes]:
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
    return mark_tflite_metadata(source, {INPUT_NORM_KEY: norm.encode("ascii")})


def mark_tflite_metadata(source: BytesOrPath, entries: dict[str, bytes]) -> bytes:
    """Return the ``.tflite`` model with named metadata entries set (replacing same-named ones).

    A replaced entry keeps its place and its buffer, which takes the new bytes (unless something
    else reads that buffer too: then it gets a new one), so marking a model again with the same
    entries gives the same bytes, not a file ~20 bytes larger each time.

    Args:
        source: a path or the file's bytes.
        entries: ``{name: buffer bytes}``.

    Returns:
        The marked model's bytes; other metadata is kept.

    Raises:
        ValueError: bytes that are not a TFLite flatbuffer.
    """
    data = _read_bytes(source)
    read_tflite_metadata(data)  # validates the identifier
    schema = _schema()
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(data, 0))
    model.buffers = list(model.buffers or [])
    wanted = {name.encode(): value for name, value in entries.items()}
    metadata, placed = [], {}
    for entry in model.metadata or []:
        name = entry.name or b""
        if name not in wanted:
            metadata.append(entry)
        elif name not in placed:  # a second entry of the name (a damaged file's) is dropped
            placed[name] = entry
            metadata.append(entry)
    readers = _buffer_readers(model, metadata)
    for name, value in wanted.items():
        entry = placed.get(name)
        if entry is None:
            entry = schema.MetadataT()
            entry.name = name
            entry.buffer = -1
            metadata.append(entry)
        # Reused where only this entry reads it; never buffer 0, the schema's empty sentinel.
        if 0 < entry.buffer < len(model.buffers) and readers[entry.buffer] == 1:
            buffer = model.buffers[entry.buffer]
        else:
            buffer = schema.BufferT()
            model.buffers.append(buffer)
            entry.buffer = len(model.buffers) - 1
        buffer.data = list(value)
        buffer.offset = buffer.size = 0  # in the flatbuffer, not past its end (a >2 GB model's)
    model.metadata = metadata
    return pack_model(model)


def _buffer_readers(model, metadata) -> Counter:
    """How many tensors and metadata entries of the ``ModelT`` ``model`` read each buffer."""
    readers = Counter(entry.buffer for entry in metadata)
    if model.metadataBuffer is not None:  # the older list of metadata buffers (an array)
        readers.update(int(index) for index in model.metadataBuffer)
    for subgraph in model.subgraphs or []:
        readers.update(tensor.buffer for tensor in subgraph.tensors or [])
    return readers


def export_info(source_path: Union[str, os.PathLike], short_px: Optional[int]) -> dict:
    """The ``portrait_export`` record for a ``.tflite`` exported from ``source_path``."""
    info = {"source": Path(source_path).name, "source_sha256": file_sha256(source_path),
            "format": EXPORT_FORMAT}
    if short_px:
        info["input_short_px"] = int(short_px)
    return info


def mark_export_info(source: BytesOrPath, info: dict) -> bytes:
    """Return the model with its ``portrait_export`` record (see :func:`export_info`)."""
    return mark_tflite_metadata(source, {EXPORT_KEY: json.dumps(info, sort_keys=True).encode()})


def read_export_info(source: BytesOrPath) -> Optional[dict]:
    """Return the ``portrait_export`` record of a model, or None where it has none (or a bad one).

    Raises:
        ValueError: the bytes are not a TFLite flatbuffer.
    """
    value = read_tflite_metadata(source).get(EXPORT_KEY)
    if value is None:
        return None
    try:
        info = json.loads(value.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    return info if isinstance(info, dict) else None


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


def interpreter_module(which: Optional[str] = None):
    """Return (module with ``Interpreter`` and ``OpResolverType``, its name for the log).

    Args:
        which: ``"LiteRT"`` or ``"tf.lite"``; None picks LiteRT (``ai_edge_litert``) when it is
            installed, else TensorFlow's ``tf.lite``.
    """
    if which not in (None, "LiteRT", "tf.lite"):
        raise ValueError(f"unknown interpreter {which!r}: expected 'LiteRT' or 'tf.lite'")
    if which != "tf.lite":
        try:
            from ai_edge_litert import interpreter as litert
        except Exception as error:  # ImportError, or a broken wheel (e.g. a numpy ABI mismatch)
            if which == "LiteRT":
                raise
            log.debug("LiteRT not usable (%s); using tf.lite.Interpreter", error)
        else:
            return litert, "LiteRT"
    import tensorflow as tf

    return _TFLiteModule(tf), "tf.lite"


class _TFLiteModule:
    """``tf.lite`` seen as LiteRT's interpreter module (``Interpreter``, ``OpResolverType``)."""

    def __init__(self, tf):
        self.Interpreter = tf.lite.Interpreter
        self.OpResolverType = tf.lite.experimental.OpResolverType


def make_interpreter(model_content: bytes, threads: int, plain: bool = False,
                     which: Optional[str] = None):
    """Create a TFLite interpreter for the bytes with ``threads`` CPU threads.

    LiteRT's when installed, else ``tf.lite.Interpreter``, whose deprecation warning (TF 2.20+)
    is silenced: the message would otherwise greet every start.

    Args:
        model_content: the ``.tflite`` bytes.
        threads: CPU threads.
        plain: without the default delegate (XNNPACK), for a model whose shapes are only
            known as it runs (not for speed); its intermediate tensors are not kept, so read
            only the outputs after ``invoke``.
        which: as :func:`interpreter_module` (None: LiteRT when installed).
    """
    module, _ = interpreter_module(which)
    options = {}
    if plain:
        options = {"experimental_op_resolver_type":
                   module.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*tf\.lite\.Interpreter is deprecated.*")
        return module.Interpreter(model_content=model_content, num_threads=threads, **options)


def dynamic_image_input(signature: list[int]) -> bool:
    """Whether an input shape signature (see :func:`input_shape`) is an image of any height and width."""
    return len(signature) == 4 and signature[1] == -1 and signature[2] == -1


def input_shape(source: BytesOrPath) -> tuple[list[int], list[int]]:
    """Return (shape, shape_signature) of the model's first input; -1 marks a dynamic size.

    Raises:
        ValueError: not a TFLite flatbuffer, or a model without inputs.
    """
    data = _read_bytes(source)
    read_tflite_metadata(data)  # validates the identifier
    with _corrupt_as_value_error():
        model = _schema().Model.GetRootAs(data, 0)
        if not model.SubgraphsLength() or not model.Subgraphs(0).InputsLength():
            raise ValueError("TFLite model has no input tensor")
        graph = model.Subgraphs(0)
        tensor = graph.Tensors(graph.Inputs(0))
        shape = [int(v) for v in tensor.ShapeAsNumpy()] if tensor.ShapeLength() else []
        signature = [int(v) for v in tensor.ShapeSignatureAsNumpy()] if tensor.ShapeSignatureLength() else shape
    return shape, signature
