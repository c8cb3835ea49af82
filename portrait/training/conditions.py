"""Camera conditions the suite's clips were not filmed in: a dim room, a window behind, a cheap
sensor, a 16:9 webcam, a compressed stream (``evaluate --suite --conditions``).

The held-out clips are bright, sharp 4:3 recordings. A person in a call may sit in a dark room,
in front of a window, behind a webcam that gives soft 16:9 pictures, or on a link that squeezes
the stream. Each condition here remakes a clip's frames that way, deterministically, so the
suite can ask whether the model keeps the room out and the matte still there too. A condition
is a geometry change (what the camera frames) and a photometric one (how it renders it); the
flicker measure decides whether the scene is still on the reframed frame before the photometric
change, so a noisy dark picture of a still scene still counts as a still scene.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import cv2
import numpy as np

Geometry = Callable[[np.ndarray], np.ndarray]
Photometric = Callable[[np.ndarray, int], np.ndarray]

DIM_GAIN = 0.3  # a dark room: a third of the light
DIM_NOISE = 4.0  # grey levels of sensor noise, standard deviation, at that gain
BRIGHT_GAIN = 1.7  # a window behind: highlights clip
SOFT_FACTOR = 3  # a cheap sensor: a third of the resolution, scaled back up
JPEG_QUALITY = 20  # a squeezed stream
WIDE_SIZE = (1280, 720)  # a 16:9 webcam


def dim_room(image: np.ndarray, index: int) -> np.ndarray:
    """A third of the light and sensor noise, fresh in each frame (seeded by the frame index)."""
    noise = np.random.default_rng(index).normal(0.0, DIM_NOISE, image.shape)
    return np.clip(np.rint(image * np.float32(DIM_GAIN) + noise), 0, 255).astype(np.uint8)


def window_behind(image: np.ndarray, index: int) -> np.ndarray:
    """Overexposed: every level times 1.7, highlights clipped to white."""
    return cv2.convertScaleAbs(image, alpha=BRIGHT_GAIN)


def soft_sensor(image: np.ndarray, index: int) -> np.ndarray:
    """A third of the resolution, scaled back up: soft edges, no fine hair."""
    height, width = image.shape[:2]
    small = cv2.resize(image, (max(1, width // SOFT_FACTOR), max(1, height // SOFT_FACTOR)),
                       interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)


def squeezed_stream(image: np.ndarray, index: int) -> np.ndarray:
    """JPEG at quality 20: blocks and ringing, as a congested link delivers."""
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise ValueError(f"JPEG encoding failed for a frame of shape {image.shape}")
    return cv2.imdecode(data, cv2.IMREAD_COLOR)


def wide_webcam(image: np.ndarray) -> np.ndarray:
    """The centre 16:9 band of a 4:3 frame at 1280x720, as a 720p webcam frames the same scene."""
    height, width = image.shape[:2]
    band = min(height, round(width * 9 / 16))
    top = (height - band) // 2
    return cv2.resize(image[top:top + band], WIDE_SIZE, interpolation=cv2.INTER_LINEAR)


@dataclass(frozen=True)
class CameraCondition:
    """One way of remaking a clip's frames.

    Attributes:
        name: the table's row name.
        geometry: reframes a frame (the scene the camera sees); None keeps it.
        photometric: renders a reframed frame and its index (light, noise, blur, compression);
            None keeps it.
    """

    name: str
    geometry: Optional[Geometry] = None
    photometric: Optional[Photometric] = None

    def apply(self, image: np.ndarray, index: int) -> tuple[np.ndarray, np.ndarray]:
        """(the reframed frame, what the camera delivers): the first decides stillness, the
        second goes to the model."""
        framed = self.geometry(image) if self.geometry else image
        return framed, self.photometric(framed, index) if self.photometric else framed


CAMERA_CONDITIONS = (
    CameraCondition("dim room (0.3x light, noise sd 4)", photometric=dim_room),
    CameraCondition("window behind (1.7x, clipped)", photometric=window_behind),
    CameraCondition("soft sensor (1/3 resolution)", photometric=soft_sensor),
    CameraCondition("squeezed stream (JPEG q20)", photometric=squeezed_stream),
    CameraCondition("16:9 webcam (centre band, 1280x720)", geometry=wide_webcam),
)
