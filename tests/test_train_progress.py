"""Training progress: a tqdm bar per epoch (on a terminal) and one log line per epoch, from a real
``model.fit`` of a small model and a real training run."""

import csv
import io
import logging
import os
import re
import sys
import time

import numpy as np
import pytest

from conftest import build_small_model, make_data, small_model
from portrait.training.progress import closing_bar, epoch_line, make_epoch_progress
from portrait.training.train import main as train_main

EPOCHS, STEPS = 2, 3


def test_an_epoch_line_shows_the_training_then_the_validation_numbers():
    logs = {"loss": 0.21, "iou": 0.83, "val_loss": 0.25, "val_iou": 0.8}
    assert epoch_line(3, 30, logs, 41.4) == ("epoch 3/30: train loss 0.2100, iou 0.8300; "
                                             "validation loss 0.2500, iou 0.8000 (41 s)")
    assert epoch_line(1, 2, {"loss": 0.5}) == "epoch 1/2: train loss 0.5000"
    assert epoch_line(2, 2, {}, 0.4) == "epoch 2/2: no numbers (0 s)"
    # The loss and the IoU first, as Keras may give the numbers sorted by name.
    assert epoch_line(1, 2, {"dice": 0.9, "iou": 0.8, "loss": 0.1, "val_dice": 0.7,
                             "val_iou": 0.6, "val_loss": 0.3}) == (
        "epoch 1/2: train loss 0.1000, iou 0.8000, dice 0.9000; "
        "validation loss 0.3000, iou 0.6000, dice 0.7000")


@pytest.fixture(scope="module")
def fitted_data():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (2 * STEPS, 16, 16, 3)).astype(np.float32)
    masks = (images.mean(axis=-1, keepdims=True) > 127).astype(np.float32)
    return images, masks


def fit(progress, data):
    """A real fit of the small model: EPOCHS epochs of STEPS batches, validated; its history."""
    import keras

    from portrait.training.metrics import training_metrics

    keras.utils.set_random_seed(0)
    model = build_small_model()
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=training_metrics())
    images, masks = data
    with closing_bar(progress):
        return model.fit(images, masks, batch_size=2, epochs=EPOCHS, verbose=0,
                         validation_data=(images[:2], masks[:2]), callbacks=[progress]).history


def logged_epochs(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "portrait.training.progress"
            and r.levelno == logging.INFO]


def test_fit_shows_a_bar_an_epoch_and_logs_each_epochs_numbers(fitted_data, caplog):
    """With the bar on: one bar per epoch, "epoch N/M", counting batches to 3/3, with the loss
    and IoU Keras reports for the epoch at its end; and each epoch's line logs the numbers of
    the fit's history, training then validation."""
    stream = io.StringIO()
    started = time.perf_counter()
    with caplog.at_level(logging.INFO, logger="portrait.training.progress"):
        history = fit(make_epoch_progress(EPOCHS, STEPS, stream=stream, bar=True), fitted_data)
    fit_s = time.perf_counter() - started
    shown = stream.getvalue()
    for epoch in range(EPOCHS):
        finished = re.findall(rf"epoch {epoch + 1}/{EPOCHS}: 100%[^\[]* {STEPS}/{STEPS} \[[^\]]*"
                              r"batch[^\]]*, loss=([0-9.]+), iou=([0-9.]+)\]", shown)
        assert finished, shown
        assert [float(v) for v in finished[-1]] == [
            pytest.approx(history[key][epoch], abs=5e-5) for key in ("loss", "iou")]
    assert shown.count(f"/{EPOCHS}: 100%") == EPOCHS and shown.endswith("\n")  # each closed
    lines = logged_epochs(caplog)
    assert len(lines) == EPOCHS, lines
    for epoch, line in enumerate(lines):
        numbers = {key: values[epoch] for key, values in history.items()}
        assert set(numbers) >= {"loss", "iou", "val_loss", "val_iou"}
        took = re.fullmatch(re.escape(epoch_line(epoch + 1, EPOCHS, numbers)) + r" \((\d+) s\)",
                            line)
        assert took, line
        assert int(took[1]) <= fit_s + 0.5, (line, fit_s)  # an epoch's time, within the fit's


def test_off_a_terminal_there_is_no_bar_and_a_line_an_epoch(fitted_data, caplog):
    """A stream that is no terminal (a log file, a pipe) gets no bar; the log has a line an
    epoch."""
    stream = io.StringIO()
    with caplog.at_level(logging.INFO, logger="portrait.training.progress"):
        fit(make_epoch_progress(EPOCHS, STEPS, stream=stream), fitted_data)
    assert stream.getvalue() == ""
    assert [line.split(":")[0] for line in logged_epochs(caplog)] == ["epoch 1/2", "epoch 2/2"]


def test_on_a_terminal_without_info_logged_there_is_no_bar(fitted_data, caplog):
    """A real terminal (a pseudo-terminal) where INFO is not logged (--quiet-like levels):
    no bar, as the epochs' lines are not logged either."""
    main, side = os.openpty()
    try:
        with os.fdopen(side, "w", closefd=False) as terminal:
            assert terminal.isatty()
            with caplog.at_level(logging.WARNING, logger="portrait.training.progress"):
                fit(make_epoch_progress(EPOCHS, STEPS, stream=terminal), fitted_data)
            terminal.flush()
        os.set_blocking(main, False)
        try:
            shown = os.read(main, 65536)
        except BlockingIOError:  # nothing was written to it
            shown = b""
    finally:
        os.close(main)
        os.close(side)
    assert shown == b"" and logged_epochs(caplog) == []


def test_a_stop_mid_epoch_closes_the_bar_on_its_own_line(fitted_data, caplog):
    """Ctrl-C in the middle of the first epoch (raised at its second batch's end, by a callback
    after the progress): the bar closed around the fit ends its line, so the stop's warning
    starts one of its own; no epoch line is logged for the epoch cut short, and the bar is
    gone (closing it again does nothing)."""
    import keras

    class StopAtSecondBatch(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 1:
                raise KeyboardInterrupt

    stream = io.StringIO()
    progress = make_epoch_progress(EPOCHS, STEPS, stream=stream, bar=True)
    keras.utils.set_random_seed(0)
    model = build_small_model()
    model.compile(optimizer="adam", loss="binary_crossentropy")
    images, masks = fitted_data
    with caplog.at_level(logging.INFO, logger="portrait.training.progress"):
        with pytest.raises(KeyboardInterrupt):
            with closing_bar(progress):
                model.fit(images, masks, batch_size=2, epochs=EPOCHS, verbose=0,
                          callbacks=[progress, StopAtSecondBatch()])
    shown = stream.getvalue()
    assert re.search(rf"epoch 1/{EPOCHS}: [^\n]* 2/{STEPS} [^\n]*\n$", shown), repr(shown)
    assert "epoch 2/" not in shown and logged_epochs(caplog) == []
    progress.close()
    assert stream.getvalue() == shown


def test_a_line_logged_during_an_epoch_goes_above_the_bar_not_into_it(fitted_data, capsys):
    """A warning logged to the console (stderr) in the middle of an epoch, while the bar is
    shown there: it is written on a line of its own, the bar cleared first ("\\r"), not
    appended to the bar's text ("...batch/s]a warning")."""
    import keras

    class WarnAtSecondBatch(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 1:
                logging.getLogger("portrait.test").warning("a line of its own")

    console = logging.StreamHandler(sys.stderr)  # the console, as capsys holds it
    logging.root.addHandler(console)
    try:
        keras.utils.set_random_seed(0)
        model = build_small_model()
        model.compile(optimizer="adam", loss="binary_crossentropy")
        progress = make_epoch_progress(1, STEPS, stream=sys.stderr, bar=True)
        images, masks = fitted_data
        with closing_bar(progress):
            model.fit(images, masks, batch_size=2, epochs=1, verbose=0,
                      callbacks=[progress, WarnAtSecondBatch()])
    finally:
        logging.root.removeHandler(console)
    err = capsys.readouterr().err
    assert err.count("a line of its own") == 1 and "epoch 1/1" in err, repr(err)
    assert re.search(r"\r *\ra line of its own\n", err), repr(err)


def test_a_training_run_logs_its_epochs_numbers_and_keras_prints_nothing(tmp_path, caplog,
                                                                          capfd):
    """train: Keras's own progress (``Epoch 1/2``, its bar) is off; each epoch's line logs
    what the run's metrics.csv holds for it."""
    data = make_data(tmp_path / "data")
    run = tmp_path / "run"
    with caplog.at_level(logging.INFO, logger="portrait"):
        assert train_main(["--data", str(data), "--epochs", "2", "--out",
                           str(tmp_path / "x.hdf5"), "--run-dir", str(run),
                           "--steps-per-epoch", "1", "--batch", "2", "--input-size", "64x64",
                           "--bn-steps", "1", "--init", small_model(tmp_path / "small.h5")]) == 0
    out, err = capfd.readouterr()
    assert "Epoch 1/2" not in out + err and "step - loss" not in out + err
    assert "━" not in out + err
    with (run / "metrics.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    lines = logged_epochs(caplog)
    assert len(rows) == len(lines) == 2
    for row, line in zip(rows, lines):
        for key in ("loss", "iou", "val_loss", "val_iou"):
            label = "validation" if key.startswith("val_") else "train"
            name = key.removeprefix("val_")
            section = line.split("; ")[label == "validation"]
            assert f"{name} {float(row[key]):.4f}" in section, (key, line)
        assert line.startswith(f"epoch {int(row['epoch']) + 1}/2: train loss ")
