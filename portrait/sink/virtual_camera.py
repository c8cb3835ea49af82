"""The virtual camera sink (pyvirtualcam), its consumer check and the camera-lost frame."""

from __future__ import annotations

import logging
import os
import platform
import sys
import time
from typing import Optional

import cv2
import numpy as np
import pyvirtualcam

from portrait.errors import DeviceError
from portrait.sink.base import Sink, to_bgr

log = logging.getLogger(__name__)

V4L2LOOPBACK_HINT = (
    'sudo modprobe v4l2loopback devices=1 exclusive_caps=1 card_label="Portrait Cam"'
)


def virtual_camera_hint() -> str:
    """What to do when no virtual camera device exists, for this operating system."""
    if platform.system() == "Linux":
        return f"create one with: {V4L2LOOPBACK_HINT}"
    return "install OBS Studio and start its virtual camera once"


class VirtualCameraSink(Sink):
    """Frames to a virtual camera through pyvirtualcam (BGR format).

    The camera's size is fixed when it opens; frames of another size are resized to it. If the
    device stops accepting frames (a driver hiccup, a consumer reopening it), the camera is
    reopened on later writes with a back-off of 0.1 s doubling to 2 s; frames in between are
    dropped and ``write`` never blocks. Pacing is left to the caller.

    Args:
        width, height, fps: the camera's format.
        backend: a pyvirtualcam backend name (see ``pyvirtualcam.register_backend``); ``None``
            tries every registered backend.
        device: a device name (``/dev/video2``), or ``None`` for the first free one.

    Raises:
        DeviceError: no virtual camera device (the message says how to create one).
    """

    def __init__(self, width: int, height: int, fps: float, *,
                 backend: Optional[str] = None, device: Optional[str] = None) -> None:
        if width <= 0 or height <= 0 or not fps > 0:
            raise ValueError(f"unexpected virtual camera format: {width}x{height} at {fps} fps")
        if backend is not None and backend not in pyvirtualcam.camera.BACKENDS:
            known = ", ".join(sorted(pyvirtualcam.camera.BACKENDS)) or "none"
            raise DeviceError(
                f"virtual camera backend '{backend}' is not available (available: {known}); "
                "leave the backend unset"
            )
        self.size = (int(width), int(height))
        self.fps = float(fps)
        self._backend, self._device = backend, device
        self._buffer: Optional[np.ndarray] = None
        self._retry_s = 0.1
        self._next_try = 0.0
        self._closed = False
        self._camera: Optional[pyvirtualcam.Camera] = self._open()
        self.frames_written = 0
        self.frames_dropped = 0
        self.device = self._camera.device
        self._consumer, self._consumer_checked = True, -1.0
        log.info("virtual camera: %s (%s backend), %dx%d at %g fps",
                 self.device, self._camera.backend, *self.size, self.fps)

    def _open(self) -> pyvirtualcam.Camera:
        try:
            return pyvirtualcam.Camera(
                *self.size, self.fps, fmt=pyvirtualcam.PixelFormat.BGR,
                backend=self._backend, device=self._device,
            )
        except Exception as error:  # noqa: BLE001: backends raise RuntimeError or their own
            # pyvirtualcam joins one line per backend, each a few sentences: keep the first.
            text = str(error).strip() or repr(error)
            reason = text.splitlines()[0].split(". ")[0].rstrip(".")
            raise DeviceError(
                f"no virtual camera device could be opened ({reason}); "
                f"{virtual_camera_hint()}, or write to a file with --out out.mp4"
            ) from None

    def has_consumer(self) -> bool:
        """False only when we can tell that no application reads the device (checked ≤ 1/s)."""
        now = time.perf_counter()
        if now >= self._consumer_checked + 1.0:
            self._consumer_checked = now
            readers = device_readers(self.device) if self.device else None
            self._consumer = readers is None or readers > 0
        return self._consumer

    def write(self, image: np.ndarray, pts_s: Optional[float] = None) -> None:
        """Send one frame (resized to the camera's size if needed); drops it while reopening."""
        if self._closed:
            raise ValueError("write() after close()")
        frame = to_bgr(image, self.size, out=self._buffer)
        if frame is not image and frame.shape[:2] != image.shape[:2]:
            self._buffer = frame  # keep the resize buffer for the next frame
        if self._camera is None and not self._reopen():
            self.frames_dropped += 1
            return
        try:
            self._camera.send(frame)
        except (ValueError, TypeError):
            raise  # our bug, not the device's
        except Exception as error:  # noqa: BLE001: a native backend's write failure
            log.warning("virtual camera stopped accepting frames (%s); reopening it", error)
            self._drop_camera()
            self.frames_dropped += 1
            return
        self.frames_written += 1

    def _drop_camera(self) -> None:
        try:
            self._camera.close()
        except Exception as error:  # noqa: BLE001: it is already broken
            log.debug("virtual camera close failed: %s", error)
        self._camera = None
        self._retry_s = 0.1
        self._next_try = time.perf_counter() + self._retry_s

    def _reopen(self) -> bool:
        now = time.perf_counter()
        if now < self._next_try:
            return False
        try:
            self._camera = self._open()
        except DeviceError as error:
            self._retry_s = min(self._retry_s * 2.0, 2.0)
            self._next_try = now + self._retry_s
            log.debug("virtual camera still unavailable: %s", error)
            return False
        log.warning("virtual camera is back: %s", self._camera.device)
        return True

    def close(self) -> None:
        """Release the virtual camera; safe twice."""
        self._closed = True
        if self._camera is not None:
            self._camera.close()
            self._camera = None


def device_readers(device: str, own_pid: Optional[int] = None) -> Optional[int]:
    """How many other processes have ``device`` (e.g. ``/dev/video2``) open, or None if unknown.

    Linux only: it looks through ``/proc/*/fd``. Processes we may not inspect are not counted, so
    run as the same user as the video-call app (the usual case).
    """
    if not sys.platform.startswith("linux") or not str(device).startswith("/dev/"):
        return None
    own_pid = os.getpid() if own_pid is None else own_pid
    try:
        target = os.stat(device).st_rdev
    except OSError:
        return None
    readers = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == own_pid:
            continue
        fd_dir = f"/proc/{pid}/fd"
        try:
            for fd in os.listdir(fd_dir):
                try:
                    if os.stat(f"{fd_dir}/{fd}").st_rdev == target:
                        readers += 1
                        break
                except OSError:
                    continue
        except OSError:
            continue
    return readers


def camera_lost_frame(width: int, height: int,
                      text: str = "camera lost - reconnecting") -> np.ndarray:
    """A dark BGR frame with ``text`` centred, to show while the camera is gone."""
    frame = np.full((height, width, 3), 32, np.uint8)
    scale = max(0.4, width / 1280.0)
    thickness = max(1, round(2 * scale))
    (text_w, text_h), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    origin = ((width - text_w) // 2, (height + text_h) // 2)
    cv2.putText(frame, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (220, 220, 220),
                thickness, cv2.LINE_AA)
    return frame
