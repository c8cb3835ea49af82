"""Make ``docs/confine.png``, the README's picture of the cap on the guided filter, through the app's command line.

    python docs/make_confine.py [--video ../shared/data/videos/asl_sorry.mkv] [--frame 30] [--model M]

``asl_sorry`` (a clip no model was trained on) shows a forearm before a tiled wall. The script
runs ``app.py --source <clip>`` over a flat green background with ``--refine-confine 0`` (the
filter uncapped, video's path until stop 55) and with the default (capped at the model's
sharpened probability over 0.05), and puts the same crop of one frame of each side by side,
enlarged: uncapped, the filter carries the arm's matte along the tiles' grout as faint lines of
the wall; capped, they end at the arm.
"""

from make_framing import comparison_parser, compare_runs  # the pictures' shared app runs


def main() -> None:
    args = comparison_parser(__doc__, "asl_sorry.mkv", crop="380,330,140,110", zoom=2.0,
                             out="confine.png").parse_args()
    compare_runs(args, "#20c040", [("--refine-confine 0", ("--refine-confine", "0")),
                                   ("the default: 0.05", ())])


if __name__ == "__main__":
    main()
