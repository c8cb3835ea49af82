"""The product suite: a model against its peer on every kind of scene a person meets, in one run.

``python -m portrait.evaluate --suite --model M --compare PEER [--data ../shared/data]``

Each model goes through the app's own paths, interleaved with the peer so both share the
machine's load:

* photos (``--image`` path: segmenter, guided filter, small islands cleared, alpha > 127),
  mIoU and boundary F on the held-out part of each labelled set (:data:`PHOTO_DOMAINS`), and
  "far": matte farther than 5 % of the long side from every labelled person, the room or a
  thing taken for a person in a whole scene (mean share of the photo, share of photos above 0.2 %);
* webcam video (the video-file path: segmenter with still-scene reuse, temporal smoothing,
  subject selection, guided filter), with no labels: stray area, frames with stray, bottom-edge
  gap (mean, frames that drop the edge), flicker and motion lag (:mod:`video_metrics`) on the
  held-out clips (:data:`WEBCAM_CLIPS`); and the same once more with subject selection off
  (``--people all``), the model alone;
* cost: the segmenter's median milliseconds on a 1280x720 frame (the live 16:9 input).

The held-out parts are fixed by rule here, so training can leave them out: a photo set's sorted
stems, every k-th one (the 1-based positions k, 2k, ...), and whole clips. ``training_split``
writes the complementary list files for training. The verdict is the worst domain against the
peer, not a mean over domains.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import statistics
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from portrait.capture import VideoFileSource
from portrait.errors import InputError, StopRequested
from portrait.sink.paths import lies_in
from portrait.options import (
    PipelineOptions,
    RefineOptions,
    SegmentOptions,
    SmoothOptions,
    SubjectOptions,
)
from portrait.pipeline import FrameProcessor
from portrait.refine import Refiner
from portrait.segment import create_segmenter
from portrait.segment.locate import SHARED_DIR
from portrait.smooth import TemporalSmoother
from portrait.subject import SubjectSelector
from portrait.training.conditions import CAMERA_CONDITIONS, CameraCondition
from portrait.training.evaluate import FAR_MARGIN, model_label
from portrait.training.video_metrics import SequenceScore
from portrait.words import counted

log = logging.getLogger("portrait.training.suite")

COST_FRAME_SIZE = (1280, 720)
DEFAULT_DATA_ROOT = SHARED_DIR / "data"
COST_REPEATS = 60


@dataclass(frozen=True)
class PhotoDomain:
    """A held-out slice of a labelled photo set under the data root.

    Attributes:
        name: the table's row name.
        folder: the set's folder under the data root (``images/``, ``masks/``).
        every: hold out every ``every``-th stem of the sorted pool (1-based positions).
        pool: a list file in the folder that the pool comes from; None = every image with a mask.
        whole_list: score the whole list file instead (a set's own validation list).
        everyone_labelled: the masks mark every person in the photo, so matte far from them is
            not a person (a chair, a curtain). EG1800's masks leave people behind the subject
            out, so its "far" measure also counts them and does not rank.
    """

    name: str
    folder: str
    every: int = 0
    pool: Optional[str] = None
    whole_list: Optional[str] = None
    everyone_labelled: bool = True


PHOTO_DOMAINS = (
    PhotoDomain("portraits, EG1800 other.txt", "eg1800", whole_list="other.txt",
                everyone_labelled=False),
    PhotoDomain("portraits, EG1800 H (train.txt, every 5th)", "eg1800", every=5, pool="train.txt",
                everyone_labelled=False),
    PhotoDomain("full bodies, ccp_fashion (every 10th)", "ccp_fashion", every=10),
    PhotoDomain("everyday scenes, coco_person (every 5th)", "coco_person", every=5),
    PhotoDomain("indoor sports, pelota (every 4th)", "pelota", every=4),
)
# Clips scored by the suite, never trained on, pseudo-labelled or tuned on. Two signers (the
# orange hoodie in learn and school) appear in no training clip.
WEBCAM_CLIPS = ("learn", "milk", "please", "school", "sorry", "want")
CLIP_PATTERN = "videos/asl_{}.mkv"


def holdout_stems(stems: Sequence[str], every: int) -> list[str]:
    """Every ``every``-th stem of the sorted stems (1-based positions every, 2*every, ...)."""
    if every < 1:
        raise ValueError(f"every must be at least 1, got {every}")
    return sorted(stems)[every - 1::every]


def _pool(root: Path, domain: PhotoDomain) -> list[str]:
    from portrait.training.folders import find_pairs, read_stems

    folder = root / domain.folder
    if domain.pool:
        return read_stems(folder / domain.pool)
    return [Path(image).stem for image, _ in find_pairs(folder)]


def domain_pairs(root: Path, domain: PhotoDomain) -> list[tuple[str, str]]:
    """The (image, mask) pairs a domain scores.

    Raises:
        InputError: the set is missing or laid out wrongly.
    """
    from portrait.training.folders import find_pairs, read_stems

    folder = root / domain.folder
    if not folder.is_dir():
        raise InputError(f"suite data '{folder}' not found; pass --data with the shared data root "
                         f"(it holds {', '.join(sorted({d.folder for d in PHOTO_DOMAINS}))} and videos/)")
    if domain.whole_list:
        stems = read_stems(folder / domain.whole_list)
    else:
        stems = holdout_stems(_pool(root, domain), domain.every)
    return find_pairs(folder, stems)


def training_split(root: Path, out: Path) -> dict[str, int]:
    """Write, for each photo set, a training list that leaves out everything the suite scores.

    ``out/<set>/train.txt`` lists the stems, beside links to the set's ``images/`` and ``masks/``,
    so ``python -m portrait.training.train --data out/<set>/train.txt`` reads it as it is.

    Returns:
        The number of training stems per set.

    Raises:
        InputError: ``out`` is the data root or inside it, an ``out/<set>`` folder holds files
            that no portrait data tool wrote (:func:`portrait.training.folders.claim_data_folder`)
            or a folder of files where its ``images/`` or ``masks/`` link belongs, or a set holds
            a photo whose stem a list file cannot hold
            (:func:`portrait.training.folders.check_listable`). Each is found before anything is
            written; a write that fails midway removes what the run wrote into new or empty
            folders (:func:`portrait.training.folders.removed_on_failure`).
    """
    from portrait.training.folders import (
        check_listable,
        claim_data_folder,
        find_pairs,
        removed_on_failure,
        unlistable,
        write_stems,
    )

    if out.exists() and not out.is_dir():
        raise InputError(f"--training-split '{out}' is a file; the split is a folder of lists, "
                         "so choose a new folder (e.g. runs/splits)")
    if lies_in(out, root):
        raise InputError(f"--training-split '{out}' lies in the data root '{root}', whose own "
                         "lists it would replace; choose a folder outside it (e.g. runs/splits)")
    folders = sorted({d.folder for d in PHOTO_DOMAINS})
    for folder in folders:
        claim_data_folder(out / folder, "--training-split", "portrait.training.suite", False)
        for name in ("images", "masks"):
            link = out / folder / name
            if link.exists() and not link.is_symlink():  # a link is an earlier split's
                raise InputError(f"--training-split: '{link}' is a folder of files, where a link "
                                 f"to the data root's {folder}/{name} belongs; choose a new folder")
    splits = {}  # every list made and checked (the data root complete) before anything is written
    for folder in folders:
        scored = {Path(image).stem for d in PHOTO_DOMAINS if d.folder == folder
                  for image, _ in domain_pairs(root, d)}
        pool = set()
        for d in PHOTO_DOMAINS:
            if d.folder == folder and not d.whole_list:
                pool |= set(_pool(root, d))
        splits[folder] = sorted(pool - scored)
        for stem in splits[folder]:
            if unlistable(stem) is not None:
                image, _ = find_pairs(root / folder, [stem])[0]
                check_listable(stem, f"the photo '{image}'", "rename the photo and its mask in "
                               "the data root")
    counts = {}
    with removed_on_failure(out, *(out / folder for folder in folders)):
        for folder, stems in splits.items():
            claim_data_folder(out / folder, "--training-split", "portrait.training.suite")
            target = out / folder
            for name in ("images", "masks"):
                link = target / name
                if link.is_symlink():  # an earlier split's, perhaps of another data root
                    link.unlink()
                link.symlink_to((root / folder / name).resolve(), target_is_directory=True)
            write_stems(target / "train.txt", stems)
            counts[folder] = len(stems)
    return counts


def clip_paths(root: Path, clips: Sequence[str] = WEBCAM_CLIPS) -> list[Path]:
    """The held-out clips' files.

    Raises:
        InputError: a clip is missing.
    """
    paths = [root / CLIP_PATTERN.format(name) for name in clips]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise InputError(f"suite clip '{missing[0]}' not found; pass --data with the shared data root")
    return paths


def score_clip(segment: SegmentOptions, path: Path, max_frames: Optional[int] = None,
               subject: bool = True, condition: Optional[CameraCondition] = None,
               refine: RefineOptions = RefineOptions()) -> SequenceScore:
    """Run a clip through the app's video-file path (matte output) and score its mattes.

    ``subject``: with the app's subject selection (its default for video), or without it
    (``--people all``: what the model itself marks). ``condition``: remake each frame as that
    camera would deliver it; stillness is judged on the frame before its photometric change.
    ``refine``: the edge refinement (the app's default for video unless told otherwise).
    Each frame also goes through the same path with smoothing off and no mask reused, its own
    matte, for motion lag; the model runs once a frame for both, so the app path's numbers are
    those it gives alone.
    """
    condition = condition or CameraCondition("as filmed")
    score = SequenceScore()
    with VideoFileSource(path) as source:
        frames = iter(source)
        first = next(frames, None)
        if first is None:
            raise InputError(f"clip '{path}' gave no frames; check the file")
        framed, _ = condition.apply(first.image, 0)
        height, width = framed.shape[:2]
        with create_segmenter(replace(segment, frame_size=(width, height))) as segmenter:
            model = _OncePerFrame(segmenter)

            def video_path(smooth: SmoothOptions, pipeline: PipelineOptions) -> FrameProcessor:
                return FrameProcessor(model, TemporalSmoother(smooth), Refiner(refine), None,
                                      matte=True, options=pipeline,
                                      subject=SubjectSelector(SubjectOptions()) if subject else None)

            processor = video_path(SmoothOptions(), PipelineOptions())
            # The same path with nothing borrowed from earlier frames: each frame's own matte,
            # which motion lag compares against (the model's output on the frame is shared).
            own_path = video_path(SmoothOptions(enabled=False), PipelineOptions(reuse_still=False))
            chained = itertools.islice(itertools.chain([first], frames), max_frames)
            for index, frame in enumerate(chained):
                framed, delivered = condition.apply(frame.image, index)
                model.forget()
                alpha = processor.process(delivered)
                score.add(framed, alpha, own_path.process(delivered))
    return score


class _OncePerFrame:
    """A segmenter that two paths share on one frame: the model runs on it once, for whichever
    asks first (the app's path skips it on a reused mask); ``forget()`` before the next frame."""

    def __init__(self, segmenter):
        self.segmenter = segmenter
        self._prob: Optional[np.ndarray] = None

    def segment(self, image: np.ndarray) -> np.ndarray:
        if self._prob is None:
            self._prob = self.segmenter.segment(image)
        return self._prob

    def forget(self) -> None:
        self._prob = None


def segment_cost_ms(models: Sequence[SegmentOptions], frame_bgr: np.ndarray,
                    repeats: int = COST_REPEATS) -> list[dict]:
    """Median milliseconds of each model's segmenter on one frame, the calls interleaved.

    Returns:
        Per model: ``ms`` (median), ``input`` (the model input the app uses, ``WxH``).
    """
    height, width = frame_bgr.shape[:2]
    with contextlib.ExitStack() as stack:
        segmenters = [stack.enter_context(create_segmenter(replace(m, frame_size=(width, height))))
                      for m in models]
        times = [[] for _ in models]
        for segmenter in segmenters:
            segmenter.segment(frame_bgr)  # warm-up
        for _ in range(repeats):
            for segmenter, spent in zip(segmenters, times):
                started = time.perf_counter()
                segmenter.segment(frame_bgr)
                spent.append((time.perf_counter() - started) * 1000)
        return [{"ms": round(statistics.median(spent), 3),
                 "input": "{}x{}".format(*segmenter.input_size)}
                for segmenter, spent in zip(segmenters, times)]


def run_suite(root: Path, models: Sequence[SegmentOptions], max_items: Optional[int] = None,
              progress: bool = True, conditions: bool = False) -> dict:
    """Score the models on every domain of the suite.

    Args:
        root: the data root (``eg1800/``, ``ccp_fashion/``, ..., ``videos/``).
        models: the model first, its peer second (more are scored alike).
        max_items: at most this many photos per domain and frames per clip (quick runs).

    Returns:
        ``photos``: per domain, one summary per model (see ``evaluate.summarize``; compared
        models with ``paired``); ``webcam``: per clip and for all clips pooled, per model
        ``frames``, ``stray_mean``, ``stray_frames``, ``stray_share``, ``edge_gap_mean``,
        ``edge_gap_frames``, ``edge_gap_share``, ``flicker``, ``still_pairs``, ``motion_lag``,
        ``moving_pairs``, through the app's video path;
        ``webcam_model_alone``: the same with subject selection off; ``cost``: per model ``ms``
        and ``input``; ``worst`` (see :func:`worst_domain`). With ``conditions``, also
        ``webcam_conditions``: per camera condition (:data:`CAMERA_CONDITIONS`), the held-out
        clips pooled through the app's path as that camera would deliver them; not part of
        ``worst``.

    Raises:
        InputError: missing suite data.
        KeyboardInterrupt, StopRequested: a stop (Ctrl-C, SIGTERM) while scoring; once a
            domain is scored whole, it carries as ``partial_scores`` the result so far: the
            domains and clips scored whole (no ``cost``, no ``worst``), for the caller to
            report rather than lose.
    """
    import cv2

    from portrait.training.evaluate import score_pairs

    clips = clip_paths(root)
    domains = {domain.name: domain_pairs(root, domain)[:max_items] for domain in PHOTO_DOMAINS}
    # Filled in as each domain and clip is scored whole, so that a stop can hand it on.
    result = {"models": [m.model for m in models], "tta": [m.tta for m in models], "photos": {}}
    try:
        for name, pairs in domains.items():
            log.info("suite: %s, %s", name, counted(len(pairs), "photo"))
            result["photos"][name] = score_pairs(pairs, models, progress=progress)
        for key, subject in (("webcam", True), ("webcam_model_alone", False)):
            scores = {}
            for name, path in zip(WEBCAM_CLIPS, clips):
                log.info("suite: webcam clip %s%s", path.name, "" if subject else ", model alone")
                scores[name] = [score_clip(m, path, max_items, subject=subject) for m in models]
                result.setdefault(key, {})[name] = [clip_summary(score) for score in scores[name]]
            result[key]["all held-out clips"] = [
                clip_summary(pooled([scores[name][i] for name in WEBCAM_CLIPS]))
                for i in range(len(models))]
        if conditions:
            for condition in CAMERA_CONDITIONS:
                log.info("suite: held-out clips, %s", condition.name)
                result.setdefault("webcam_conditions", {})[condition.name] = [
                    clip_summary(pooled([score_clip(m, path, max_items, condition=condition)
                                         for path in clips]))
                    for m in models]
        with VideoFileSource(clips[0]) as source:
            frame = cv2.resize(next(iter(source)).image, COST_FRAME_SIZE,
                               interpolation=cv2.INTER_AREA)
        result["cost"] = segment_cost_ms(models, frame)
    except (KeyboardInterrupt, StopRequested) as stop:
        # What was scored whole goes on up with the stop, as score_pairs hands on its images
        # (a domain cut short carries its own, which the suite leaves out); no verdict, which
        # needs every domain.
        stop.partial_scores = result if result["photos"] else None
        raise
    result["worst"] = worst_domain(result)
    return result


def pooled(scores: Sequence[SequenceScore]) -> SequenceScore:
    """Several clips' scores as one: every frame's stray area and bottom-edge gap, every still
    pair's flicker and every moving pair's motion lag."""
    return SequenceScore(strays=[s for score in scores for s in score.strays],
                         edge_gaps=[g for score in scores for g in score.edge_gaps],
                         flickers=[f for score in scores for f in score.flickers],
                         lags=[lag for score in scores for lag in score.lags])


def clip_summary(score: SequenceScore) -> dict:
    """A clip's (or pooled clips') numbers for the JSON and the table."""
    return {"frames": score.frames, "stray_mean": round(score.stray_mean, 6),
            "stray_frames": score.stray_frames,
            "stray_share": round(score.stray_frames / max(score.frames, 1), 4),
            "edge_gap_mean": round(score.edge_gap_mean, 6), "edge_gap_frames": score.edge_gap_frames,
            "edge_gap_share": round(score.edge_gap_frames / max(score.frames, 1), 4),
            "flicker": None if score.flicker is None else round(score.flicker, 6),
            "still_pairs": len(score.flickers),
            "motion_lag": None if score.motion_lag is None else round(score.motion_lag, 6),
            "moving_pairs": len(score.lags)}


def worst_domain(result: dict) -> dict:
    """The domain where the model does worst against the peer (models[0] against models[1]).

    Photos compare mIoU (model − peer) and, where every person is labelled, the share of photos
    with matte far from everyone (peer − model); webcam compares the share of frames with stray
    area through the app's video path (peer − model). Negative is worse for the model; the most
    negative difference names the worst domain.
    """
    ranked_far = {domain.name for domain in PHOTO_DOMAINS if domain.everyone_labelled}
    rows = []
    for name, summaries in result["photos"].items():
        rows.append((round(summaries[0]["miou"] - summaries[1]["miou"], 5), name, "mIoU"))
        if name in ranked_far:
            rows.append((round(summaries[1]["far_share"] - summaries[0]["far_share"], 5), name,
                         "share of photos with matte far from everyone"))
    for name, summaries in result["webcam"].items():
        rows.append((round(summaries[1]["stray_share"] - summaries[0]["stray_share"], 5),
                     f"webcam {name}", "share of frames with stray"))
    difference, name, measure = min(rows)
    return {"domain": name, "measure": measure, "difference": difference}


def format_suite(result: dict) -> str:
    """The suite's tables (photos, webcam, cost) and its verdict, for a terminal."""
    names = [model_label(m, tta) for m, tta in
             zip(result["models"], result.get("tta") or ["off"] * len(result["models"]))]
    ours, peer = names[0], names[1]
    lines = [f"suite: {ours} against {peer}", ""]
    width = max(len(n) for n in result["photos"]) + 2

    def pct(value):
        return float("nan") if value is None else 100 * value

    header = (f"{'photos (held out)':<{width}}{'n':>5}  {'mIoU':>7} {'peer':>7}  {'diff':>8} {'± se':>7}"
              f"  {'bound F':>7} {'peer':>7}  {'far %':>6} {'peer':>6}  {'>0.2%':>6} {'peer':>6}")
    lines += [header, "-" * len(header)]
    for name, (a, b, *_) in result["photos"].items():
        paired = b["paired"]  # peer minus ours, image by image
        se = paired["miou_diff_se"]
        lines.append(f"{name:<{width}}{a['n']:>5}  {a['miou']:>7.4f} {b['miou']:>7.4f}  "
                     f"{-paired['miou_diff']:>+8.4f} {se if se is not None else float('nan'):>7.4f}"
                     f"  {a['boundary_f']:>7.3f} {b['boundary_f']:>7.3f}"
                     f"  {pct(a['far_mean']):>6.2f} {pct(b['far_mean']):>6.2f}  "
                     f"{pct(a['far_share']):>5.1f}% {pct(b['far_share']):>5.1f}%")
    lines.append(f"far: matte farther than {FAR_MARGIN:.0%} of the long side from every labelled "
                 "person (mean % of the photo; share of photos above 0.2 %); EG1800's masks leave "
                 "second people out, so there it counts them too and does not rank")

    for key, title in (("webcam", "webcam (held-out clips)"),
                       ("webcam_model_alone", "model alone (--people all)"),
                       ("webcam_conditions", "other cameras (held-out clips, app path)")):
        if key not in result:  # results written before subject selection
            continue
        header = (f"{title:<{width}}{'frames':>6}  {'stray %':>8} {'peer':>7}  "
                  f"{'>0.2%':>6} {'peer':>6}  {'flicker %':>9} {'peer':>7} {'still':>6}"
                  f"  {'lag %':>7} {'peer':>7} {'moving':>6}"
                  f"  {'gap %':>7} {'peer':>7}  {'>0.1%':>6} {'peer':>6}")
        lines += ["", header, "-" * len(header)]
        for name, (a, b, *_) in result[key].items():
            # results written before motion lag or the bottom-edge gap have none
            lines.append(f"{name:<{width}}{a['frames']:>6}  {pct(a['stray_mean']):>8.3f} "
                         f"{pct(b['stray_mean']):>7.3f}  "
                         f"{pct(a['stray_share']):>5.1f}% {pct(b['stray_share']):>5.1f}%  "
                         f"{pct(a['flicker']):>9.3f} {pct(b['flicker']):>7.3f} {a['still_pairs']:>6}"
                         f"  {pct(a.get('motion_lag')):>7.3f} {pct(b.get('motion_lag')):>7.3f} "
                         f"{a.get('moving_pairs', 0):>6}"
                         f"  {pct(a.get('edge_gap_mean')):>7.3f} {pct(b.get('edge_gap_mean')):>7.3f}  "
                         f"{pct(a.get('edge_gap_share')):>5.1f}% {pct(b.get('edge_gap_share')):>5.1f}%")
    lines.append("lag: where the picture moved, the share of the frame where the matte and the "
                 "frame's own matte (no smoothing, no reused mask) disagree across 127")
    lines.append("gap: in the bottom 1/16 of the frame, matte that is not person under a column that "
                 "is person just above it, a person cut by the bottom edge made transparent (mean % "
                 "of the frame; share of frames above 0.1 %)")
    if "cost" not in result:  # a run stopped before it
        lines += ["", "cost: not measured (stopped before it)",
                  "worst domain against the peer: not judged (stopped before every domain was "
                  "scored)"]
        return "\n".join(lines)
    a, b, *_ = result["cost"]
    lines += ["", f"cost: segmenter on a {COST_FRAME_SIZE[0]}x{COST_FRAME_SIZE[1]} frame, median ms: "
                  f"{ours} {a['ms']:.2f} (input {a['input']}), {peer} {b['ms']:.2f} (input {b['input']}), "
                  f"{a['ms'] / b['ms']:.2f}x"]
    worst = result["worst"]
    lines.append(f"worst domain against the peer: {worst['domain']} ({worst['measure']}, "
                 f"{worst['difference']:+.4f})")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m portrait.training.suite --training-split OUT``: the suite's complement, to train on."""
    from portrait.cli import OneLineParser, configure_logging
    from portrait.errors import run_command

    parser = OneLineParser(prog="python -m portrait.training.suite",
                           description="Write training lists that leave out every photo the suite "
                                       "scores (run the suite itself with python -m portrait.evaluate "
                                       "--suite).")
    parser.add_argument("--training-split", required=True, metavar="OUT",
                        help="folder to write OUT/<set>/train.txt (with links to the set's images/ "
                             "and masks/)")
    parser.add_argument("--data", metavar="DIR", default=str(DEFAULT_DATA_ROOT),
                        help="the data root (default: ../shared/data beside the project)")
    from portrait.cli import with_debug

    args = with_debug(parser).parse_args(argv)
    configure_logging()

    def body() -> None:
        for folder, count in training_split(Path(args.data), Path(args.training_split)).items():
            log.info("%s: %s in %s", folder, counted(count, "training stem"),
                     Path(args.training_split) / folder / "train.txt")

    return run_command(body, traceback=args.debug)


if __name__ == "__main__":
    sys.exit(main())
