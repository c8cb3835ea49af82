"""The preview window sink (an OpenCV window)."""

from __future__ import annotations

import os
import platform
from typing import Callable, Optional

import cv2
import numpy as np

from portrait.errors import DeviceError
from portrait.sink.base import Sink, _check_image


def has_display() -> bool:
    """Whether a window can open: always on Windows/macOS, with DISPLAY or WAYLAND_DISPLAY else."""
    if platform.system() in ("Windows", "Darwin"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def key_name(code: int) -> Optional[str]:
    """``cv2.waitKey``'s code as a one-character key (Esc is ``chr(27)``), or None for no key."""
    code &= 0xFF
    return None if code == 0xFF else chr(code)


class PreviewSink(Sink):
    """A preview window; ``quit_requested`` turns True on ``q``, Esc, or closing the window.

    Args:
        title: the window's title.
        on_key: called with every key pressed in the window (the live controls).

    Raises:
        DeviceError: no display to open a window on (checked first: Qt would abort the process).
    """

    def __init__(self, title: str = "portrait",
                 on_key: Optional[Callable[[str], None]] = None) -> None:
        if not has_display():
            raise DeviceError("cannot open a preview window: no display (DISPLAY is not set); "
                              "leave out --preview (--no-preview where a config file sets it)")
        self.title = title
        self.on_key = on_key
        self.quit_requested = False
        self.frames_written = 0
        self._shown = False

    def write(self, image: np.ndarray, pts_s: Optional[float] = None) -> None:
        """Show one frame and poll the keyboard and the window."""
        _check_image(image)
        try:
            if not self._shown:
                cv2.namedWindow(self.title, cv2.WINDOW_NORMAL)
                self._shown = True
            elif cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) < 1:
                self.quit_requested = True  # the user closed the window
                return
            cv2.imshow(self.title, image)
            key = key_name(cv2.waitKey(1))
        except cv2.error as error:
            raise DeviceError(f"cannot show the preview window ({error.err}); leave out "
                              "--preview (--no-preview where a config file sets it)") from None
        self.frames_written += 1
        if key is not None:
            self.key_pressed(key)

    def key_pressed(self, key: str) -> None:
        """Handle one key of the window: ``q``/Esc quit; every key goes to ``on_key``."""
        if key in ("q", "Q", "\x1b"):
            self.quit_requested = True
        if self.on_key is not None:
            self.on_key(key)

    def close(self) -> None:
        """Close the window; safe twice."""
        if self._shown:
            self._shown = False
            try:
                cv2.destroyWindow(self.title)
                cv2.waitKey(1)  # let the GUI process the close
            except cv2.error:
                pass
