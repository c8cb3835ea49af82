"""The layout's one rule (the app's runtime never imports the model workshop), the development
paths, and what a test run leaves behind."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_runtime_never_imports_training():
    # A fresh interpreter: this test session has imported the workshop for other tests.
    code = (
        "import sys\n"
        "import portrait.cli, portrait.run, portrait.pipeline, portrait.capture, portrait.segment, "
        "portrait.sink, portrait.composite, portrait.refine, portrait.smooth\n"
        "print(sorted(m for m in sys.modules if m.startswith('portrait.training')))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"


def test_workshop_imports_alone():
    code = "import portrait.training.train, portrait.training.evaluate, portrait.training.bench; print('ok')"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("ok")


def test_development_paths_point_beside_the_checkout():
    # Files moved one folder deeper in the layout change; paths built from __file__ must follow.
    from portrait.segment.locate import PROJECT_ROOT, SHARED_DIR
    from portrait.training import bench, suite, train

    assert (PROJECT_ROOT / "app.py").is_file()
    assert SHARED_DIR == ROOT.parent / "shared"
    assert bench.PEER_MODEL.parent.parent == train.DEFAULT_BACKBONE.parent.parent == SHARED_DIR
    assert suite.DEFAULT_DATA_ROOT == SHARED_DIR / "data"
    if SHARED_DIR.is_dir():
        assert bench.PEER_MODEL.is_file() and train.DEFAULT_BACKBONE.is_file()


def test_a_test_run_leaves_no_temporary_folders_behind(tmp_path):
    """The conversion cache and config folder each test process makes (conftest.py) are removed
    when it ends, in one process and in pytest-xdist's workers: each run left them in /tmp."""
    import os

    for extra in ([], ["-n", "2"]):
        scratch = tmp_path / f"tmp{len(extra)}"
        scratch.mkdir()
        done = subprocess.run([sys.executable, "-m", "pytest", "-q", *extra,
                               "tests/test_scratch.py", "tests/test_words.py"],
                              cwd=ROOT, env=dict(os.environ, TMPDIR=str(scratch)),
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        assert "passed" in done.stdout
        assert sorted(p.name for p in scratch.glob("portrait-test-*")) == [], extra
