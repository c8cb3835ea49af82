"""Live controls: single keys change the output while it runs (effect, background, blur, mirror,
framing, quit), from the preview window, the terminal, or any scripted source.

* :class:`LiveState` is what the keys control, a frozen dataclass; :func:`apply_key` is the pure
  step ``state, key -> state``.
* :class:`Controls` holds the current state. ``press(key)`` (any thread: the preview window,
  the terminal reader) applies a key at once and logs the change; ``poll()``, called by the
  processor once per frame, returns the state that frame is made with, after taking one item
  from each scripted key source (so a test drives the keys frame by frame).
* :class:`TerminalKeys` reads single keys from a terminal without Enter (cbreak mode on POSIX,
  restored on exit; ``msvcrt`` on Windows) in a reader thread.
* :func:`background_cycle` lists what ``b`` steps through; :class:`LiveBackground` builds the
  background the state names, when it changes.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional, Sequence

from portrait.composite import (IMAGE_SUFFIXES, VIDEO_SUFFIXES, Background, ImageBackground,
                                VideoBackground, default_blur_px, make_background)
from portrait.errors import InputError
from portrait.options import CompositeOptions, ControlOptions

log = logging.getLogger(__name__)

BLUR_STEP_PX = 5  # one + or - press: 21 -> 26 is a visible change; 20 presses span the range
BLUR_MIN_PX = 1
BLUR_MAX_PX = 100
QUIT_KEYS = ("q", "\x1b", "\x03")  # q, Esc, Ctrl-C (a terminal in raw mode, Windows' getwch)
KEY_HELP = ("space effect on/off, b next background, +/- blur, m mirror, f framing, "
            "e edge colour, q/Esc/Ctrl-C quit")
# With --matte the output is the matte: these keys change only the composite (space would send
# colour camera frames into a grey matte sequence), so there they do nothing, and say so.
MATTE_INERT_KEYS = (" ", "b", "+", "=", "-", "_", "e")
MATTE_KEY_HELP = "m mirror, f framing, q/Esc/Ctrl-C quit (with --matte, the others do nothing)"


@dataclass(frozen=True)
class LiveState:
    """What the live keys control.

    Attributes:
        effect: False sends the plain camera frame (mirrored if ``mirror``).
        backgrounds: what ``b`` steps through (``blur``, image/video paths, ``#rrggbb``).
        background_index: the entry of ``backgrounds`` in use.
        blur_px: blur strength of the ``blur`` background (and behind a transparent image);
            None: by the frame's size (:func:`portrait.composite.default_blur_px`) until ``+``
            or ``-`` steps from that.
        mirror: flip the output horizontally.
        framing: auto-framing on (read by the framer).
        decontaminate: the person's own colour at the soft edge (``--decontaminate``; read by
            the frame processor).
        quit: the user asked to stop.
    """

    effect: bool = True
    backgrounds: tuple[str, ...] = ("blur",)
    background_index: int = 0
    blur_px: Optional[int] = CompositeOptions.blur_px
    mirror: bool = False
    framing: bool = False
    decontaminate: bool = False
    quit: bool = False

    @property
    def background(self) -> str:
        return self.backgrounds[self.background_index]


def apply_key(state: LiveState, key: str,
              frame_size: Optional[tuple[int, int]] = None) -> LiveState:
    """The state after one key press; an unknown key changes nothing.

    ``frame_size`` (w, h), the frames' size: ``+`` and ``-`` step from the blur in effect, which
    for ``blur_px`` None is :func:`portrait.composite.default_blur_px` of it (21 px when unknown).

    Keys: ``" "`` effect on/off, ``b`` next background (wrapping), ``+`` (or ``=``) and ``-``
    (or ``_``) blur up/down by :data:`BLUR_STEP_PX` within [:data:`BLUR_MIN_PX`,
    :data:`BLUR_MAX_PX`] (a larger ``--blur`` is kept until ``-``), ``m`` mirror, ``f`` framing,
    ``e`` the edge's colour (``--decontaminate``), ``q``/Esc/Ctrl-C quit. Letters are
    case-insensitive.
    """
    key = key.lower() if len(key) == 1 else key
    if key == " ":
        return replace(state, effect=not state.effect)
    if key == "b":
        following = (state.background_index + 1) % len(state.backgrounds)
        return replace(state, background_index=following)
    if key in ("+", "=", "-", "_"):
        blur_px = (state.blur_px if state.blur_px is not None
                   else default_blur_px(frame_size or (0, 0)))
        if key in ("+", "="):
            return replace(state, blur_px=min(blur_px + BLUR_STEP_PX, max(blur_px, BLUR_MAX_PX)))
        return replace(state, blur_px=max(blur_px - BLUR_STEP_PX, BLUR_MIN_PX))
    if key == "m":
        return replace(state, mirror=not state.mirror)
    if key == "f":
        return replace(state, framing=not state.framing)
    if key == "e":
        return replace(state, decontaminate=not state.decontaminate)
    if key in QUIT_KEYS:
        return replace(state, quit=True)
    return state


def describe_change(before: LiveState, after: LiveState) -> Optional[str]:
    """One log line for what a key changed, or None when nothing changed."""
    if after.quit and not before.quit:
        return "quit"
    if after.effect != before.effect:
        return "effect on" if after.effect else "effect off: the plain camera frame goes out"
    if after.background_index != before.background_index:
        return (f"background {after.background_index + 1}/{len(after.backgrounds)}: "
                f"{after.background}")
    if after.blur_px != before.blur_px:
        return f"blur {after.blur_px} px"
    if after.mirror != before.mirror:
        return f"mirror {'on' if after.mirror else 'off'}"
    if after.framing != before.framing:
        return f"framing {'on' if after.framing else 'off'}"
    if after.decontaminate != before.decontaminate:
        return ("edge colour: the person's own (--decontaminate)" if after.decontaminate
                else "edge colour: the frame's")
    return None


def describe_output(state: LiveState, size: tuple[int, int], background: Optional[Background],
                    matte: bool = False) -> str:
    """What a stream sends as it starts, in one log line: mirror, framing and the background,
    with its blur in pixels for frames of ``size`` (w, h) (the default, by the frame's size, as
    the number it is: 21 px at 720p, 32 at 1080p).

    Args:
        state: the live state before any key.
        size: the frames' size (w, h).
        background: the background in use (its ``description`` names an image or a video);
            ignored with ``matte``.
        matte: the stream sends the matte, not a composite.
    """
    mirror_framing = (f"mirror {'on' if state.mirror else 'off'}, "
                      f"framing {'on' if state.framing else 'off'}")
    if matte:
        return f"output: the matte (white = person), {mirror_framing}"
    blur_px = state.blur_px if state.blur_px is not None else default_blur_px(size)
    blur = f"{blur_px} px" + ("" if state.blur_px is not None
                              else f" (the default for {size[0]}x{size[1]})")
    if background is None or background_kind(state.background) == "blur":
        shown = f"blur {blur}"
    else:
        shown = background.description
        if getattr(background, "transparent", False):  # the room shows through it, blurred
            shown += f", blur {blur}"
    return f"output: {mirror_framing}, background {shown}"


class Controls:
    """The live state and where its keys come from.

    Args:
        state: the state before any key.
        scripts: scripted key sources, each an iterable with one item per frame: a string of
            keys pressed before that frame (``""`` or None: none). ``poll()`` takes one item of
            each per frame.
        on_quit: called (once) when a quit key is pressed, e.g. the pipeline's ``stop``.
        inert: keys that change nothing in this run (:data:`MATTE_INERT_KEYS` with
            ``--matte``), each said once a press with ``inert_reason`` ("with --matte").
    """

    def __init__(self, state: LiveState = LiveState(), scripts: Sequence[Iterable] = (),
                 on_quit: Optional[Callable[[], None]] = None, inert: Sequence[str] = (),
                 inert_reason: str = ""):
        self._state = state
        self._inert = frozenset(inert)
        self._inert_reason = inert_reason
        self._scripts: list[Iterator] = [iter(source) for source in scripts]
        self._lock = threading.Lock()
        self.on_quit = on_quit
        self.frame_size: Optional[tuple[int, int]] = None  # (w, h) of the last poll's frame

    @property
    def state(self) -> LiveState:
        return self._state

    def press(self, key: str) -> LiveState:
        """Apply one key now (any thread), log what it changed; returns the new state.

        After a quit key, keys are ignored."""
        with self._lock:
            before = self._state
            if before.quit:
                return before  # the run is finishing: later keys change nothing
            if (key.lower() if len(key) == 1 else key) in self._inert:
                log.info("%s does nothing %s", "space" if key == " " else key,
                         self._inert_reason)
                return before
            if key.lower() == "b" and len(before.backgrounds) == 1:  # Caps Lock on too
                log.info("b: only one background (%s); --background DIR or a colour in the "
                         "config file adds more", before.background)
            after = self._state = apply_key(before, key, self.frame_size)
        change = describe_change(before, after)
        if change is not None:
            log.info("%s", change)
        if after.quit and not before.quit and self.on_quit is not None:
            self.on_quit()
        return after

    def poll(self, frame_size: Optional[tuple[int, int]] = None) -> LiveState:
        """The state for the next frame, of ``frame_size`` (w, h) (what ``+`` and ``-`` step the
        size-dependent default blur from): one item of each scripted source is applied first."""
        if frame_size is not None:
            self.frame_size = frame_size
        for script in self._scripts:
            keys = next(script, None)
            for key in keys or ():
                self.press(key)
        return self._state


# --- backgrounds ---------------------------------------------------------------------------------


def background_kind(spec: str) -> str:
    """``blur``, ``plain`` (a colour or ``transparent``) or ``files`` (image, video, folder)."""
    text = spec.strip()
    if text.lower() == "blur":
        return "blur"
    if text.lower() == "transparent" or text.startswith("#"):
        return "plain"
    return "files"


def folder_backgrounds(folder: Path) -> list[str]:
    """The images and videos in ``folder``, sorted by name (by suffix; unreadable ones are found
    when chosen). Hidden files are left out, as a photo folder's are (macOS's "._beach.jpg"
    forks on a USB stick or a network share are not pictures). Raises InputError when there are
    none."""
    suffixes = IMAGE_SUFFIXES | VIDEO_SUFFIXES
    files = sorted(str(path) for path in folder.iterdir()
                   if not path.name.startswith(".") and path.is_file()
                   and path.suffix.lower() in suffixes)
    if not files:
        raise InputError(f"cannot use background folder '{folder}': it holds no images or videos "
                         f"({', '.join(sorted(suffixes))}); put some there or give one file")
    return files


def background_files(specs: Sequence[str]) -> list[Path]:
    """The files that backgrounds ``specs`` read: each image or video named, and every file of
    each folder named (what an output must never overwrite)."""
    files: list[Path] = []
    for spec in specs:
        if background_kind(spec) != "files":
            continue
        path = Path(spec.strip())
        if path.is_dir():
            files.extend(child for child in path.iterdir() if child.is_file())
        else:
            files.append(path)
    return files


def background_cycle(start: str, extra: Sequence[str] = ()) -> tuple[tuple[str, ...], int]:
    """What ``b`` steps through, and which entry to start at.

    The cycle is ``blur``, then the image/video file or every file of the folder, then the
    colour. ``start`` (the effective ``--background``) fills its place; each of ``extra`` (the
    config file's ``background`` when the command line names another kind) fills a place still
    empty, so a folder on the command line and a colour in the config file are both reachable.
    ``transparent`` is only ever the start, as only PNG output can carry it.

    Returns:
        (the specs in order, the index of the start).

    Raises:
        InputError: a folder without images or videos.
    """
    slots: dict[str, list[str]] = {}
    for i, spec in enumerate([start, *extra]):
        kind = background_kind(spec)
        if kind in slots or (i > 0 and spec.strip().lower() == "transparent"):
            continue
        path = Path(spec.strip())
        slots[kind] = (folder_backgrounds(path) if kind == "files" and path.is_dir()
                       else [spec.strip()])
    cycle = ["blur"] + slots.get("files", []) + slots.get("plain", [])
    start_kind = background_kind(start)
    start_index = 0 if start_kind == "blur" else cycle.index(slots[start_kind][0])
    return tuple(cycle), start_index


class _DropBackgroundLine(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.msg != "background: %s"


@contextmanager
def _without_background_line():
    """make_background logs its choice; a key's change is already logged by Controls.press."""
    composite_log = logging.getLogger("portrait.composite")
    drop = _DropBackgroundLine()
    composite_log.addFilter(drop)
    try:
        yield
    finally:
        composite_log.removeFilter(drop)


KEPT_IMAGES = 3  # image backgrounds kept made: the next in b's cycle and the last two shown
# One thread for every LiveBackground: it makes the next image while the stream runs.
_PREPARER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="background")


class LiveBackground:
    """The background that a :class:`LiveState` names, rebuilt when the state names another
    (or, for ``blur``, another strength); the old one is closed.

    A file of the folder that cannot be read is reported once and the previous background kept.
    The image that ``b`` steps to next is decoded and scaled beforehand, in a thread of its own
    (a 62 MP photo took 0.7 s, a frozen output, when it was made on the key press), and the
    last few images are kept, so stepping back to one is instant too; the switch still comes
    with the next frame.

    Args:
        options: the composite options (what every background shares); ``background`` and
            ``blur_px`` come from the state.
        state: the state to build the first background for (raises InputError as
            :func:`make_background` does, before the first frame).
        size: the expected frame size (w, h).

    The first background is not logged here: the caller says it with the frames' size, once
    the source gave one (:func:`describe_output`).
    """

    def __init__(self, options: CompositeOptions, state: LiveState,
                 size: tuple[int, int] = (1280, 720)):
        self.options = options
        self.size = size
        self._failed: set[str] = set()
        self._key = self._key_of(state)
        with _without_background_line():  # said with the frames' size: describe_output
            self.current: Background = make_background(self._options_for(state), size)
        self._images: OrderedDict = OrderedDict()  # (path, mtime) -> Future of an image background
        self._lock = threading.Lock()
        self._closed = False
        self._prepare_next(state)

    @staticmethod
    def _key_of(state: LiveState) -> tuple:
        return (state.background, state.blur_px if background_kind(state.background) == "blur"
                else None)

    def _options_for(self, state: LiveState) -> CompositeOptions:
        return replace(self.options, background=state.background, blur_px=state.blur_px)

    def for_state(self, state: LiveState) -> Background:
        """The background to render this frame with."""
        background = self._chosen(state)
        if isinstance(background, (ImageBackground, VideoBackground)) and background.transparent:
            background.blur_px = state.blur_px  # + and - blur what shows through it too
        return background

    def _chosen(self, state: LiveState) -> Background:
        key = self._key_of(state)
        if key == self._key or state.background in self._failed:
            return self.current
        try:
            prepared = self._image_future(state.background, start=True)
            with _without_background_line():
                background = (prepared.result() if prepared is not None
                              else make_background(self._options_for(state), self.size))
        except InputError as error:
            self._failed.add(state.background)
            log.warning("%s; keeping the %s", error, self.current.description)
            return self.current
        log.debug("background: %s", background.description)
        if not isinstance(self.current, ImageBackground):  # images stay with their futures
            self.current.close()
        self.current, self._key = background, key
        self._prepare_next(state)
        return background

    def _image_key(self, spec: str) -> Optional[tuple[str, float]]:
        """(path, modification time) of an image file background, else None (a GIF, named
        like an image, plays as a video: made when chosen and closed when left, never kept)."""
        suffix = Path(spec).suffix.lower()
        if (background_kind(spec) != "files" or suffix not in IMAGE_SUFFIXES
                or suffix in VIDEO_SUFFIXES):
            return None
        try:
            return spec, os.stat(spec).st_mtime
        except OSError:
            return None

    def _image_future(self, spec: str, start: bool = False) -> Optional[Future]:
        """The image background for ``spec`` made (or being made) in the preparing thread;
        ``start`` makes it if not there yet. None for anything else (made where it is needed)."""
        key = self._image_key(spec)
        with self._lock:
            if key is None or self._closed:
                return None
            if key in self._images:
                self._images.move_to_end(key)
                return self._images[key]
            if not start:
                return None
            future = _PREPARER.submit(self._make_image, spec)
            self._images[key] = future
            while len(self._images) > KEPT_IMAGES:
                self._images.popitem(last=False)
            return future

    def _make_image(self, spec: str) -> Background:
        with _without_background_line():
            return make_background(replace(self.options, background=spec), self.size)

    def _prepare_next(self, state: LiveState) -> None:
        following = state.backgrounds[(state.background_index + 1) % len(state.backgrounds)]
        self._image_future(following, start=True)

    def close(self) -> None:
        """Close the background in use; safe twice."""
        with self._lock:
            self._closed = True
            self._images.clear()
        self.current.close()

    def __enter__(self) -> "LiveBackground":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# --- the terminal --------------------------------------------------------------------------------


def stdin_is_terminal(stream=None) -> bool:
    """Whether ``stream`` (default ``sys.stdin``) is a terminal this process may read keys from:
    a TTY, and on POSIX the foreground process group (a background job changing the terminal's
    mode would be stopped by SIGTTOU)."""
    stream = sys.stdin if stream is None else stream
    try:
        fd = stream.fileno()
        if not os.isatty(fd):
            return False
        return os.name == "nt" or os.getpgrp() == os.tcgetpgrp(fd)
    except (AttributeError, OSError, ValueError):  # no stdin, or pytest's stand-in
        return False


def split_keys(chunk: str) -> list[str]:
    """The keys in what a terminal sent, without escape sequences (arrow and function keys send
    Esc ``[`` or Esc ``O`` and more), so that only a lone Esc counts as Esc."""
    keys: list[str] = []
    i = 0
    while i < len(chunk):
        char = chunk[i]
        if char == "\x1b" and i + 1 < len(chunk) and chunk[i + 1] in "[O":
            i += 2
            while i < len(chunk) and not "\x40" <= chunk[i] <= "\x7e":
                i += 1  # parameters, up to the final byte (A for up, ~ for F5...)
            i += 1
            continue
        keys.append(char)
        i += 1
    return keys


class TerminalKeys:
    """Single key presses from a terminal, without Enter, handed to ``on_key`` in a reader thread.

    POSIX: the terminal is put in cbreak mode (no echo, no line buffering; Ctrl-C still sends
    SIGINT) and restored by ``close()``. An escape sequence (an arrow or function key) is
    ignored as a whole, so only a lone Esc quits. Windows: ``msvcrt.getwch`` is polled.

    Args:
        on_key: called with each key (a one-character string).
        fd: the terminal's file descriptor (default: stdin's).
    """

    def __init__(self, on_key: Callable[[str], None], fd: Optional[int] = None):
        self.on_key = on_key
        self.fd = sys.stdin.fileno() if fd is None else fd
        self._stop = threading.Event()
        self._saved = None
        if os.name != "nt":
            import termios
            import tty

            self._saved = termios.tcgetattr(self.fd)
            tty.setcbreak(self.fd)
        self._thread = threading.Thread(target=self._run, name="terminal-keys", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            if os.name == "nt":
                self._run_windows()
            else:
                self._run_posix()
        except OSError as error:  # the terminal went away: keys stop, the run goes on
            log.debug("terminal keys stopped: %s", error)

    def _run_posix(self) -> None:
        import select

        while not self._stop.is_set():
            ready, _, _ = select.select([self.fd], [], [], 0.1)
            if not ready:
                continue
            chunk = os.read(self.fd, 64).decode("utf-8", "replace")
            if not chunk:
                return  # end of file
            for key in split_keys(chunk):
                self.on_key(key)

    def _run_windows(self) -> None:
        import msvcrt

        while not self._stop.is_set():
            if not msvcrt.kbhit():
                self._stop.wait(0.05)
                continue
            key = msvcrt.getwch()
            if key in ("\x00", "\xe0"):  # a function or arrow key: its second code follows
                msvcrt.getwch()
                continue
            self.on_key(key)

    def close(self) -> None:
        """Stop reading and restore the terminal's mode; safe twice."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=1)
        if self._saved is not None:
            import termios

            try:
                termios.tcsetattr(self.fd, termios.TCSADRAIN, self._saved)
            except termios.error as error:
                log.debug("could not restore the terminal mode: %s", error)
            self._saved = None

    def __enter__(self) -> "TerminalKeys":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def initial_state(options: ControlOptions, composite: CompositeOptions) -> LiveState:
    """The state before any key: the background cycle (see :func:`background_cycle`) at
    ``composite.background``, its blur, mirror, framing and edge colour as the options say.

    Raises:
        InputError: a background folder without images or videos.
    """
    cycle, start = background_cycle(composite.background, options.backgrounds)
    return LiveState(backgrounds=cycle, background_index=start, blur_px=composite.blur_px,
                     mirror=options.mirror, framing=options.framing,
                     decontaminate=composite.decontaminate)
