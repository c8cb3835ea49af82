"""Make ``docs/framing.png``, the README's picture of auto-framing, through the app's command line.

    python docs/make_framing.py [--video ../shared/data/videos/asl_school.mkv] [--model M]

The ASL clips barely move, so the script makes a synthetic camera pan across one: a window of
70 % of the frame slides from the left edge to the right over the clip (each view scaled back
to the frame size), so the signer drifts from right of centre to left of it. It runs
``app.py --source pan.avi`` twice, without and with ``--framing auto`` (blur background, PNG
frames), and puts four moments of each run in two rows: top without, bottom with.
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
sys.path.insert(0, str(ROOT))
log = logging.getLogger("make_framing")

from portrait.training.bench_effects import pan  # noqa: E402  (the same pan the benchmark uses)


def read_clip(video: Path) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(video))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    if not frames:
        raise SystemExit(f"cannot read {video}")
    return frames


def write_clip(frames: list[np.ndarray], path: Path, fps: float = 30.0) -> None:
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    for frame in frames:
        writer.write(frame)
    writer.release()


def run_app(model: str, source: Path, out: Path, *extra: str) -> list[np.ndarray]:
    command = [sys.executable, str(ROOT / "app.py"), "--source", str(source), "--out", str(out),
               "-q", *extra]
    if model:
        command += ["--model", model]
    subprocess.run(command, check=True)
    return [cv2.imread(str(p), cv2.IMREAD_COLOR) for p in sorted(out.glob("*.png"))]


def label(image: np.ndarray, text: str) -> np.ndarray:
    """``text`` in white on a dark strip at the top left."""
    image = image.copy()
    (text_w, text_h), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1)
    image[:text_h + 10, :text_w + 10] //= 3
    cv2.putText(image, text, (5, text_h + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255),
                1, cv2.LINE_AA)
    return image


def comparison_parser(doc: str, video: str, crop: str, zoom: float,
                      out: str) -> argparse.ArgumentParser:
    """The options of a picture that compares app runs on one crop of one frame of a clip."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--video", default=str(ROOT.parent / "shared/data/videos" / video))
    parser.add_argument("--frame", type=int, default=30)
    parser.add_argument("--model", default="", help="model (default: the app's camera default)")
    parser.add_argument("--crop", default=crop, help="X,Y,W,H of the frame to show")
    parser.add_argument("--zoom", type=float, default=zoom, help="enlargement of the crop")
    parser.add_argument("--out", default=str(ROOT / "docs" / out))
    return parser


def compare_runs(args: argparse.Namespace, background: str,
                 variants: list[tuple[str, tuple[str, ...]]]) -> None:
    """Run ``app.py --source args.video`` over ``background`` once per (label, extra arguments)
    of ``variants``, and write the same crop of frame ``args.frame`` of each, enlarged and
    labelled, side by side to ``args.out``."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    x, y, w, h = (int(v) for v in args.crop.split(","))
    common = ("--background", background, "--max-frames", str(args.frame + 1))
    with tempfile.TemporaryDirectory() as tmp:
        runs = [run_app(args.model, Path(args.video), Path(tmp) / str(i), *common, *extra)
                for i, (_, extra) in enumerate(variants)]
    if any(len(frames) <= args.frame for frames in runs):
        sys.exit(f"{args.video} has fewer than {args.frame + 1} frames")
    size = (round(w * args.zoom), round(h * args.zoom))
    sheet = np.hstack([label(cv2.resize(frames[args.frame][y:y + h, x:x + w], size,
                                        interpolation=cv2.INTER_CUBIC), text)
                       for (text, _), frames in zip(variants, runs)])
    cv2.imwrite(args.out, sheet)
    log.info("wrote %s (%dx%d) from %s, frame %d", args.out, sheet.shape[1], sheet.shape[0],
             args.video, args.frame)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", default=str(ROOT.parent / "shared/data/videos/asl_school.mkv"))
    parser.add_argument("--model", default="", help="model (default: the app's camera default)")
    parser.add_argument("--window", type=float, default=0.7, help="pan window, part of the frame")
    parser.add_argument("--height", type=int, default=180, help="height of each panel")
    parser.add_argument("--out", default=str(ROOT / "docs" / "framing.png"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    frames = pan(read_clip(Path(args.video)), args.window)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_clip(frames, tmp / "pan.avi")
        plain = run_app(args.model, tmp / "pan.avi", tmp / "plain")
        framed = run_app(args.model, tmp / "pan.avi", tmp / "framed", "--framing", "auto")
    count = min(len(plain), len(framed))
    moments = [round(count * f) for f in (0.1, 0.4, 0.7, 0.99)]
    moments[-1] = min(moments[-1], count - 1)
    width = round(frames[0].shape[1] * args.height / frames[0].shape[0])

    def panel(image, text):
        return label(cv2.resize(image, (width, args.height), interpolation=cv2.INTER_AREA), text)

    rows = [np.hstack([panel(run[i], f"{name}, frame {i}") for i in moments])
            for name, run in (("without", plain), ("--framing auto", framed))]
    sheet = np.vstack(rows)
    cv2.imwrite(args.out, sheet)
    log.info("wrote %s (%dx%d) from %s, frames %s", args.out, sheet.shape[1], sheet.shape[0],
             args.video, moments)


if __name__ == "__main__":
    main()
