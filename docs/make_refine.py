"""Make ``docs/refine.png``, the README's picture of the edge refinement's guide, through the app's command line.

    python docs/make_refine.py [--video ../shared/data/videos/asl_learn.mkv] [--frame 30] [--model M]

``asl_learn`` (a clip no model was trained on) shows dark hair against a bright wall. The script
runs ``app.py --source <clip>`` over a flat green background with ``--refine-guide grey`` (video's
filter until stop 42) and with the default (the colour guide), and puts the same crop of one
frame of each side by side, enlarged: the grey filter lets the wall glow around the hair and
shoulder, the colour filter does not.
"""

from make_framing import comparison_parser, compare_runs  # the pictures' shared app runs


def main() -> None:
    args = comparison_parser(__doc__, "asl_learn.mkv", crop="180,40,280,240", zoom=1.4,
                             out="refine.png").parse_args()
    compare_runs(args, "#20c040", [("--refine-guide grey", ("--refine-guide", "grey")),
                                   ("the default: colour", ())])


if __name__ == "__main__":
    main()
