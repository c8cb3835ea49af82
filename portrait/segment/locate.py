"""Model files: finding one (the path as given, the project, ``weights/``), what a file is,
and the hints our training stores in it."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from portrait.errors import ModelError
from portrait.options import LIVE_MODEL, PHOTO_MODEL

PROJECT_ROOT = Path(__file__).resolve().parents[2]
WEIGHTS_DIR = PROJECT_ROOT / "weights"
SHARED_DIR = PROJECT_ROOT.parent / "shared"  # development data and models beside the checkout
SHIPPED_MODELS = (PHOTO_MODEL, LIVE_MODEL)
KERAS_SUFFIXES = (".h5", ".hdf5", ".keras")
HDF5_SUFFIXES = (".h5", ".hdf5")  # whole models in HDF5: what train and ensemble write
MODEL_HINT = "pass --model PATH to a .hdf5 or .tflite model"
MEDIAPIPE_SELFIE_PREFIX = "selfie_segmentation"  # MediaPipe's selfie models' file names
SHORT_SIDE_ATTR = "portrait_input_short_px"  # HDF5 attribute our training writes


def resolve_model_path(name: str, hint: str = MODEL_HINT) -> Path:
    """Find a model file: the path as given, else relative to the project, else in ``weights/``.

    Args:
        name: a path, or a bare file name such as ``unet.hdf5``.
        hint: what the user should do instead, for the error message (the default names the
            ``--model`` option; a command that takes models otherwise says so).

    Returns:
        The existing file's path.

    Raises:
        ModelError: no such file (the message says where it looked and what to do), a folder,
            a named pipe or device (never opened: reading one may wait forever), or a file the
            system will not read (permission denied, an input/output error: as it says).
    """
    given = Path(name).expanduser()
    candidates = [given]
    if not given.is_absolute():
        candidates += [PROJECT_ROOT / given, WEIGHTS_DIR / given.name]
    for candidate in candidates:
        if candidate.is_file():
            try:
                with open(candidate, "rb") as file:
                    file.read(1)
            except OSError as error:
                raise unreadable_model(candidate, error) from None
            return candidate
        if candidate.is_dir():
            raise ModelError(f"model '{name}' is a folder, not a model file; {hint}")
        if candidate.exists():
            raise ModelError(f"model '{name}' is not a regular file (a named pipe, a socket or a "
                             f"device); {hint}")
    if name in SHIPPED_MODELS:
        raise ModelError(
            f"the default model '{name}' is missing from this checkout; restore it with 'git "
            f"checkout -- {name}', train one with 'python -m portrait.training.train' (README, "
            "'Train your own'), or pass --model PATH, e.g. a MediaPipe selfie_segmentation.tflite"
        )
    suffix = _its_type(given)
    if suffix is not None:
        hint = f"give the name with its type: '{name}{suffix}'"
    elif given.name.lower().startswith(MEDIAPIPE_SELFIE_PREFIX):
        hint += (" (MediaPipe's selfie models are not in this repository: the README's 'The "
                 "model' section takes them out of the mediapipe 0.10.21 wheel)")
    raise ModelError(f"model '{name}' not found (also looked in weights/); {hint}")


def unreadable_model(path: Path, error: OSError) -> ModelError:
    """The error for a model file that is there but that the system will not read: what it
    says (permission denied, an input/output error), not a guess that the file is damaged."""
    advice = ("let the user who runs this read it (its permissions)"
              if isinstance(error, PermissionError) else "check the file and the disk it is on")
    return ModelError(f"cannot read model '{path}': {error.strerror or error}; {advice}")


def _its_type(given: Path) -> Optional[str]:
    """The type (``.hdf5``) of the model file that ``given`` names without it (``--model
    unet_live`` for ``weights/unet_live.hdf5``), looked for where :func:`resolve_model_path`
    looks, or None."""
    suffixes = (*KERAS_SUFFIXES, ".tflite")
    if given.suffix.lower() in suffixes:
        return None
    places = [given] if given.is_absolute() else [given, PROJECT_ROOT / given,
                                                  WEIGHTS_DIR / given.name]
    for place in places:
        for suffix in suffixes:
            if place.with_name(place.name + suffix).is_file():
                return suffix
    return None


def read_short_side_hint(path: Path) -> Optional[int]:
    """The short side (px) a fully convolutional model of ours was trained for, if it says."""
    if path.suffix.lower() not in HDF5_SUFFIXES:
        return None
    try:
        import h5py

        with h5py.File(path, "r") as f:
            value = f.attrs.get(SHORT_SIDE_ATTR)
    except (OSError, ValueError):
        return None
    return int(value) if value is not None and int(value) > 0 else None


def display_path(path: Path) -> str:
    """The path relative to the working folder when inside it, else as is (for log lines)."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)
