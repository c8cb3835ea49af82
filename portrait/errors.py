"""Errors the command line reports as one clear line (what was wrong, what to do)."""

import contextlib
import errno
import logging
import signal
import sys
import threading
from typing import Callable, Iterator, Optional


class PortraitError(Exception):
    """A user-facing error: the message says what was wrong and what to do.

    The CLI prints ``str(error)`` on one line and exits with ``exit_code``; no traceback.
    """

    exit_code = 2


class InputError(PortraitError):
    """An input file, folder or device that cannot be read."""


class ModelError(PortraitError):
    """A model file that is missing, corrupt, unsafe or of an unsupported shape."""


class DeviceError(PortraitError):
    """A camera or virtual camera that cannot be opened."""


class OutputRefused(InputError):
    """The output folder itself refuses every file to come: it cannot be made (a file in its
    way, a folder above it that takes no new one) or takes no file (read-only, removed). A photo
    batch stops at it rather than skipping each photo left with the same error."""


class OutputGone(OutputRefused):
    """The output folder a photo batch (or a run's numbered frames) was writing into was removed,
    moved or replaced by another folder: the files written are not where the next would go. It
    stops there rather than make the folder again, unmarked, with the rest alone in it."""


class OutputFull(OutputRefused):
    """The output's disk refused a write for every file to come: full, over quota, or read-only.
    A photo batch stops at it rather than skipping each photo left (see
    :data:`DISK_ERRNOS`)."""


DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})
"""A write's errno that no other file on the same disk escapes (:class:`OutputFull`)."""

MEMORY_ERRNOS = frozenset({errno.ENOMEM, errno.EAGAIN})
"""An errno that says the system refused memory: ENOMEM, or EAGAIN, which a thread gets when its
stack cannot be mapped (FFmpeg's H.264 decoder, starting its threads under a memory cap)."""


def ran_out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` says memory ran out (a :class:`MemoryError`, PyAV's included, or
    :data:`MEMORY_ERRNOS`), not that the file or its disk is at fault."""
    return isinstance(error, MemoryError) or getattr(error, "errno", None) in MEMORY_ERRNOS


TERMINATION_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP")
                            if hasattr(signal, name))
"""Signals that ask the app to end as SIGTERM does: SIGTERM, and SIGHUP where the system has it
(the terminal closed, an SSH session dropped). Each finishes a stream's output cleanly."""


class StopRequested(BaseException):
    """SIGTERM (or SIGHUP) arrived outside a running stream (start-up, image mode), which
    finishes it at once.

    A BaseException, like KeyboardInterrupt, so that no library's ``except Exception`` swallows it.
    """


def _stop_requested(signum, _frame) -> None:
    raise StopRequested(signal.Signals(signum).name)


@contextlib.contextmanager
def stop_on_termination_signals() -> Iterator[None]:
    """While the block runs, :data:`TERMINATION_SIGNALS` raise :class:`StopRequested` (as Ctrl-C
    raises KeyboardInterrupt), so a command ends as cleanly as it does on Ctrl-C; the previous
    handlers come back after. Off the main thread, where signal handlers cannot be set, it
    changes nothing."""
    on_main_thread = threading.current_thread() is threading.main_thread()
    previous = ({sig: signal.signal(sig, _stop_requested) for sig in TERMINATION_SIGNALS}
                if on_main_thread else {})
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def stops_held(waiting_for: str = "this step is done") -> Iterator[list[str]]:
    """While the block runs, Ctrl-C (SIGINT) and :data:`TERMINATION_SIGNALS` stop nothing: each
    is noted, by name (``"Ctrl-C"``, ``"SIGTERM"``), in the list the block gets, for work that a
    stop must not cut in two (a model moved to where the user asked, and the record that says
    so), and logged at once as it comes ("Ctrl-C: stopping once ``waiting_for``..."), so a user
    who pressed Ctrl-C does not wait on a silent terminal. The previous handlers come back
    after, all of them, however a stop lands as they do (:func:`_give_back`); off the main
    thread it holds nothing."""
    received: list[str] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return
    holding = True
    previous = {}

    def note(signum, frame) -> None:
        if holding:
            received.append("Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name)
            logging.getLogger("portrait").warning("%s: stopping once %s...", received[-1],
                                                  waiting_for)
            return
        # The block is over, and this handler not given back yet: the stop is the handler's
        # to take, as it would be a moment later (given back here first: it may end the process).
        handler = previous[signum]
        signal.signal(signum, handler)
        if callable(handler):
            handler(signum, frame)
        elif handler == signal.SIG_DFL:
            signal.raise_signal(signum)

    try:
        # Each handler is noted before it is changed: a stop that lands between two changes
        # (raised by a handler not yet changed) must not leave Ctrl-C noted and ignored for good.
        for sig in (signal.SIGINT, *TERMINATION_SIGNALS):
            previous[sig] = signal.getsignal(sig)
            signal.signal(sig, note)
        yield received
    finally:
        holding = False
        _give_back(previous)


def _give_back(previous: dict) -> None:
    """Set each signal's ``previous`` handler again. A stop that lands meanwhile, raised by a
    handler already given back (or passed on to its own by one not yet), does not cut that
    short, which left the rest noting stops and ignoring them for good: it is raised once
    every handler is back."""
    left = list(previous.items())
    stop: Optional[BaseException] = None
    while left:
        try:
            while left:
                signal.signal(*left[0])  # again, harmlessly, where a stop landed after it
                del left[0]
        except Exception:  # signal.signal's own (a handler it cannot set): trying again fails
            raise
        except BaseException as landed:  # a stop: Ctrl-C's KeyboardInterrupt, StopRequested
            stop = stop or landed
    if stop is not None:
        raise stop


def signal_exit_code(stop: StopRequested) -> int:
    """128 + the number of the signal ``stop`` names (143 for SIGTERM, 129 for SIGHUP): the exit
    code of a command that a signal stopped before its work was done, as Ctrl-C's is 130."""
    return 128 + getattr(signal, str(stop), signal.SIGTERM)


def stop_name(stop: BaseException) -> str:
    """How a log line names a stop: Ctrl-C, or the signal (SIGTERM, SIGHUP)."""
    return "Ctrl-C" if isinstance(stop, KeyboardInterrupt) else str(stop)


def run_command(body: Callable[[], Optional[int]], traceback: bool = False,
                unfinished_on_stop: bool = False) -> int:
    """Run a command-line tool's body and turn what it raises into an exit code.

    A :class:`PortraitError` prints its one line and exits with its ``exit_code``; Ctrl-C exits
    130; :class:`StopRequested` (SIGTERM outside a stream) exits 0, as a stop mid-stream does,
    or, with ``unfinished_on_stop`` (a command whose work a stop leaves undone: a training run,
    a scoring), :func:`signal_exit_code`; either also when it comes back as the cause of another
    error (a C extension's import). Anything else is a bug: one line naming it, or the full
    traceback when ``traceback`` (``--debug``) asks for it.

    Returns:
        ``body()``'s exit code (None counts as 0), or the error's.
    """
    try:
        return body() or 0
    except PortraitError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    except (KeyboardInterrupt, StopRequested) as stop:
        return _stopped(stop, unfinished_on_stop)
    except Exception as error:
        stop = _stop_behind(error)
        if stop is not None:
            return _stopped(stop, unfinished_on_stop)
        if traceback:
            raise
        if isinstance(error, OSError) and error.filename is not None:
            # A file or folder the system refused (permissions, a full disk, a truncated file):
            # the user's to fix, so one line, as for any bad input.
            print(f"error: cannot use '{error.filename}': {error.strerror or error}; check the "
                  "path, its permissions and the free space", file=sys.stderr)
            return 2
        print(f"error: unexpected {type(error).__name__}: {error} (run with --debug for details)",
              file=sys.stderr)
        return 1


def _stopped(stop: BaseException, unfinished: bool = False) -> int:
    """Log a stop asked for by Ctrl-C (exit 130) or SIGTERM (exit 0, or when the stop leaves
    the work ``unfinished`` :func:`signal_exit_code`) and return its exit code."""
    if isinstance(stop, KeyboardInterrupt):
        logging.getLogger("portrait").info("interrupted")
        return 130
    logging.getLogger("portrait").info("%s: stopped", stop)
    return signal_exit_code(stop) if unfinished else 0


def _stop_behind(error: BaseException) -> Optional[BaseException]:
    """The Ctrl-C or SIGTERM that ``error`` was raised from or while handling, if any.

    A signal that lands inside a C extension's import comes back as that import's own error
    (TensorFlow's pybind11 modules raise ``ImportError: initialization failed`` from it).
    """
    seen = set()
    cause = error.__cause__ or error.__context__
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, (KeyboardInterrupt, StopRequested)):
            return cause
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return None
