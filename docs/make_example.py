"""Make ``docs/example.png``, the README's picture, through the app's own command line.

    python docs/make_example.py [--model weights/unet_live.hdf5] [--video ../shared/data/videos/asl_learn.mkv]

Takes one frame of the clip and runs ``app.py --image`` on it three times (blur, a generated sky
background, ``--matte``), each in one pass with the main subject as a call runs it, then puts the
input and the three results side by side.
"""

import argparse
import logging
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
log = logging.getLogger("make_example")


def sky(width: int, height: int) -> np.ndarray:
    """A blue-to-sand gradient with a sun: a background that shows halos clearly."""
    t = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    top, bottom = np.array([190, 110, 50], np.float32), np.array([80, 200, 230], np.float32)
    image = np.broadcast_to(top * (1 - t) + bottom * t, (height, width, 3)).astype(np.uint8).copy()
    cv2.circle(image, (int(width * 0.82), int(height * 0.22)), height // 8, (80, 190, 250), -1,
               cv2.LINE_AA)
    return image


def read_frame(video: Path, index: int) -> np.ndarray:
    capture = cv2.VideoCapture(str(video))
    capture.set(cv2.CAP_PROP_POS_FRAMES, index)
    ok, frame = capture.read()
    capture.release()
    if not ok:
        raise SystemExit(f"cannot read frame {index} of {video}")
    return frame


def run_app(model: str, image: Path, out: Path, *extra: str) -> np.ndarray:
    # One pass and the main subject, as a call runs the camera default (--image's own defaults
    # average six views and keep everyone).
    subprocess.run([sys.executable, str(ROOT / "app.py"), "--model", model, "--image", str(image),
                    "--out", str(out), "--tta", "off", "--people", "main", "-q", *extra], check=True)
    return cv2.imread(str(out), cv2.IMREAD_COLOR)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(ROOT / "weights" / "unet_live.hdf5"))  # the camera default: what a call sees
    parser.add_argument("--video", default=str(ROOT.parent / "shared/data/videos/asl_learn.mkv"))  # held out of training
    parser.add_argument("--frame", type=int, default=30)
    parser.add_argument("--height", type=int, default=240, help="height of each panel")
    parser.add_argument("--out", default=str(ROOT / "docs" / "example.png"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        frame = read_frame(Path(args.video), args.frame)
        cv2.imwrite(str(tmp / "frame.png"), frame)
        cv2.imwrite(str(tmp / "sky.png"), sky(frame.shape[1], frame.shape[0]))
        panels = [
            frame,
            run_app(args.model, tmp / "frame.png", tmp / "blur.png"),
            run_app(args.model, tmp / "frame.png", tmp / "sky_out.png",
                    "--background", str(tmp / "sky.png")),
            run_app(args.model, tmp / "frame.png", tmp / "matte.png", "--matte"),
        ]
    width = round(frame.shape[1] * args.height / frame.shape[0])
    row = np.hstack([cv2.resize(p, (width, args.height), interpolation=cv2.INTER_AREA)
                     for p in panels])
    cv2.imwrite(args.out, row)
    log.info("wrote %s (%dx%d)", args.out, row.shape[1], row.shape[0])


if __name__ == "__main__":
    main()
