"""Make ``docs/decontaminate.png``, the README's picture of ``--decontaminate``, through the app's command line.

    python docs/make_decontaminate.py [--video ../shared/data/videos/asl_please.mkv] [--frame 30] [--model M]

``asl_please`` (a clip no model was trained on) shows a signer before a bright wall. The script
runs ``app.py --source <clip>`` over a dark blue background without and with ``--decontaminate``
and puts the same crop of one frame of each side by side, enlarged: without it the soft edge
keeps the wall's colour, a pale fringe around the hair and a haze at the shoulder; with it the
edge takes the person's own colour.
"""

from make_framing import comparison_parser, compare_runs  # the pictures' shared app runs


def main() -> None:
    args = comparison_parser(__doc__, "asl_please.mkv", crop="230,10,250,220", zoom=1.6,
                             out="decontaminate.png").parse_args()
    compare_runs(args, "#203050", [("the default: the frame's colour", ()),
                                   ("--decontaminate", ("--decontaminate",))])


if __name__ == "__main__":
    main()
