"""train --out: never a file the run reads, by whatever path; a model already there is named
before the run and kept beside the new one, never lost."""

import json
import logging
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, constant_model, make_data, python_on_a_tmpfs, small_model
from portrait.errors import InputError
from portrait.segment.locate import SHORT_SIDE_ATTR
from portrait.training.model_file import earlier_model_path, replaced_out_note, save_model
from portrait.training.train import main as train_main


def small_args(tmp_path: Path, out: Path) -> list[str]:
    """A one-epoch run fine-tuning the small model (conftest.small_model) into ``out``."""
    return ["--data", str(make_data(tmp_path / "data")), "--epochs", "1", "--out", str(out),
            "--run-dir", str(tmp_path / "run"), "--steps-per-epoch", "1", "--batch", "2",
            "--input-size", "64x64", "--bn-steps", "1",
            "--init", small_model(tmp_path / "small.h5")]


def test_an_earlier_model_at_out_is_named_before_the_run_and_kept_beside_the_new_one(
        tmp_path, caplog):
    """--out names a model that is there (with its export beside it, and an earlier-1 kept by
    a run before): a warning says, before the data is read, that it is replaced, where it will
    be kept and that its export goes stale; the run writes its own model at --out and the
    earlier one, byte for byte, at earlier-2; earlier-1 is left as it was."""
    import h5py

    out = tmp_path / "models" / "unet.hdf5"
    out.parent.mkdir()
    earlier = Path(constant_model(out, 0.3)).read_bytes()
    (tmp_path / "models" / "unet.tflite").write_bytes(b"its export")
    (tmp_path / "models" / "unet.earlier-1.hdf5").write_bytes(b"kept by a run before")
    kept = tmp_path / "models" / "unet.earlier-2.hdf5"
    with caplog.at_level(logging.INFO, logger="portrait"):
        assert train_main(small_args(tmp_path, out)) == 0
    messages = [r.getMessage() for r in caplog.records]
    warning = (f"--out '{out}' exists: replacing it with this run's model when the run ends; the "
               f"earlier model is kept beside it as '{kept}'; its export "
               f"'{tmp_path / 'models' / 'unet.tflite'}' will be stale until you export the new "
               "model")
    assert warning in messages
    assert [r.levelname for r in caplog.records if r.getMessage() == warning] == ["WARNING"]
    before_data = next(i for i, m in enumerate(messages) if m.startswith("training on "))
    assert messages.index(warning) < before_data
    assert kept.read_bytes() == earlier
    assert (tmp_path / "models" / "unet.earlier-1.hdf5").read_bytes() == b"kept by a run before"
    with h5py.File(out, "r") as f:  # the run's own model, noting its short side
        assert int(f.attrs[SHORT_SIDE_ATTR]) == 64
    assert f"the model that was at {out} before is kept as {kept}" in messages
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert result["earlier_out"] == str(kept)


def test_a_new_out_is_written_without_a_warning_or_a_kept_file(tmp_path, caplog):
    out = tmp_path / "new.hdf5"
    with caplog.at_level(logging.INFO, logger="portrait"):
        assert train_main(small_args(tmp_path, out)) == 0
    assert out.is_file() and not earlier_model_path(out).exists()
    assert not [r for r in caplog.records if "--out" in r.getMessage()]
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert result["earlier_out"] is None and result["stopped"] is None  # no stop came
    assert "came as the model was written" not in caplog.text


def test_the_first_free_number_keeps_an_earlier_model(tmp_path):
    out = tmp_path / "m.h5"
    assert earlier_model_path(out) == tmp_path / "m.earlier-1.h5"
    (tmp_path / "m.earlier-1.h5").write_bytes(b"")
    os.symlink(tmp_path / "nowhere", tmp_path / "m.earlier-2.h5")  # a link to nothing counts
    assert earlier_model_path(out) == tmp_path / "m.earlier-3.h5"


@pytest.mark.parametrize("option", ["--init", "--teacher"])
@pytest.mark.parametrize("spelling", ["dotdot", "symlink", "hard link"])
def test_out_naming_a_model_the_run_reads_by_another_path_is_refused_before_it_starts(
        tmp_path, capsys, option, spelling):
    """--out naming the --init or --teacher model by another path (through '..', a link, a
    hard link): one line, exit 2, before the run folder is made; the model is untouched."""
    model = Path(constant_model(tmp_path / "model.h5", 0.6))
    before = model.read_bytes()
    (tmp_path / "sub").mkdir()
    if spelling == "dotdot":
        out = tmp_path / "sub" / ".." / "model.h5"
    elif spelling == "symlink":
        out = tmp_path / "sub" / "link.h5"
        out.symlink_to(model)
    else:
        out = tmp_path / "sub" / "hard.h5"
        os.link(model, out)
    run = tmp_path / "run"
    assert train_main(["--data", str(tmp_path / "nowhere"), option, str(model), "--out",
                       str(out), "--run-dir", str(run)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: --out '{out}' is the {option} model, which the run reads; choose "
                   "another --out"], err
    assert model.read_bytes() == before and not run.exists()


# Run in a process of its own: an audit hook cannot be removed, and even one that does nothing
# runs Python code at every audited call (os.unlink, os.open), a point where a pending signal's
# handler runs first. Left in the pytest process, it made test_sink's mid-write stop land
# before write_atomic's os.unlink of its temporary file, leaving that file behind; the app adds
# no audit hook.
_STOPPED_AS_IT_TAKES_OUT = """
import os, sys
from pathlib import Path
import keras
from portrait.errors import StopRequested
from portrait.training.model_file import save_model

out = Path(sys.argv[1], "m.h5")
out.write_bytes(b"the earlier model")
stopped = []

def stop_the_move_to_out(event, args):  # once: putting the earlier model back is not stopped
    if event == "os.rename" and not stopped and os.fspath(args[1]) == str(out):
        stopped.append(event)
        raise StopRequested("SIGTERM")

sys.addaudithook(stop_the_move_to_out)
model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(1, 1)])
try:
    save_model(model, out, 64, keep_earlier=True)
    print("finished")
except StopRequested:
    print("stopped")
"""


def tiny_model():
    import keras

    return keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(1, 1)])


def test_a_stop_as_the_new_model_takes_out_leaves_the_earlier_one_there(tmp_path):
    """SIGTERM (StopRequested, raised by an audit hook as the new model is moved to --out, the
    last step of save_model): --out still holds the earlier model, whole, and nothing else is
    left beside it (no temporary file, no earlier-N). Where the earlier model was first renamed
    away, --out was left empty and the earlier model under a name no line gave."""
    done = subprocess.run([sys.executable, "-c", _STOPPED_AS_IT_TAKES_OUT, str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.stdout.split() == ["stopped"], (done.stdout, done.stderr[-2000:])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.h5"]
    assert (tmp_path / "m.h5").read_bytes() == b"the earlier model"


def test_an_earlier_out_that_is_a_link_is_kept_as_the_link(tmp_path):
    """--out a symlink to a model elsewhere: the link is kept as earlier-1, still pointing at
    that model, which is untouched; the new model is a file of its own at --out."""
    import h5py

    target = tmp_path / "elsewhere" / "real.h5"
    target.parent.mkdir()
    target.write_bytes(b"the user's model")
    out = tmp_path / "models" / "current.h5"
    out.parent.mkdir()
    out.symlink_to(os.path.relpath(target, out.parent))
    kept = save_model(tiny_model(), out, 64, keep_earlier=True)
    assert kept == out.parent / "current.earlier-1.h5"
    assert kept.is_symlink() and kept.read_bytes() == b"the user's model"
    assert target.read_bytes() == b"the user's model"
    assert not out.is_symlink()
    with h5py.File(out, "r") as f:
        assert int(f.attrs[SHORT_SIDE_ATTR]) == 64


class _SignalAt(logging.Handler):
    """Sends this process SIGTERM at the first log record whose message starts with
    ``prefix``: a real signal at a point the log names, with no clock involved."""

    def __init__(self, prefix: str):
        super().__init__()
        self.prefix, self.sent = prefix, False

    def emit(self, record: logging.LogRecord) -> None:
        if not self.sent and record.getMessage().startswith(self.prefix):
            self.sent = True
            os.kill(os.getpid(), signal.SIGTERM)


def test_a_run_that_ends_without_its_model_leaves_no_folder_made_for_out(tmp_path, capsys,
                                                                         caplog):
    """--out in folders that are not there: train makes them as it checks --out, before the
    run; a run refused after that (its --data is nowhere) or stopped by a real SIGTERM as the
    fit starts (exit 143) leaves none of them, where they were left empty. A folder that was
    there is kept, and one that holds anything (here the run folder, stopped as its first
    epoch ends) too."""
    new = tmp_path / "new"
    assert train_main(["--data", str(tmp_path / "nowhere"), "--out",
                       str(new / "deeper" / "m.hdf5"), "--run-dir", str(tmp_path / "run0")]) == 2
    assert "error: training data '" in capsys.readouterr().err and not new.exists()
    there = tmp_path / "there"
    there.mkdir()
    assert train_main(["--data", str(tmp_path / "nowhere"), "--out", str(there / "m.hdf5"),
                       "--run-dir", str(tmp_path / "run1")]) == 2
    assert there.is_dir() and list(there.iterdir()) == []
    trigger = _SignalAt("training on ")
    logger = logging.getLogger("portrait")
    logger.addHandler(trigger)
    try:
        caplog.set_level(logging.INFO, logger="portrait")  # the trigger's record is INFO
        args = small_args(tmp_path, new / "m.hdf5")
        assert train_main(args) == 128 + signal.SIGTERM
        assert trigger.sent and not new.exists()
        kept = tmp_path / "kept"
        trigger.sent, trigger.prefix = False, "epoch 1/1: "  # once the run folder is written
        args[args.index("--out") + 1] = str(kept / "sub" / "m.hdf5")
        args[args.index("--run-dir") + 1] = str(kept / "run")  # the run folder inside
        assert train_main(args) == 128 + signal.SIGTERM
        assert trigger.sent and (kept / "run").is_dir() and not (kept / "sub").exists()
    finally:
        logger.removeHandler(trigger)


def test_a_stop_as_the_model_is_written_finishes_it_and_the_run(tmp_path, caplog):
    """A real SIGTERM at save_model's last line (the earlier model kept beside the new one):
    the run ends as done, exit 0: --out holds the new model, whole, result.json says
    "stopped": "SIGTERM", the backup is gone (a finished run leaves none) and a warning says
    --out is whole. It exited 143 with no result.json, the backup kept and a line saying to
    --resume, which a finished run is refused. A SIGTERM one step earlier (the candidates'
    scores) stops the run undone, as before: 143, the earlier model at --out untouched."""
    import h5py

    from portrait.training.train import BACKUP_DIR

    out = tmp_path / "m.hdf5"
    earlier = Path(constant_model(out, 0.3)).read_bytes()
    run = tmp_path / "run"
    trigger = _SignalAt("validation IoU after batch-norm recalibration")
    logger = logging.getLogger("portrait")
    logger.addHandler(trigger)
    try:
        caplog.set_level(logging.INFO, logger="portrait")  # the trigger's records are INFO
        args = small_args(tmp_path, out)
        assert train_main(args) == 128 + signal.SIGTERM
        assert trigger.sent and out.read_bytes() == earlier
        assert (run / BACKUP_DIR).is_dir() and not (run / "result.json").exists()
        caplog.clear()
        trigger.sent, trigger.prefix = False, "the model that was at "
        assert train_main(args + ["--resume"]) == 0
    finally:
        logger.removeHandler(trigger)
    assert trigger.sent
    kept = tmp_path / "m.earlier-1.hdf5"
    assert kept.read_bytes() == earlier
    with h5py.File(out, "r") as f:  # the run's own model, whole
        assert int(f.attrs[SHORT_SIDE_ATTR]) == 64
    result = json.loads((run / "result.json").read_text())
    assert result["stopped"] == "SIGTERM" and result["earlier_out"] == str(kept)
    assert not (run / BACKUP_DIR).exists()
    last = caplog.records[-1]  # the run's last word, and no line saying to --resume
    assert (last.levelname, last.getMessage()) == (
        "WARNING", f"SIGTERM came as the model was written; it was finished first: '{out}' holds "
                   "this run's whole model and the run is done (result.json notes the stop)")
    assert "--resume" not in caplog.text
    # ...and as the stop came, one line said it waits (see test_robustness for "at once").
    held = [(r.levelname, r.getMessage()) for r in caplog.records if r.getMessage().startswith(
        "SIGTERM: stopping once")]
    assert held == [("WARNING", f"SIGTERM: stopping once the model is written to '{out}'...")]


def test_the_note_names_an_out_that_is_there_even_as_a_link_to_nothing(tmp_path):
    """replaced_out_note: nothing at --out, no note; a model there without an export beside it,
    the note without the stale export; a link to nothing, which the save would move aside as
    it moves a file, is named too."""
    out = tmp_path / "m.hdf5"
    assert replaced_out_note(out) is None
    out.write_bytes(b"a model")
    assert replaced_out_note(out) == (
        f"--out '{out}' exists: replacing it with this run's model when the run ends; the "
        f"earlier model is kept beside it as '{tmp_path / 'm.earlier-1.hdf5'}'")
    out.unlink()
    out.symlink_to(tmp_path / "nowhere.hdf5")
    assert replaced_out_note(out).startswith(f"--out '{out}' exists: replacing it")


def test_save_model_replaces_a_file_unless_asked_to_keep_it(tmp_path, caplog):
    """A run's own files (a run folder's candidates) are replaced where they are; keep_earlier
    (train's, ensemble's and widen's --out) keeps the earlier file, and says so only where there
    was one; a save that fails leaves no file of its own behind."""
    import h5py
    import keras

    from conftest import build_small_model

    path = tmp_path / "candidate.hdf5"
    path.write_bytes(b"an earlier candidate")
    keras.utils.set_random_seed(0)
    model = build_small_model()
    with caplog.at_level(logging.INFO, logger="portrait"):
        assert save_model(model, path, short_px=64) is None
        assert sorted(p.name for p in tmp_path.iterdir()) == ["candidate.hdf5"]
        with h5py.File(path, "r") as f:
            assert int(f.attrs[SHORT_SIDE_ATTR]) == 64
        new = tmp_path / "new.hdf5"
        assert save_model(model, new, short_px=64, keep_earlier=True) is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["candidate.hdf5", "new.hdf5"]
    assert not [r for r in caplog.records if "kept as" in r.getMessage()], caplog.text
    taken = tmp_path / "taken.hdf5"  # a folder, not empty: the finished file cannot go there
    taken.mkdir()
    (taken / "theirs.txt").write_text("theirs")
    with pytest.raises(InputError, match=rf"^cannot write model '{re.escape(str(taken))}': "):
        save_model(model, taken, short_px=64)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["candidate.hdf5", "new.hdf5",
                                                          "taken.hdf5"]  # no half-written file
    assert [p.name for p in taken.iterdir()] == ["theirs.txt"]


def test_a_model_its_disk_has_no_room_for_is_refused_before_a_byte_is_written(tmp_path):
    """A disk with less room than the model needs (a 64 KB tmpfs in a user namespace of its
    own; the small model's file needs about 0.3 MB by h5_size): one line with both numbers
    before HDF5 starts a write it could not finish, and no file left, the earlier model kept
    where it was."""
    disk = tmp_path / "disk"
    disk.mkdir()
    code = ("import os, sys\n"
            "sys.path.insert(0, 'tests')\n"
            "from pathlib import Path\n"
            "from conftest import build_small_model\n"
            "from portrait.errors import InputError\n"
            "from portrait.training.model_file import h5_size, save_model\n"
            "out = Path(sys.argv[1], 'm.hdf5')\n"
            "out.write_bytes(b'the earlier model')\n"
            "model = build_small_model()\n"
            "print(h5_size(model, optimizer=False))\n"
            "try:\n"
            "    save_model(model, out, 64, keep_earlier=True)\n"
            "except InputError as error:\n"
            "    print(error)\n"
            "print(sorted(os.listdir(sys.argv[1])), out.read_bytes())\n")
    done = python_on_a_tmpfs(disk, code, "64k", timeout=300)
    need, error, listing = done.stdout.splitlines()
    assert re.fullmatch(rf"cannot write model '{re.escape(str(disk))}/m\.hdf5': its disk has "
                        rf"0\.\d MB free, and the model needs about {int(need) / 1e6:.1f} MB; "
                        "free some space or choose another folder", error), (done.stdout,
                                                                              done.stderr)
    assert listing == "['m.hdf5'] b'the earlier model'"


def test_h5_size_bounds_the_file_with_and_without_the_optimizer_state(tmp_path):
    """h5_size, the room checked before a model file is written, is at least the file's bytes
    and under twice them: for the model as save_model writes it (no optimizer state, though the
    model has one) and for the whole model with Adam's state (twice the weights again), as a
    checkpoint holds it. A fitted MobileNetV2-UNet (0.35), whose weights outweigh the fixed
    margin."""
    import keras
    import numpy as np

    from portrait.training.model import build_unet
    from portrait.training.model_file import h5_size

    keras.utils.set_random_seed(0)
    model = build_unet((64, 64), alpha=0.35, decoder_filters=(16, 8, 8, 8), fixed_input=False)
    model.compile(optimizer="adam", loss="binary_crossentropy")
    model.fit(np.zeros((2, 64, 64, 3), np.float32), np.zeros((2, 64, 64, 1), np.float32),
              epochs=1, verbose=0)
    out, whole = tmp_path / "m.hdf5", tmp_path / "whole.h5"
    save_model(model, out, short_px=64)
    model.save(whole)  # with the optimizer
    sizes = {False: out.stat().st_size, True: whole.stat().st_size}
    assert sizes[True] > 2 * sizes[False]  # Adam's two slots a weight
    for optimizer, size in sizes.items():
        assert size <= h5_size(model, optimizer=optimizer) < 2 * size, (optimizer, size)
