"""Make ``docs/subject.png``, the README's picture of subject selection, through the app's command line.

    python docs/make_subject.py [--video ../shared/data/videos/asl_please.mkv] [--frame 36] [--model M]

``asl_please`` (a clip no model was trained on) shows the back of a bystander's head at the
frame's right edge. The script runs ``app.py --source <clip> --background sky`` twice, with
``--people all`` and with the default (subject selection on), once more for each as a matte, and
puts one frame of each in a row: the input, then the model alone, then the app's default.
"""

import argparse
import logging
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

from make_example import sky  # the example picture's background
from make_framing import label  # the framing picture's panel labels

ROOT = Path(__file__).resolve().parents[1]
log = logging.getLogger("make_subject")


def run_app(model: str, video: Path, out: Path, *extra: str) -> Path:
    command = [sys.executable, str(ROOT / "app.py"), "--source", str(video), "--out", str(out),
               "-q", *extra]
    if model:
        command += ["--model", model]
    subprocess.run(command, check=True)
    return out


def frame_of(folder: Path, index: int) -> np.ndarray:
    path = folder / f"{index:06d}.png"
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise SystemExit(f"the app wrote no frame {index} in {folder}")
    return image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", default=str(ROOT.parent / "shared/data/videos/asl_please.mkv"))
    parser.add_argument("--frame", type=int, default=36)
    parser.add_argument("--model", default="", help="model (default: the app's camera default)")
    parser.add_argument("--height", type=int, default=240, help="height of each panel")
    parser.add_argument("--out", default=str(ROOT / "docs" / "subject.png"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    capture = cv2.VideoCapture(args.video)
    capture.set(cv2.CAP_PROP_POS_FRAMES, args.frame)
    ok, original = capture.read()
    capture.release()
    if not ok:
        raise SystemExit(f"cannot read frame {args.frame} of {args.video}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        height, width = original.shape[:2]
        background = tmp / "sky.png"
        cv2.imwrite(str(background), sky(width, height))
        panels = [label(original, "input (asl_please, held out)")]
        for people, text in (("all", "--people all: the model alone"),
                             ("auto", "default: subject selection")):
            stop = ["--max-frames", str(args.frame + 1), "--people", people]
            composite = run_app(args.model, Path(args.video), tmp / f"c_{people}",
                                "--background", str(background), *stop)
            matte = run_app(args.model, Path(args.video), tmp / f"m_{people}", "--matte", *stop)
            panels.append(label(frame_of(composite, args.frame), text))
            panels.append(label(frame_of(matte, args.frame), "matte"))
    scale = args.height / height
    size = (round(width * scale), args.height)
    sheet = np.hstack([cv2.resize(p, size, interpolation=cv2.INTER_AREA) for p in panels])
    cv2.imwrite(args.out, sheet)
    log.info("wrote %s (%dx%d)", args.out, sheet.shape[1], sheet.shape[0])


if __name__ == "__main__":
    main()
