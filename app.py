#!/usr/bin/env python3
"""portrait: blur or replace the background behind a person, live (virtual camera), in video files
and in photos. Run ``python app.py --help`` for the options; the README has examples."""

import os
import sys

# TensorFlow and MediaPipe log a lot at import; keep the user's terminal for our own lines.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("GLOG_minloglevel", "2")

from portrait.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
