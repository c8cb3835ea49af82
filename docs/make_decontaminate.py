"""Make ``docs/decontaminate.png``, the README's picture of ``--decontaminate``, through the app's command line.

    python docs/make_decontaminate.py [--video ../shared/data/videos/asl_please.mkv] [--frame 30] [--model M]

``asl_please`` (a clip no model was trained on) shows a signer before a bright wall. The script
runs ``app.py --source <clip>`` over a dark blue background without and with ``--decontaminate``
and puts the same crop of one frame of each side by side, enlarged: without it the soft edge
keeps the wall's colour, a pale fringe around the hair and a haze at the shoulder; with it the
edge takes the person's own colour.
"""

import argparse
import logging
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

from make_framing import label, run_app  # the framing picture's app run and panel labels

ROOT = Path(__file__).resolve().parents[1]
log = logging.getLogger("make_decontaminate")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", default=str(ROOT.parent / "shared/data/videos/asl_please.mkv"))
    parser.add_argument("--frame", type=int, default=30)
    parser.add_argument("--model", default="", help="model (default: the app's camera default)")
    parser.add_argument("--crop", default="230,10,250,220", help="X,Y,W,H of the frame to show")
    parser.add_argument("--zoom", type=float, default=1.6, help="enlargement of the crop")
    parser.add_argument("--out", default=str(ROOT / "docs" / "decontaminate.png"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    x, y, w, h = (int(v) for v in args.crop.split(","))
    common = ("--background", "#203050", "--max-frames", str(args.frame + 1))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        runs = {name: run_app(args.model, Path(args.video), tmp / name, *common, *extra)
                for name, extra in (("plain", ()), ("estimated", ("--decontaminate",)))}
    if any(len(frames) <= args.frame for frames in runs.values()):
        sys.exit(f"{args.video} has fewer than {args.frame + 1} frames")
    size = (round(w * args.zoom), round(h * args.zoom))
    panels = [label(cv2.resize(frames[args.frame][y:y + h, x:x + w], size,
                               interpolation=cv2.INTER_CUBIC), text)
              for text, frames in (("the default: the frame's colour", runs["plain"]),
                                   ("--decontaminate", runs["estimated"]))]
    sheet = np.hstack(panels)
    cv2.imwrite(args.out, sheet)
    log.info("wrote %s (%dx%d) from %s, frame %d", args.out, sheet.shape[1], sheet.shape[0],
             args.video, args.frame)


if __name__ == "__main__":
    main()
