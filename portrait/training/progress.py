"""Training progress: a tqdm bar per epoch on a terminal, and one log line per epoch.

Keras's own progress bar (``fit(verbose=1)``) rewrites its line with control characters that a
log file keeps, and its per-epoch line (``verbose=2``) is not a log record; this callback shows
what the app's other long runs show (a tqdm bar on stderr) and logs each epoch's numbers.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from typing import IO, Iterator, Mapping, Optional

log = logging.getLogger("portrait.training.progress")

BAR_METRICS = ("loss", "iou")  # the running means the bar shows after each batch


def epoch_line(epoch: int, epochs: int, logs: Mapping[str, float],
               seconds: Optional[float] = None) -> str:
    """One epoch's numbers as a log line: ``epoch 3/30: train loss 0.2100, iou 0.8300;
    validation loss 0.2500, iou 0.8000 (41 s)``. ``epoch`` counts from 1; ``logs`` as Keras
    gives them at an epoch's end (validation values prefixed ``val_``), every number shown in
    their order there after the loss and the IoU (:data:`BAR_METRICS`)."""
    def first(item):
        return BAR_METRICS.index(item[0]) if item[0] in BAR_METRICS else len(BAR_METRICS)

    train = sorted(((k, v) for k, v in logs.items() if not k.startswith("val_")), key=first)
    val = sorted(((k[len("val_"):], v) for k, v in logs.items() if k.startswith("val_")),
                 key=first)
    parts = [f"{label} " + ", ".join(f"{k} {float(v):.4f}" for k, v in values)
             for label, values in (("train", train), ("validation", val)) if values]
    took = "" if seconds is None else f" ({seconds:.0f} s)"
    return f"epoch {epoch}/{epochs}: " + ("; ".join(parts) or "no numbers") + took


def make_epoch_progress(epochs: int, steps: int, stream: Optional[IO[str]] = None,
                        bar: Optional[bool] = None):
    """A Keras callback that shows each epoch of ``epochs`` (``steps`` batches each) as a tqdm
    bar (unit "batch", desc "epoch N/M", the running loss and IoU after it) on ``stream``
    (default stderr), and logs :func:`epoch_line` at INFO at each epoch's end.

    Args:
        bar: show the bar; default: when ``stream`` is a terminal and INFO is logged. Else the
            epoch's log line is all there is, so a log file holds one line per epoch.

    Use with :func:`closing_bar` around ``fit``, which closes a bar that a stop leaves open.
    """
    import keras

    stream = stream or sys.stderr
    if bar is None:
        bar = stream.isatty() and log.isEnabledFor(logging.INFO)

    class EpochProgress(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.bar = None
            self.started = 0.0

        def on_epoch_begin(self, epoch, logs=None):
            self.close()
            self.started = time.perf_counter()
            if bar:
                from tqdm import tqdm

                self.bar = tqdm(total=steps, unit="batch", desc=f"epoch {epoch + 1}/{epochs}",
                                file=stream, dynamic_ncols=True, leave=True)

        def on_train_batch_end(self, batch, logs=None):
            if self.bar is None:
                return
            shown = {k: f"{float(logs[k]):.4f}" for k in BAR_METRICS if k in (logs or {})}
            self.bar.set_postfix(shown, refresh=False)
            self.bar.update(1)

        def on_epoch_end(self, epoch, logs=None):
            self.close()
            log.info("%s", epoch_line(epoch + 1, epochs, logs or {},
                                      time.perf_counter() - self.started))

        def close(self) -> None:
            """End the bar on its own line (safe twice)."""
            if self.bar is not None:
                self.bar.close()
                self.bar = None

    return EpochProgress()


@contextlib.contextmanager
def closing_bar(progress) -> Iterator[None]:
    """Around ``fit``: log lines go above ``progress``' bar rather than into it, and the bar is
    closed however the block ends (a stop's warning then starts a line of its own)."""
    from tqdm.contrib.logging import logging_redirect_tqdm

    try:
        with logging_redirect_tqdm():
            yield
    finally:
        progress.close()
