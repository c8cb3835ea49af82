"""Keras model files: loading them safely (including old Keras 2 / tf.keras files) and reading
what the segmenter needs to know about them (input size, input scaling, output activation).

Two jobs need care:

* Safety. A Keras model file can carry Python code (a ``Lambda`` layer's bytecode or source, or
  any ``__lambda__`` function). Loading such a file runs that code, so it is refused unless the
  user passes ``--trust-model``. ``.keras`` files get Keras 3's own ``safe_mode``; legacy
  ``.h5``/``.hdf5`` files are checked here, by reading the ``model_config`` JSON out of the HDF5
  file *before* Keras sees it.
* Compatibility. Keras 2 wrote config keys that Keras 3 layers reject, most often
  ``DepthwiseConv2D(groups=1)``. :func:`legacy_custom_objects` gives, for each built-in layer
  class a config names, a lenient subclass that drops keyword arguments the Keras 3 class does
  not accept (they are training-time or always-default options such as ``groups``, ``fused``,
  ``renorm``), so the model builds and its weights load by layer as usual.
"""

from __future__ import annotations

import inspect
import json
import logging
import warnings
import zipfile
from pathlib import Path
from typing import Any, Iterator, Optional

from portrait.errors import ModelError

log = logging.getLogger(__name__)

KERAS_SUFFIXES = (".h5", ".hdf5", ".keras")
TRUST_HINT = "pass --trust-model only if you trust where the file came from"

def read_model_config(path: Path) -> dict:
    """Return the model architecture JSON stored in a Keras model file.

    Args:
        path: a ``.h5``/``.hdf5`` (HDF5 attribute ``model_config``) or ``.keras`` (zip member
            ``config.json``) file.

    Returns:
        The parsed config dict.

    Raises:
        ModelError: the file is not a readable Keras model (corrupt, truncated, weights only).
    """
    if path.suffix.lower() == ".keras":
        try:
            with zipfile.ZipFile(path) as archive:
                raw = archive.read("config.json")
        except (zipfile.BadZipFile, KeyError, OSError, EOFError) as error:
            raise ModelError(
                f"cannot read model '{path}': not a valid .keras archive, it may be truncated or "
                f"corrupt ({_short(error)}); re-download or re-export the model"
            ) from None
    else:
        import h5py

        try:
            with h5py.File(path, "r") as f:
                raw = f.attrs.get("model_config")
        except OSError as error:
            raise ModelError(
                f"cannot read model '{path}': not a valid HDF5 file, it may be truncated or "
                f"corrupt ({_short(error)}); re-download or re-export the model"
            ) from None
        if raw is None:
            raise ModelError(
                f"cannot read model '{path}': the file holds no model architecture (weights "
                "only?); save the whole model with model.save()"
            )
        if isinstance(raw, bytes):
            raw = raw.decode("utf-8")
    try:
        config = json.loads(raw)
    except ValueError as error:
        raise ModelError(
            f"cannot read model '{path}': its architecture JSON is corrupt ({_short(error)}); "
            "re-download or re-export the model"
        ) from None
    if not isinstance(config, dict):
        raise ModelError(f"cannot read model '{path}': its architecture JSON is not an object")
    return config


def find_serialized_code(config: Any) -> list[str]:
    """Return a description of every place in a model config that carries Python code.

    Flags ``Lambda`` layers, functions serialised as ``__lambda__`` (Keras 3) and
    ``function_type: "lambda"`` entries (Keras 2). Names of built-in functions such as
    ``"relu"`` are not code and are not flagged.

    Args:
        config: a parsed model config (any JSON value).

    Returns:
        Descriptions such as ``"Lambda layer 'scale'"``; empty when the config is code-free.
    """
    found = []
    for node in _walk(config):
        class_name = node.get("class_name")
        inner = node.get("config") if isinstance(node.get("config"), dict) else {}
        if class_name == "Lambda":
            found.append(f"Lambda layer '{inner.get('name', node.get('name', '?'))}'")
        elif class_name == "__lambda__":
            found.append("a serialised Python function")
        elif node.get("function_type") == "lambda" or node.get("output_shape_type") == "lambda":
            found.append(f"serialised Python code in '{node.get('name', '?')}'")
    return list(dict.fromkeys(found))


def check_model_safety(path: Path, config: dict, trust_model: bool, *, warn: bool = True) -> None:
    """Refuse a model whose config carries Python code unless ``trust_model`` is set.

    Args:
        warn: say in a warning that a trusted model's code will run (:func:`load_keras_model`
            does, as it loads it); off for a check made before the load, which said it twice.

    Raises:
        ModelError: code was found and the user did not opt in.
    """
    code = find_serialized_code(config)
    if not code:
        return
    what = ", ".join(code[:3]) + (f" and {len(code) - 3} more" if len(code) > 3 else "")
    if not trust_model:
        raise ModelError(
            f"refusing model '{path}': it contains {what}, which would run Python code from the "
            f"file when loaded; {TRUST_HINT}"
        )
    if warn:
        log.warning("loading model '%s' with %s because --trust-model was given", path, what)


def legacy_custom_objects(config: dict) -> dict[str, type]:
    """Return lenient stand-ins for the built-in layers named in a (Keras 2) model config.

    Each stand-in subclasses the Keras 3 layer and drops constructor keywords the layer does
    not accept (logging them once), e.g. ``DepthwiseConv2D(groups=1)``.

    Args:
        config: the model config from :func:`read_model_config`.

    Returns:
        ``{class_name: lenient subclass}`` for :func:`keras.models.load_model`'s
        ``custom_objects``.
    """
    from keras import layers

    names = {node["class_name"] for node in _walk(config) if isinstance(node.get("class_name"), str)}
    objects = {}
    for name in sorted(names):
        cls = getattr(layers, name, None)
        if isinstance(cls, type) and issubclass(cls, layers.Layer) and name not in ("InputLayer", "Lambda"):
            objects[name] = _lenient(cls)
    return objects


def load_keras_model(path: Path, trust_model: bool = False):
    """Load a Keras model for inference, safely, accepting Keras 2 files.

    Order: read the config and refuse serialised code unless trusted; load with Keras 3; if a
    legacy HDF5 file fails because of Keras 2 config keys, load again with
    :func:`legacy_custom_objects`.

    Args:
        path: an existing ``.h5``/``.hdf5``/``.keras`` file.
        trust_model: allow serialised code (Keras ``safe_mode=False``).

    Returns:
        The ``keras.Model``, not compiled.

    Raises:
        ModelError: a corrupt, unsafe or unloadable file, in one line.
    """
    import keras

    config = read_model_config(path)
    check_model_safety(path, config, trust_model)
    legacy = path.suffix.lower() != ".keras"
    try:
        return keras.models.load_model(path, compile=False, safe_mode=not trust_model)
    except Exception as error:  # Keras raises many types for one bad file
        if not legacy:
            raise _load_error(path, error, trust_model) from None
        log.info("plain Keras 3 load of '%s' failed (%s); retrying with the Keras 2 shim", path, _short(error))
        first_error = error
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*Do not pass an `input_shape`.*")
            model = keras.models.load_model(
                path, custom_objects=legacy_custom_objects(config), compile=False, safe_mode=not trust_model
            )
    except Exception as error:
        # The shim gets past the Keras 2 keys, so its error names what is really left.
        log.debug("plain load error was: %s", first_error)
        raise _load_error(path, error, trust_model) from None
    log.info("loaded '%s' through the Keras 2 compatibility shim (saved by Keras %s)", path, _saved_by(path))
    return model


def _lenient(cls: type) -> type:
    """Subclass ``cls`` so its constructor ignores keywords it does not know."""
    accepted = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        for parameter in inspect.signature(init).parameters.values():
            if parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY):
                accepted.add(parameter.name)
    accepted |= {"input_shape", "input_dim"}  # Layer pops these from **kwargs
    accepted.discard("self")

    def __init__(self, *args, **kwargs):
        shape = kwargs.get("input_shape")
        if shape is not None:
            # Keras 2 saved only ``batch_input_shape``; Keras 3's legacy loader renames it to
            # ``input_shape`` but keeps the batch dimension, which breaks Sequential models.
            kwargs["input_shape"] = tuple(shape)[1:]
        dropped = {k: kwargs.pop(k) for k in list(kwargs) if k not in accepted}
        if dropped:
            log.debug("%s: ignoring Keras 2 arguments %s", cls.__name__, dropped)
        cls.__init__(self, *args, **kwargs)

    return type(cls.__name__, (cls,), {"__init__": __init__, "__module__": __name__})


def _walk(value: Any) -> Iterator[dict]:
    """Yield every dict nested anywhere in a JSON value, in the order the file holds them (a
    refusal names the model's first layers with code), iteratively: configs can be deep."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            yield item
            stack.extend(reversed(list(item.values())))
        elif isinstance(item, list):
            stack.extend(reversed(item))


def _saved_by(path: Path) -> str:
    try:
        import h5py

        with h5py.File(path, "r") as f:
            version = f.attrs.get("keras_version", "?")
        return version.decode() if isinstance(version, bytes) else str(version)
    except OSError:
        return "?"


def _short(error: BaseException, limit: int = 160) -> str:
    """One line of an exception's message, cut to ``limit`` characters."""
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _load_error(path: Path, error: BaseException, trust_model: bool) -> ModelError:
    text = str(error)
    if not trust_model and ("safe_mode" in text or "unsafe" in text.lower()):
        return ModelError(f"refusing model '{path}': it contains serialised Python code ({_short(error)}); {TRUST_HINT}")
    return ModelError(
        f"cannot load model '{path}': {_short(error)}; check that it is a whole Keras model "
        "(model.save) or convert it to .tflite"
    )


def saved_input_size(model) -> Optional[tuple[int, int]]:
    """Return the model's fixed (width, height) input size, or None where it is dynamic.

    Raises:
        ModelError: the input is not (batch, H, W, 3).
    """
    shape = tuple(model.inputs[0].shape) if getattr(model, "inputs", None) else None
    if shape is None or len(shape) != 4 or shape[-1] != 3:
        raise ModelError(
            f"model input shape {shape} is not an image: expected (batch, H, W, 3); "
            "pass a model that takes one RGB image"
        )
    height, width = shape[1], shape[2]
    if height is None or width is None:
        return None
    return int(width), int(height)



def keras_input_norm(model) -> Optional[str]:
    """Return ``raw`` when the model's first layer rescales pixels itself, else None.

    Looks through nested models: a ``Rescaling`` or ``Normalization`` layer as the first
    layer after the input means the model takes RGB 0..255 (our models' contract).
    """
    from keras import layers

    layer = model
    for _ in range(8):  # nested models are rarely deeper than that
        inner = [l for l in getattr(layer, "layers", []) if not isinstance(l, layers.InputLayer)]
        if not inner:
            return None
        layer = inner[0]
        if isinstance(layer, (layers.Rescaling, layers.Normalization)):
            return "raw"
        if not getattr(layer, "layers", None):
            return None
    return None


def keras_output_activation(model) -> Optional[str]:
    """Return ``sigmoid``/``softmax`` if the model's output layer applies one, ``logits`` if it
    applies none (linear), None when it cannot be told."""
    from keras import layers

    layer = model
    for _ in range(8):
        inner = getattr(layer, "layers", None)
        if not inner:
            break
        if isinstance(inner[-1], layers.Average):  # an ensemble (portrait.training.ensemble) reads as its members
            found = {keras_output_activation(l) for l in inner if getattr(l, "layers", None)}
            return found.pop() if found in ({"sigmoid"}, {"softmax"}) else None
        layer = inner[-1]
    if isinstance(layer, layers.Softmax):
        return "softmax"
    activation = getattr(layer, "activation", None)
    name = getattr(activation, "__name__", None)
    if name in ("sigmoid", "softmax"):
        return name
    if name == "linear" and isinstance(layer, (layers.Conv2D, layers.Dense, layers.Activation)):
        return "logits"
    return None


def config_input_size(config: dict):
    """Read the input size from a saved model config without building the model.

    Returns:
        (width, height) for a fixed size, ``"dynamic"`` for (None, None, 3), or None when the
        config does not say plainly (the model is then loaded to find out).
    """
    layers_config = config.get("config", {}).get("layers") if isinstance(config.get("config"), dict) else None
    if not layers_config or not isinstance(layers_config, list):
        return None
    inputs = [l for l in layers_config if isinstance(l, dict) and l.get("class_name") == "InputLayer"]
    first = inputs[0] if len(inputs) == 1 else (layers_config[0] if not inputs else None)
    if not isinstance(first, dict):
        return None
    layer_config = first.get("config", {})
    shape = layer_config.get("batch_shape") or layer_config.get("batch_input_shape")
    if not isinstance(shape, list) or len(shape) != 4 or shape[3] != 3:
        return None
    height, width = shape[1], shape[2]
    if height is None or width is None:
        return "dynamic"
    return int(width), int(height)
