"""The shipped ``weights/unet.hdf5``: loads safely, carries its marks, and keeps its accuracy.

The accuracy checks are regression guards, not the release measurement (that is the model card's
full 264-image run): on the first 40 EG1800 test images, through the app's own matte path, the
shipped model must score at least as high as MediaPipe's selfie model, and the issue's 0.95 mIoU
guard is tracked as a strict expected failure until the weights reach it. They need ``../shared``
and skip without it.
"""

from pathlib import Path

import h5py
import pytest

from conftest import ROOT, shared_path
from portrait import evaluate
from portrait.evaluate import EvalOptions
from portrait.options import SegmentOptions

WEIGHTS = ROOT / "weights" / "unet.hdf5"


@pytest.fixture(scope="module")
def weights() -> Path:
    if not WEIGHTS.is_file():
        pytest.fail(f"{WEIGHTS} is missing from the checkout; it ships with the repository")
    return WEIGHTS


def test_shipped_weights_are_marked_for_the_app(weights):
    with h5py.File(weights, "r") as f:
        short = int(f.attrs["portrait_input_short_px"])
        assert "model_config" in f.attrs
        config = f.attrs["model_config"]
    config = config.decode() if isinstance(config, bytes) else config
    assert short % 16 == 0 and 128 <= short <= 512, f"short side {short} px"
    assert '"Lambda"' not in config, "the shipped model must load in Keras safe mode"
    assert weights.stat().st_size < 20 * 2**20, "weights grew past 20 MB"


@pytest.fixture(scope="module")
def first_40(weights) -> tuple[dict, dict]:
    """Ours and MediaPipe's selfie model on the first 40 EG1800 test images, in one run."""
    data = shared_path("data", "eg1800")
    selfie = shared_path("models", "selfie_segmentation.tflite")
    options = EvalOptions(data=str(data), list_file=str(data / "test.txt"), max_items=40,
                          progress=False)
    ours, theirs = evaluate.evaluate(options, [SegmentOptions(model=str(weights)),
                                               SegmentOptions(model=str(selfie))])
    assert ours["n"] == theirs["n"] == 40
    return ours, theirs


def test_shipped_weights_score_at_least_mediapipe_on_the_first_40_test_images(first_40):
    ours, theirs = first_40
    assert ours["miou"] >= theirs["miou"], f"ours {ours['miou']:.4f}, MediaPipe {theirs['miou']:.4f}"


def test_shipped_weights_reach_095_miou_on_the_first_40_test_images(first_40):
    ours, _ = first_40
    assert ours["miou"] >= 0.95, f"mIoU {ours['miou']:.4f} on the first 40 test images"
