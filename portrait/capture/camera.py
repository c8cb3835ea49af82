"""A webcam by index (:class:`CameraSource`) that rides out camera loss, and the helpers that
tell a camera index from a file name."""

from __future__ import annotations

import logging
import platform
import re
import threading
from typing import Callable, Iterator, NamedTuple, Optional, Protocol

import cv2
import numpy as np

from portrait.capture.base import WALL_CLOCK, Clock, Frame, Source, quiet_opencv, to_bgr_uint8
from portrait.errors import DeviceError

log = logging.getLogger(__name__)


class Capture(Protocol):
    """The part of ``cv2.VideoCapture`` that :class:`CameraSource` uses (OpenCV's names).

    ``grab()`` waits for the camera's next frame and takes it from the driver; ``retrieve()``
    decodes and converts it (MJPG to BGR): the two are timed apart, so ``--stats`` tells the wait
    for the sensor from the work of decoding.
    """

    def isOpened(self) -> bool:
        ...

    def grab(self) -> bool:
        ...

    def retrieve(self) -> tuple[bool, Optional[np.ndarray]]:
        ...

    def set(self, prop: int, value: float) -> bool:
        ...

    def get(self, prop: int) -> float:
        ...

    def release(self) -> None:
        ...



class _Read(NamedTuple):
    """A frame as read from a capture, with how long it took: ``wait_ms`` in ``grab()`` (for
    the camera to deliver it), ``decode_ms`` in ``retrieve()`` and the conversion to BGR."""

    image: np.ndarray
    wait_ms: float
    decode_ms: float


def is_camera_index(source: str) -> bool:
    """True when ``source`` names a camera: ``"0"``, ``" 2 "``, or ``/dev/video2`` on Linux."""
    return camera_index(source) is not None


def camera_index(source: str) -> Optional[int]:
    """The camera index ``source`` names (see :func:`is_camera_index`), else ``None``."""
    text = source.strip()
    if text.isdigit() and len(text) <= 3:
        return int(text)
    match = re.fullmatch(r"/dev/video(\d{1,3})", text)
    return int(match.group(1)) if match else None


def _default_camera_api() -> int:
    """The capture API that opens a camera index quickly and without probing others."""
    system = platform.system()
    if system == "Linux":
        return cv2.CAP_V4L2
    if system == "Windows":
        return cv2.CAP_DSHOW  # opens in well under a second; MSMF can take several
    if system == "Darwin":
        return cv2.CAP_AVFOUNDATION
    return cv2.CAP_ANY


def _open_camera(index: int) -> Capture:
    return cv2.VideoCapture(index, _default_camera_api())


class CameraSource(Source):
    """A webcam by index that rides out camera loss.

    Opening asks for ``width`` x ``height`` at ``fps`` and logs what the camera gave. When reads
    fail mid-stream the camera is released and reopened with a back-off that doubles from
    ``retry_initial_s`` to ``retry_max_s``; ``lost`` is True meanwhile and each transition is
    logged once.

    ``read()`` returns the next frame, or ``None`` while the camera is lost, after waiting at most
    one back-off step: a single-threaded loop can keep a virtual camera fed (last frame or a
    "camera lost" frame) without spinning. Iterating yields frames only, blocking through a loss,
    until ``close()`` (which may be called from another thread); ``frames(lost_markers=True)``
    also yields a ``lost`` marker after each failed reconnection attempt.

    Args:
        index: camera index.
        width, height, fps: what to ask the camera for.
        opener: ``opener(index)`` returns a ``cv2.VideoCapture``-like object (tests pass a double
            of the device); the default opens the platform's native camera API.
        retry_initial_s, retry_max_s: the back-off between reopen attempts.
        clock: what frames are timed by and back-off steps and markers wait on (the wall's;
            tests give one that moves only when waited on).

    Raises:
        DeviceError: the camera can't be opened, or gives no frame at all.
    """

    def __init__(
        self,
        index: int = 0,
        width: int = 1280,
        height: int = 720,
        fps: float = 30.0,
        *,
        opener: Optional[Callable[[int], Capture]] = None,
        retry_initial_s: float = 0.1,
        retry_max_s: float = 2.0,
        clock: Clock = WALL_CLOCK,
    ) -> None:
        if width <= 0 or height <= 0 or fps <= 0:
            raise ValueError(f"unexpected camera request: {width}x{height} at {fps} fps")
        if not 0 < retry_initial_s <= retry_max_s:
            raise ValueError(f"unexpected back-off: {retry_initial_s} s to {retry_max_s} s")
        self.index = index
        self._request = (int(width), int(height), float(fps))
        self._opener = opener or _open_camera
        self._clock = clock
        self._retry_initial_s = retry_initial_s
        self._retry_max_s = retry_max_s
        self._lock = threading.Lock()  # a capture must not be released while it reads
        self._closed = threading.Event()  # set by close(); also wakes back-off waits
        self._capture: Optional[Capture] = None
        self._pending: Optional[_Read] = None  # the frame read while opening
        self._last_image: Optional[np.ndarray] = None
        self._next_index = 0
        self._started_s: Optional[float] = None  # when the first frame was read
        self._lost_since: Optional[float] = None
        self._retry_s = retry_initial_s
        self._next_try = 0.0
        self._fps = float(fps)

        capture = self._try_open()
        if capture is None:
            hint = "try --source 0, or a video file" if index != 0 else (
                "check that a webcam is connected and free, or use --source VIDEO_FILE"
            )
            raise DeviceError(
                f"camera {index} could not be opened: no such camera or it is in use; {hint}"
            )
        read = self._read_from(capture)
        if read is None:
            capture.release()
            raise DeviceError(
                f"camera {index} opened but gave no frames: it may be in use by another app; "
                "close that app or try another --source"
            )
        self._capture, self._pending = capture, read
        image = read.image
        got_fps = capture.get(cv2.CAP_PROP_FPS)
        if got_fps and 0 < got_fps <= 1000:
            self._fps = float(got_fps)
        log.info(
            "camera %d (%s): asked for %dx%d at %g fps, got %dx%d at %g fps",
            index, _backend_name(capture), *self._request,
            image.shape[1], image.shape[0], self._fps,
        )

    @property
    def fps(self) -> float:
        """The frame rate the camera reports (the requested one if it reports none)."""
        return self._fps

    @property
    def lost(self) -> bool:
        """True from the first failed read until a frame arrives again."""
        return self._lost_since is not None

    @property
    def lost_for_s(self) -> float:
        """Seconds since the camera was lost; 0 while it delivers."""
        return 0.0 if self._lost_since is None else self._clock.now() - self._lost_since

    def _try_open(self) -> Optional[Capture]:
        """Open and configure the camera; ``None`` when it isn't there."""
        width, height, fps = self._request
        try:
            with quiet_opencv():
                capture = self._opener(self.index)
                if not capture.isOpened():
                    capture.release()
                    return None
                # MJPG first: most USB webcams deliver 720p/1080p at 30 fps only in MJPG.
                capture.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*"MJPG"))
                capture.set(cv2.CAP_PROP_FRAME_WIDTH, width)
                capture.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
                capture.set(cv2.CAP_PROP_FPS, fps)
                capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # the freshest frame, not a backlog
        except cv2.error as error:
            log.debug("camera %d: open failed: %s", self.index, error)
            return None
        return capture

    def _read_from(self, capture: Capture) -> Optional[_Read]:
        """The next frame, timed in two (see :class:`_Read`), or ``None`` where there is none."""
        started = self._clock.now()
        try:
            if not capture.grab():
                return None
            grabbed = self._clock.now()
            ok, image = capture.retrieve()
        except cv2.error:
            return None
        if not ok or image is None or image.size == 0:
            return None
        image = to_bgr_uint8(image)
        return _Read(image, (grabbed - started) * 1000, (self._clock.now() - grabbed) * 1000)

    def read(self, max_wait_s: Optional[float] = None) -> Optional[Frame]:
        """The next frame, or ``None`` while the camera is lost (or after ``close()``).

        While lost, waits until the next reopen attempt is due (at most ``retry_max_s``), tries
        once, and returns ``None`` if the camera is still gone; with ``max_wait_s``, returns
        ``None`` after that long when no attempt is due by then.
        """
        if self._closed.is_set():
            return None
        if self._lost_since is None:
            read, opening = self._pending, self._pending is not None
            self._pending = None
            if read is None:
                with self._lock:
                    if self._capture is not None:
                        read = self._read_from(self._capture)
            if read is not None:
                return self._frame(read, opening)
            if self._closed.is_set():
                return None
            self._mark_lost()
        return self._retry(max_wait_s)

    def _since_start(self, now: float) -> float:
        """Seconds since the first frame (its ``Frame.pts_s``): a camera's clock is the wall's."""
        if self._started_s is None:
            self._started_s = now
        return now - self._started_s

    def _frame(self, read: _Read, opening: bool = False) -> Frame:
        """The frame of ``read``; one read as the camera opened (``opening``) carries no wait:
        that was the camera starting, not its frame interval."""
        now = self._clock.now()
        frame = Frame(image=read.image, index=self._next_index, time_s=now,
                      decode_ms=read.decode_ms, wait_ms=None if opening else read.wait_ms,
                      pts_s=self._since_start(now))
        self._next_index += 1
        self._last_image = read.image
        return frame

    def _mark_lost(self) -> None:
        self._lost_since = self._clock.now()
        self._retry_s = self._retry_initial_s
        self._next_try = self._lost_since + self._retry_s
        log.warning(
            "camera %d lost (no frame); reconnecting, trying every %g to %g s",
            self.index, self._retry_initial_s, self._retry_max_s,
        )
        with self._lock:
            if self._capture is not None:
                self._capture.release()
                self._capture = None

    def _retry(self, max_wait_s: Optional[float] = None) -> Optional[Frame]:
        wait_s = self._next_try - self._clock.now()
        if max_wait_s is not None and wait_s > max_wait_s:
            self._clock.wait(self._closed, max_wait_s)
            return None  # no attempt due yet
        if wait_s > 0 and self._clock.wait(self._closed, wait_s):
            return None
        with self._lock:
            if self._closed.is_set():
                return None
            capture = self._try_open()
            read = self._read_from(capture) if capture is not None else None
            if read is None:
                if capture is not None:
                    capture.release()
                self._retry_s = min(self._retry_s * 2.0, self._retry_max_s)
                self._next_try = self._clock.now() + self._retry_s
                log.debug("camera %d still lost; next try in %g s", self.index, self._retry_s)
                return None
            self._capture = capture
        log.warning(
            "camera %d is back after %.1f s (%dx%d)",
            self.index, self.lost_for_s, read.image.shape[1], read.image.shape[0],
        )
        self._lost_since = None
        return self._frame(read, opening=True)

    def frames(self, lost_markers: bool = False) -> Iterator[Frame]:
        """Frames until ``close()``; with ``lost_markers``, also markers while the camera is lost.

        A marker is ``Frame(image=last good frame, index=-1, lost=True)``, one per frame time
        of the camera's rate while reconnection attempts go on at their back-off (0.1 to 2 s
        apart): a virtual camera fed a "camera lost" frame at its rate stays a live camera to
        the call (one frame every 0.1 to 2 s, before, which a call app may take for a dead one).
        """
        marker_s = 1.0 / self._fps if lost_markers and self._fps > 0 else None
        while not self._closed.is_set():
            frame = self.read(marker_s)
            if frame is not None:
                yield frame
            elif lost_markers and self.lost and self._last_image is not None:
                now = self._clock.now()
                yield Frame(self._last_image, -1, now, lost=True, pts_s=self._since_start(now))

    def __iter__(self) -> Iterator[Frame]:
        return self.frames()

    def close(self) -> None:
        """Stop iteration and release the camera; safe twice and from another thread."""
        self._closed.set()
        with self._lock:
            if self._capture is not None:
                self._capture.release()
                self._capture = None


def _backend_name(capture: Capture) -> str:
    try:
        return capture.getBackendName()  # type: ignore[attr-defined]
    except (AttributeError, cv2.error):
        return "unknown API"
