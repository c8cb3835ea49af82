"""Shared test set-up: quiet TensorFlow, fixed seeds, the optional ../shared data folder."""

import atexit
import functools
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _throw_away_folder(prefix: str) -> str:
    """A new temporary folder, removed when this process ends (each pytest-xdist worker makes
    its own): they were left behind, some 180 MB of conversions a worker a run."""
    folder = tempfile.mkdtemp(prefix=prefix)
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


# Model conversions made by tests (and the app processes they start) go to a throw-away cache,
# never the user's; set here, before any fixture of any scope creates a segmenter.
os.environ["PORTRAIT_CACHE_DIR"] = _throw_away_folder("portrait-test-cache-")
# The app reads $XDG_CONFIG_HOME/portrait/config.toml: a developer's own settings must not change
# what the tests see.
os.environ["XDG_CONFIG_HOME"] = _throw_away_folder("portrait-test-config-")

from contextlib import contextmanager
from fractions import Fraction
from typing import Iterator, Optional, Sequence

import numpy as np
import pytest
import pyvirtualcam

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


@pytest.fixture(autouse=True)
def _seed():
    np.random.seed(0)


def shared_path(*parts: str) -> Path:
    """A path under ../shared, skipping the test with a reason when it is absent."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"needs {path} (the ../shared data beside the checkout), which is absent")
    return path


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long-running tests (a soak, a MobileNetV2-UNet traced "
                            "or converted, the shipped models scored); run first, still run by CI")


def pytest_collection_modifyitems(config, items):
    """Slow tests first (a stable sort): run in parallel (pytest-xdist), the workers then start
    on them together and finish on short ones, where the training tests, last by file name,
    left one worker running them alone at the end."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(scope="session")
def brightness_model(tmp_path_factory) -> Path:
    """A tiny real Keras model saved as .hdf5: person probability = sigmoid of brightness.

    Input RGB 0..255 (normalised inside, as the app's contract says); bright pixels (> 128) are
    "person". Small and fixed-size (64x64), so its TFLite conversion takes a few seconds.
    """
    return brightness_model_file(tmp_path_factory.mktemp("models") / "bright.hdf5")


def brightness_model_file(path: Path, bias: float = 0.0) -> Path:
    """The ``brightness_model`` saved at ``path``, its logit raised by ``bias``: 6.2 makes a
    teacher whose output on a dark room (grey 30) is small but not 0 (0.05, 12 of 255)."""
    import keras

    inputs = keras.Input((64, 64, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)
    conv = keras.layers.Conv2D(1, 1, activation="sigmoid")
    outputs = conv(x)
    model = keras.Model(inputs, outputs)
    conv.set_weights([np.full((1, 1, 3, 1), 4.0, np.float32), np.full(1, bias, np.float32)])
    model.save(path)
    return path


def constant_model(path, probability: float, channels: int = 1, *, rescales: bool = True):
    """A real Keras model file (any input size) whose output is ``probability`` everywhere.

    It rescales its input itself (a ``Rescaling`` layer first, as the models train writes), so
    train takes it as a --teacher or --init; ``rescales=False`` leaves that out, for the checks
    that refuse a model that does not (its output is the same either way)."""
    import keras

    inputs = keras.Input((None, None, 3))
    pixels = keras.layers.Rescaling(1 / 255)(inputs) if rescales else inputs
    logit = float(np.log(probability / (1 - probability)))
    conv = keras.layers.Conv2D(channels, 1, kernel_initializer="zeros",
                               bias_initializer=keras.initializers.Constant(logit))
    model = keras.Model(inputs, keras.layers.Activation("sigmoid")(conv(pixels)))
    model.save(path)
    return str(path)


def build_small_model():
    """A real, small Keras model: it rescales its input, then a strided convolution, batch
    normalisation, upsampling and a sigmoid, any input size.

    For the tests where what is trained or averaged does not matter (how a run is stopped,
    resumed, backed up; what an ensemble averages): the MobileNetV2-UNet otherwise only adds
    half a minute of tracing or conversion to each (a 2-step training run took 11 s with it
    against 42 s, measured). The tests of what train builds
    (``test_short_training_run_writes_a_model_the_app_uses``) train that model."""
    import keras

    inputs = keras.Input((None, None, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same")(x)
    x = keras.layers.ReLU()(keras.layers.BatchNormalization()(x))
    x = keras.layers.UpSampling2D(2)(x)
    return keras.Model(inputs, keras.layers.Conv2D(1, 3, padding="same", activation="sigmoid")(x))


def small_model(path):
    """:func:`build_small_model` written to ``path`` (for ``train --init``); returns the path."""
    build_small_model().save(path)
    return str(path)


def make_data(folder, count=12, size=(80, 64)):
    """A data folder of noisy images with a bright disc (the 'person') and its mask."""
    import cv2

    rng = np.random.default_rng(3)
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    width, height = size
    for i in range(count):
        image = rng.integers(0, 80, (height, width, 3), np.uint8)
        mask = np.zeros((height, width), np.uint8)
        centre = (int(rng.integers(20, width - 20)), int(rng.integers(20, height - 20)))
        cv2.circle(mask, centre, 15, 255, -1)
        image[mask > 0] = (200, 180, 160)
        cv2.imwrite(str(folder / "images" / f"{i:03d}.jpg"), image)
        cv2.imwrite(str(folder / "masks" / f"{i:03d}.png"), mask)
    (folder / "train.txt").write_text("\n".join(f"{i:03d}" for i in range(count - 3)))
    (folder / "val.txt").write_text("\n".join(f"{i:03d}" for i in range(count - 3, count)))
    (folder / "test.txt").write_text("")
    return folder


@functools.lru_cache(maxsize=None)
def colour_profile() -> bytes:
    """A real ICC colour profile (an RGB one, as a Display-P3 phone photo has), made by LittleCMS
    through Pillow; made once, as it holds the time it was made."""
    from PIL import ImageCms

    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def phone_exif():
    """The EXIF of a phone photo: camera, dates, an orientation (turn 90 degrees clockwise to
    show), a serial number and a GPS position."""
    from PIL import Image

    exif = Image.Exif()
    exif[0x010F], exif[0x0110] = "Apple", "iPhone 15 Pro"  # Make, Model
    exif[0x0132] = "2024:05:01 10:00:05"  # DateTime
    exif[0x0112] = 6  # Orientation
    exif[0x8769] = {0x9003: "2024:05:01 09:59:58",  # DateTimeOriginal
                    0x9011: "+02:00",  # OffsetTimeOriginal
                    0xA431: "F17ZX123ABC"}  # BodySerialNumber
    exif[0x8825] = {1: "N", 2: (52.0, 31.0, 12.0), 3: "E", 4: (13.0, 24.0, 36.0)}  # GPS
    return exif


def write_rgba_tiff(path: Path, rgba: np.ndarray, extra_samples: int) -> Path:
    """A real, uncompressed RGBA TIFF of ``rgba`` ((H, W, 4) uint8, uint16 or float32, in R, G,
    B, A order, stored as given), its fourth sample marked by the ExtraSamples tag as
    ``extra_samples`` says: 1 associated (premultiplied) alpha, 2 unassociated (straight).

    Written with Pillow's TIFF tag writer: its image writer marks every RGBA image's alpha
    unassociated, whatever ``tiffinfo`` says, and writes no float RGBA at all."""
    from PIL import TiffImagePlugin

    height, width = rgba.shape[:2]
    tags = TiffImagePlugin.ImageFileDirectory_v2(prefix=b"II")
    tags[256], tags[257] = width, height  # ImageWidth, ImageLength
    tags[258] = (rgba.dtype.itemsize * 8,) * 4  # BitsPerSample
    tags[259], tags[262] = 1, 2  # Compression: none; PhotometricInterpretation: RGB
    tags[277], tags[278], tags[284] = 4, height, 1  # SamplesPerPixel, RowsPerStrip, contiguous
    tags[273], tags[279] = 0, rgba.nbytes  # StripOffsets (after the tags' data), StripByteCounts
    tags[338] = (extra_samples,)  # ExtraSamples
    tags[339] = (3 if rgba.dtype.kind == "f" else 1,) * 4  # SampleFormat: float, unsigned
    pixels = np.ascontiguousarray(rgba, rgba.dtype.newbyteorder("<")).tobytes()
    path.write_bytes(b"II*\0" + (8).to_bytes(4, "little") + tags.tobytes(8) + pixels)
    return path


def write_video(path: Path, frames: int, size=(96, 64), fps: float = 30.0) -> Path:
    """A real video file: a bright square moving over a dark background."""
    import cv2

    width, height = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    for i in range(frames):
        image = np.full((height, width, 3), 30, np.uint8)
        x = 8 + (i * 3) % (width - 40)
        image[16:48, x:x + 24] = 220
        writer.write(image)
    writer.release()
    return path


def write_video_with_sound(path: Path, frames: int, seconds: float, size=(96, 64),
                           fps: float = 30.0, tone_hz: float = 440.0, codec: str = "aac",
                           video_codec: str = "libx264", rate: int = 44100,
                           sound_starts_s: float = 0.0,
                           default_tone_hz: Optional[float] = None,
                           frame_times: Optional[Sequence[float]] = None) -> Path:
    """A real video file with sound, as a phone or screen recorder writes one: the moving
    square of :func:`write_video` (``frames`` of it) and ``seconds`` of a ``tone_hz`` sine in
    ``codec``, starting ``sound_starts_s`` after the first frame, through PyAV. With
    ``default_tone_hz``, a second track of that tone follows, marked as the default one. With
    ``frame_times`` (seconds, one per frame), the frames are shown at those times, as a phone
    records in dim light (a variable frame rate), else at ``fps``."""
    import av

    width, height = size
    times = list(frame_times) if frame_times is not None else [i / fps for i in range(frames)]
    with av.open(str(path), "w") as container:
        video = container.add_stream(video_codec, rate=round(fps))
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.codec_context.time_base = Fraction(1, 1000)
        tracks = [(container.add_stream(codec, rate=rate), tone_hz)]
        if default_tone_hz is not None:
            tracks[0][0].disposition = 0
            tracks.append((container.add_stream(codec, rate=rate), default_tone_hz))
            tracks[1][0].disposition = av.stream.Disposition.default
        for i in range(frames):
            image = np.full((height, width, 3), 30, np.uint8)
            x = 8 + (i * 3) % (width - 40)
            image[16:48, x:x + 24] = 220
            picture = av.VideoFrame.from_ndarray(image, format="bgr24")
            picture.pts, picture.time_base = round(times[i] * 1000), Fraction(1, 1000)
            container.mux(video.encode(picture))
        samples = int(rate * seconds)
        for sound, hz in tracks:
            tone = (0.3 * np.sin(2 * np.pi * hz * np.arange(samples) / rate)).astype(np.float32)
            for start in range(0, samples, 960):
                chunk = av.AudioFrame.from_ndarray(tone[None, start:start + 960], format="fltp",
                                                   layout="mono")
                chunk.sample_rate, chunk.pts = rate, start + round(sound_starts_s * rate)
                container.mux(sound.encode(chunk))
            container.mux(sound.encode(None))
        container.mux(video.encode(None))
    return path


def write_anamorphic_video(path: Path, picture: np.ndarray, frames: int,
                           aspect: tuple[int, int] = (4, 3), *, rotation: int = 0,
                           encoder: str = "libx264", pix_fmt: str = "yuv420p") -> Path:
    """A real video whose pixels are not square, as DV, HDV and DVDs store the picture:
    ``frames`` copies of ``picture`` (BGR or BGRA, at the shape players are to show), stored
    squeezed to 120x120 with a sample aspect ratio of ``aspect`` (4:3 shows it 160x120), turned
    ``rotation`` degrees by display metadata, at 10 fps, through PyAV."""
    import av
    import cv2

    with av.open(str(path), "w") as container:
        stream = container.add_stream(encoder, rate=10)
        stream.width, stream.height, stream.pix_fmt = 120, 120, pix_fmt
        stream.codec_context.sample_aspect_ratio = Fraction(*aspect)
        if rotation:
            stream.set_display_rotation(rotation)
        stored = cv2.resize(picture, (120, 120), interpolation=cv2.INTER_AREA)
        layout = "bgra" if picture.shape[2] == 4 else "bgr24"
        for _ in range(frames):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(stored, format=layout)))
        container.mux(stream.encode())
    return path


def sound_of(path: Path) -> tuple[str, float, np.ndarray]:
    """A file's first audio stream: (codec, e.g. "mp3", seconds of sound decoded, mono samples at
    their rate); ("", 0.0, empty) for a file without sound."""
    import av

    with av.open(str(path)) as container:
        if not container.streams.audio:
            return "", 0.0, np.zeros(0, np.float32)
        stream = container.streams.audio[0]
        chunks = [frame.to_ndarray().astype(np.float32).reshape(len(frame.layout.channels), -1)[0]
                  if frame.format.is_planar else
                  frame.to_ndarray().astype(np.float32).reshape(-1, len(frame.layout.channels))[:, 0]
                  for frame in container.decode(stream)]
        samples = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
        return stream.codec_context.codec.canonical_name, len(samples) / stream.rate, samples


def main_frequency(samples: np.ndarray, rate: int = 44100) -> float:
    """The strongest frequency of ``samples``, in Hz."""
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.argmax(spectrum) * rate / len(samples))


class ManualClock:
    """A :class:`portrait.capture.base.Clock` whose time moves only when a source waits on it
    (or a test's double of a device calls :meth:`advance`): a pace or a back-off is then exact,
    however loaded the machine. For one thread at a time."""

    def __init__(self, start_s: float = 1000.0) -> None:
        self.now_s = start_s

    def now(self) -> float:
        return self.now_s

    def advance(self, seconds: float) -> None:
        self.now_s += max(0.0, seconds)

    def wait(self, event, seconds: float) -> bool:
        if not event.is_set():
            self.advance(seconds)
        return event.is_set()


class FakeCameraBackend:
    """A pyvirtualcam backend (the interface of ``pyvirtualcam.camera.Backend``) that counts frames.

    Registered through :func:`fake_camera`, so the app's real pyvirtualcam path runs against it.
    Subclasses change ``send`` (record, fail) or ``__init__`` (refuse to open); each subclass
    keeps its own ``instances``.
    """

    instances: list = []
    DEVICE = "/dev/video-fake"

    def __init__(self, *, width, height, fps, fourcc, device, **kw):
        self.width, self.height, self.fps, self.fourcc = width, height, fps, fourcc
        self.count = 0
        self.closed = 0
        type(self).instances.append(self)

    def send(self, frame: np.ndarray) -> None:
        self.count += 1

    def close(self) -> None:
        self.closed += 1

    def device(self) -> str:
        return self.DEVICE

    def native_fourcc(self):
        return None


@contextmanager
def fake_camera(name: str, backend: type) -> Iterator[type]:
    """Register ``backend`` with pyvirtualcam as ``name`` for the block, with no instances yet."""
    backend.instances = []
    pyvirtualcam.register_backend(name, backend)
    try:
        yield backend
    finally:
        pyvirtualcam.camera.BACKENDS.pop(name, None)  # later tests see only the real backends


_REFUSE_BEFORE_TENSORFLOW = """
import json, sys, importlib
main = importlib.import_module(sys.argv[1]).main
codes = [main(args) for args in json.loads(sys.argv[2])]
print(json.dumps({"codes": codes, "tensorflow": "tensorflow" in sys.modules}))
"""


def assert_refused_before_tensorflow(module: str, cases) -> None:
    """Run ``module``'s ``main`` on each (arguments, message) case in one fresh interpreter:
    each must exit 2 with one ``error:`` line holding its message, and TensorFlow must never
    have been imported (the refusal came from the arguments, before the slow start)."""
    import json
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", _REFUSE_BEFORE_TENSORFLOW, module,
         json.dumps([[str(arg) for arg in args] for args, _ in cases])],
        cwd=ROOT, env=dict(os.environ), capture_output=True, text=True, timeout=120)
    result = json.loads(done.stdout)
    assert result == {"codes": [2] * len(cases), "tensorflow": False}, (result, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == len(cases), lines
    for line, (_, message) in zip(lines, cases):
        assert line.startswith("error: ") and message in line, (line, message)


def python_on_a_tmpfs(disk, code: str, size: str = "",
                      timeout: float = 60) -> subprocess.CompletedProcess:
    """``python -c code DISK`` with a tmpfs (of ``size``, ``"16k"``, or with more options,
    ``"64k,nr_inodes=3"``; the default where none) mounted on the folder ``disk`` in a user
    namespace of its own (no root needed), which goes with the namespace. Skips the test where
    the system allows no such mount."""
    options = f"-o size={size} " if size else ""
    script = f'mount -t tmpfs {options}tmpfs "$1" || exit 99; shift; exec "$@"'
    done = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script,
                           "sh", str(disk), sys.executable, "-c", code, str(disk)],
                          cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    if done.returncode == 99 or "unshare:" in done.stderr:
        pytest.skip(f"no tmpfs in a user namespace here: {done.stderr.strip()[:200]}")
    return done
