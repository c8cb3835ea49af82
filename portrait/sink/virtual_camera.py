"""The virtual camera sink (pyvirtualcam), its consumer check and the camera-lost frame."""

from __future__ import annotations

import functools
import logging
import os
import platform
import sys
import threading
from typing import Optional

import cv2
import numpy as np
import pyvirtualcam

from portrait.capture.base import WALL_CLOCK, Clock
from portrait.errors import DeviceError, InputError
from portrait.sink.base import Sink, to_bgr

log = logging.getLogger(__name__)

V4L2LOOPBACK_HINT = (
    'sudo modprobe v4l2loopback devices=1 exclusive_caps=1 card_label="Portrait Cam"'
)


def check_backend(backend: str) -> str:
    """``backend`` when pyvirtualcam has a backend of that name here (see
    ``pyvirtualcam.register_backend``).

    Raises:
        InputError: no such backend; the message lists those there are.
    """
    known = sorted(pyvirtualcam.camera.BACKENDS)
    if backend not in known:
        raise InputError(
            f"virtual camera backend '{backend}' is not available here (available: "
            f"{', '.join(known) or 'none'}); give one of those to --vcam-backend, or leave it "
            "out to use the first that opens")
    return backend


#: The setup step of a backend whose device is not OBS's or v4l2loopback's: the one
#: ``--vcam-backend`` named is the one to set up, whatever else this system may use.
UNITY_CAPTURE_HINT = (
    "install Unity Capture (github.com/schellingb/UnityCapture): run Install.bat from its "
    "Install folder, as administrator, which registers its \"Unity Video Capture\" device")


def virtual_camera_hint(system: Optional[str] = None, backend: Optional[str] = None) -> str:
    """What to do when no virtual camera device exists, for ``system`` (``platform.system()``'s
    name; default this one's), as the README's "Virtual camera setup" says it; for ``backend``
    (``--vcam-backend``) where one is named: its own device's setup (Unity Capture's installer
    for ``unitycapture``, v4l2loopback's module for ``v4l2loopback``, OBS for ``obs``)."""
    system = platform.system() if system is None else system
    if backend == "unitycapture":
        return UNITY_CAPTURE_HINT
    if backend == "v4l2loopback":
        system = "Linux"
    elif backend == "obs" and system == "Linux":  # OBS's backend is Windows' and macOS'
        return "install OBS Studio and start its virtual camera once"
    if system == "Linux":
        return ("install v4l2loopback (sudo apt install v4l2loopback-dkms) and create one with: "
                f"{V4L2LOOPBACK_HINT}")
    if system == "Windows":
        return ("install OBS Studio (26 or later), start it, click \"Start Virtual Camera\" once "
                "and stop it again (that registers its camera)")
    if system == "Darwin":
        return ("install OBS Studio (30 or later) and start its virtual camera once, so macOS "
                "approves its system extension")
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
        clock: what the back-off is timed by (the wall's; tests give one they move).

    Raises:
        InputError: no backend named ``backend`` (see :func:`check_backend`).
        DeviceError: no virtual camera device (the message says how to create one).
    """

    def __init__(self, width: int, height: int, fps: float, *,
                 backend: Optional[str] = None, device: Optional[str] = None,
                 clock: Clock = WALL_CLOCK) -> None:
        if width <= 0 or height <= 0 or not fps > 0:
            raise ValueError(f"unexpected virtual camera format: {width}x{height} at {fps} fps")
        if backend is not None:
            check_backend(backend)
        self.size = (int(width), int(height))
        self.fps = float(fps)
        self._backend, self._device = backend, device
        self._clock = clock
        self._buffer: Optional[np.ndarray] = None
        self._retry_s = 0.1
        self._next_try = 0.0
        self._closed = False
        self._camera: Optional[pyvirtualcam.Camera] = self._open()
        self.frames_written = 0
        self.frames_dropped = 0
        self.device = self._camera.device
        self._consumers = ConsumerWatch(self.device)
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
                f"{virtual_camera_hint(backend=self._backend)}, or write to a file with "
                "--out out.mp4"
            ) from None

    def has_consumer(self) -> bool:
        """False only when we can tell that no application reads the device (see
        :class:`ConsumerWatch`; this only reads its last answer)."""
        return self._consumers.present

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
        self._next_try = self._clock.now() + self._retry_s

    def _reopen(self) -> bool:
        now = self._clock.now()
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
        """Release the virtual camera; safe twice. A device that fails to close is named in a
        warning: the frames were sent, so the run stands."""
        self._closed = True
        self._consumers.close()
        if self._camera is not None:
            camera, self._camera = self._camera, None
            try:
                camera.close()
            except Exception as error:  # noqa: BLE001: a native backend's close failure
                log.warning("virtual camera did not close cleanly (%s)", error)


class ConsumerWatch:
    """Whether any other process has a device open, kept up to date by a thread of its own.

    Counting readers walks every open file of every process (:func:`device_readers`): about
    0.1-0.2 s on a desktop with 27,000 open files. Done in the stream's own threads, that froze
    the output once a second; here it runs beside them, every ``idle_s`` while nobody reads (so
    the app wakes within about that when a call opens the camera) and every ``busy_s`` while
    someone does (going idle late costs only the CPU of a few frames). ``present`` is True until
    the first count, and for good where readers cannot be counted (not Linux, not a ``/dev``
    path).
    """

    def __init__(self, device: Optional[str], idle_s: float = 1.0, busy_s: float = 5.0) -> None:
        self.device = device
        self.present = True
        self._intervals = (idle_s, busy_s)
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        if device and readers_countable(device):
            self._thread = threading.Thread(target=self._run, name="vcam-consumers", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            readers = device_readers(self.device)
            if readers is None:  # the device went away; the sink's reopen takes care of it
                self.present = True
            else:
                self.present = readers > 0
            if self._stop.wait(self._intervals[self.present]):
                return

    def close(self) -> None:
        """Stop the thread (it finishes its current count first, at most a fraction of a
        second); safe twice."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2.0)


def readers_countable(device: str) -> bool:
    """Whether :func:`device_readers` can count ``device``'s readers here: Linux, an existing
    ``/dev`` path."""
    return (sys.platform.startswith("linux") and str(device).startswith("/dev/")
            and os.path.exists(device))


def device_readers(device: str, own_pid: Optional[int] = None) -> Optional[int]:
    """How many other processes have ``device`` (e.g. ``/dev/video2``) open, or None if unknown.

    Linux only: it reads the links in ``/proc/*/fd`` (the kernel writes each open file's real
    path there, whatever name it was opened by; a link is cheaper to read than its target to
    stat: 120 against 180 ms for 27,000 open files). Processes we may not inspect are not
    counted, so run as the same user as the video-call app (the usual case).
    """
    if not readers_countable(device):
        return None
    own_pid = os.getpid() if own_pid is None else own_pid
    target = os.path.realpath(device)
    readers = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == own_pid:
            continue
        fd_dir = f"/proc/{pid}/fd"
        try:
            for fd in os.listdir(fd_dir):
                try:
                    if os.readlink(f"{fd_dir}/{fd}") == target:
                        readers += 1
                        break
                except OSError:
                    continue
        except OSError:
            continue
    return readers


@functools.lru_cache(maxsize=4)
def camera_lost_frame(width: int, height: int,
                      text: str = "camera lost - reconnecting") -> np.ndarray:
    """A dark BGR frame with ``text`` centred, to show while the camera is gone (one a frame
    time then: drawn once per size, and read-only, as it is shared)."""
    frame = np.full((height, width, 3), 32, np.uint8)
    scale = max(0.4, width / 1280.0)
    thickness = max(1, round(2 * scale))
    (text_w, text_h), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    origin = ((width - text_w) // 2, (height + text_h) // 2)
    cv2.putText(frame, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (220, 220, 220),
                thickness, cv2.LINE_AA)
    frame.setflags(write=False)
    return frame
