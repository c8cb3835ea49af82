"""filtered_stderr: native lines on file descriptor 2 are dropped or written back."""

import logging
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from conftest import ROOT, shared_path

from portrait.native_log import XNNPACK_INFO, drop_model_load_noise, filtered_stderr


def native_write(text: str) -> None:
    os.write(2, text.encode())  # as C++ code writes: past sys.stderr


def test_drops_only_the_lines_asked(capfd):
    with filtered_stderr(drop_model_load_noise):
        native_write(f"INFO: {XNNPACK_INFO} for CPU.\n")
        native_write("W0000 inference_feedback_manager.cc:121] Feedback manager requires a model "
                     "with a single signature inference. Disabling support for feedback tensors.\n")
        native_write("E something that matters\n")
    assert capfd.readouterr().err == "E something that matters\n"


def test_default_drops_everything_on_success(capfd):
    with filtered_stderr():
        native_write("I cuda probing\nI oneDNN note\n")
    assert capfd.readouterr().err == ""


def test_everything_comes_back_when_the_block_raises(capfd):
    with pytest.raises(RuntimeError):
        with filtered_stderr():
            native_write("F why it failed\n")
            raise RuntimeError("boom")
    assert capfd.readouterr().err == "F why it failed\n"


def test_a_stop_request_drops_the_lines_as_a_success_does(capfd):
    """Ctrl-C while a model loads needs no explaining: its native lines stay hidden."""
    with pytest.raises(KeyboardInterrupt):
        with filtered_stderr():
            native_write("I cuda probing\n")
            raise KeyboardInterrupt
    assert capfd.readouterr().err == ""


def test_debug_logging_captures_nothing(capfd):
    logger = logging.getLogger("portrait")
    old = logger.level
    logger.setLevel(logging.DEBUG)
    try:
        with filtered_stderr():
            native_write("I shown with -v\n")
    finally:
        logger.setLevel(old)
    assert capfd.readouterr().err == "I shown with -v\n"


def test_the_app_does_not_greet_with_the_xnnpack_line(tmp_path):
    """In a fresh process, as a user runs it: TFLite's delegate line would print once per process."""
    model = shared_path("models", "selfie_segmentation.tflite")
    image = tmp_path / "in.png"
    cv2.imwrite(str(image), np.full((64, 48, 3), 128, np.uint8))
    result = subprocess.run([sys.executable, str(ROOT / "app.py"), "--model", str(model), "--image",
                             str(image), "--out", str(tmp_path / "out.png")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out.png").is_file()
    assert XNNPACK_INFO not in result.stderr


def test_the_mediapipe_backend_is_quiet_under_q(tmp_path):
    """`import mediapipe` imports TensorFlow when it is installed, whose CUDA and oneDNN lines
    went past -q for --backend mediapipe."""
    model = shared_path("models", "selfie_segmentation.tflite")
    image = tmp_path / "in.png"
    cv2.imwrite(str(image), np.full((64, 48, 3), 128, np.uint8))
    result = subprocess.run([sys.executable, str(ROOT / "app.py"), "--backend", "mediapipe",
                             "--model", str(model), "--image", str(image),
                             "--out", str(tmp_path / "out.png"), "-q"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out.png").is_file()
    assert result.stderr == ""
