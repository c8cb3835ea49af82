"""Keep native libraries' start-up chatter off the user's terminal.

TensorFlow, TFLite and MediaPipe write informational lines from C++ straight to file descriptor 2,
past Python's logging (``Created TensorFlow Lite XNNPACK delegate for CPU``, CUDA probing, ...).
:func:`filtered_stderr` captures the descriptor for the duration of a block and writes back what
the caller does not want dropped; when the block raises, everything is written back, because then
the native lines may explain the error.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
from typing import Callable, Iterator

XNNPACK_INFO = "Created TensorFlow Lite XNNPACK delegate"
# Informational lines that TFLite and MediaPipe print when a model is loaded.
MODEL_LOAD_NOISE = (
    XNNPACK_INFO,
    "Logging before InitGoogle() is written to STDERR",
    "Feedback manager requires a model with a single signature inference",
)


def drop_everything(line: str) -> bool:
    return True


def drop_model_load_noise(line: str) -> bool:
    return any(noise in line for noise in MODEL_LOAD_NOISE)


@contextlib.contextmanager
def filtered_stderr(drop: Callable[[str], bool] = drop_everything) -> Iterator[None]:
    """Capture file descriptor 2 inside the block; afterwards write back the lines not dropped.

    Nothing is captured while debug logging is on, so ``-v`` shows all native output. The capture
    is process-wide: keep the block short (a library import, a model's first allocation).
    """
    if logging.getLogger("portrait").isEnabledFor(logging.DEBUG):
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    failed = False
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        except Exception:  # not Ctrl-C or a stop request: those need no explaining
            failed = True
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            lines = captured.read().decode(errors="replace").splitlines(keepends=True)
            kept = "".join(lines if failed else (line for line in lines if not drop(line)))
            if kept:
                sys.stderr.write(kept)
                sys.stderr.flush()


def import_tensorflow_quietly() -> None:
    """Import TensorFlow with its C++ start-up chatter (CUDA probing, oneDNN notes) hidden.

    Those lines go straight to file descriptor 2, past Python's logging; they are replayed if the
    import fails, so a broken installation still explains itself. Called where TensorFlow is
    first needed (a Keras model to convert or run, a GPU to look for), not at start-up: the CPU
    path with an exported ``.tflite`` never imports it (about 4 s saved).
    """
    if "tensorflow" in sys.modules:
        return
    with filtered_stderr():
        import tensorflow  # noqa: F401


def import_mediapipe_quietly() -> None:
    """Import ``mediapipe`` and its task API with the native chatter hidden, as
    :func:`import_tensorflow_quietly` does: the wheel imports TensorFlow itself when it is
    installed, which prints its CUDA and oneDNN lines past ``-q`` (replayed if the import fails).
    """
    if "mediapipe.tasks.python.vision" in sys.modules:
        return
    with filtered_stderr():
        import mediapipe  # noqa: F401
        from mediapipe.tasks.python import vision  # noqa: F401
