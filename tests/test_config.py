"""The config file: where it is found, that the command line wins, that every long option of
the parser is settable there (found by iterating over the parser, as the app does), the
one-line errors (exit code 2) and --print-config."""

import argparse
import subprocess
import os
import sys
import tomllib
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import ROOT
from portrait.cli import (build_parser, command_line_options, control_options_from_args, given,
                          log_verbosity, main, model_size, parse_size, source_spec)
from portrait.config import (
    NOT_SETTABLE,
    default_config_path,
    format_config,
    parse_with_config,
    read_config,
    settable_options,
)
from portrait.option_checks import number_field
from portrait.options import (CaptureOptions, CompositeOptions, FramingOptions, OutputOptions,
                              RefineOptions, SegmentOptions, SmoothOptions)


def write_config(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def parse(*argv):
    return parse_with_config(build_parser(), [str(a) for a in argv])


def test_the_command_line_wins_over_the_file(tmp_path):
    config = write_config(tmp_path / "c.toml", 'blur = 30\nbackground = "#00ff00"\nmirror = true\n')
    args, read = parse("--config", config)
    assert (args.blur, args.background, args.mirror) == (30, "#00ff00", True)
    assert read.path == config
    args, _ = parse("--config", config, "--blur", "10", "--no-mirror")
    assert (args.blur, args.background, args.mirror) == (10, "#00ff00", False)
    args, _ = parse("--blur", "10")  # no file: the parser's defaults
    assert (args.blur, args.background, args.mirror) == (10, "blur", False)


def test_the_default_file_is_under_xdg_config_home_or_dot_config(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert default_config_path() == tmp_path / "xdg" / "portrait" / "config.toml"
    write_config(tmp_path / "xdg" / "portrait" / "config.toml", "blur = 40\n")
    assert parse()[0].blur == 40
    monkeypatch.delenv("XDG_CONFIG_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_config_path() == tmp_path / "home" / ".config" / "portrait" / "config.toml"
    assert parse()[0].blur is None  # no file there: the blur by the frame's size
    write_config(tmp_path / "home" / ".config" / "portrait" / "config.toml", "blur = 41\n")
    assert parse()[0].blur == 41


# A valid command-line value for each argument type the parser uses, and for each option field
# a number option takes its type from (portrait.cli.field_number). A new type or field makes the
# test below fail until a sample is added here, so no option goes untested.
SAMPLES = {None: "some/path.mp4", given: "some/path.mp4", source_spec: "clip.mp4", int: 3,
           float: 0.5, parse_size: "96x48", model_size: "96x64"}
FIELD_SAMPLES = {(CaptureOptions, "width"): 640, (CaptureOptions, "height"): 480,
                 (CaptureOptions, "fps"): 15.0, (SegmentOptions, "threads"): 3,
                 (SmoothOptions, "min_weight"): 0.3, (RefineOptions, "radius_px"): 12,
                 (RefineOptions, "sharpen"): 1.5, (RefineOptions, "confine"): 0.2,
                 (CompositeOptions, "blur_px"): 7,
                 (CompositeOptions, "light_wrap"): 0.3, (FramingOptions, "max_zoom"): 1.5,
                 (OutputOptions, "max_frames"): 7}


def sample(action):
    """:data:`SAMPLES`' or :data:`FIELD_SAMPLES`' value for ``action``'s type."""
    field = getattr(action.type, "field", None)
    if field is not None:
        assert field in FIELD_SAMPLES, f"add a sample value for {field} to FIELD_SAMPLES"
        return FIELD_SAMPLES[field]
    assert action.type in SAMPLES, "add a sample value for its type to SAMPLES"
    return SAMPLES[action.type]


def long_options():
    return sorted(settable_options(build_parser()).items())


@pytest.mark.parametrize("key, action", long_options(), ids=[k for k, _ in long_options()])
def test_every_long_option_is_settable_as_on_the_command_line(tmp_path, key, action):
    if isinstance(action, argparse.BooleanOptionalAction) and action.default and \
            not key.startswith("no-"):  # on by default (audio): the file turns it off
        value, argv = False, [f"--no-{key}"]
    elif isinstance(action, argparse.BooleanOptionalAction) or action.nargs == 0:
        value, argv = True, [f"--{key}"]
    elif action.choices is not None:
        value = next(c for c in action.choices if c != action.default)
        argv = [f"--{key}", str(value)]
    else:
        value = sample(action)
        argv = [f"--{key}", str(value)]
    config = write_config(tmp_path / "c.toml", f"{key} = {_literal(value)}\n")
    from_file = getattr(parse("--config", config)[0], action.dest)
    from_command_line = getattr(parse(*argv)[0], action.dest)
    assert from_file == from_command_line
    if not key.startswith("no-") or not isinstance(action, argparse.BooleanOptionalAction):
        assert from_file != action.default, "the sample must differ from the default"


def _literal(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    return f'"{value}"' if isinstance(value, str) else repr(value)


@pytest.mark.parametrize("text, expected", [
    ("tta = true\n", "scales"),  # the bare flag
    ("tta = false\n", "off"),  # one pass, not the default (auto: scales for --image)
    ('tta = "mirror"\n', "mirror"),
    ("light-wrap = false\n", 0.0),  # an option without "off": false is its default
])
def test_a_flag_with_an_optional_value_takes_true_and_false(tmp_path, text, expected):
    config = write_config(tmp_path / "c.toml", text)
    args = parse("--config", config, "--image", "a.jpg")[0]
    key = text.split(" = ")[0].replace("-", "_")
    assert getattr(args, key) == expected
    if key == "tta":
        from portrait.cli import options_from_args

        assert options_from_args(args)[1].tta == expected


def test_keys_come_from_the_parser_and_underscores_are_accepted(tmp_path):
    options = settable_options(build_parser())
    assert {"background", "blur", "mirror", "max-frames", "input-size", "no-smooth"} <= set(options)
    assert not NOT_SETTABLE & set(options)
    config = write_config(tmp_path / "c.toml", "max_frames = 9\n")
    assert parse("--config", config)[0].max_frames == 9


def test_a_home_relative_path_is_expanded(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    config = write_config(tmp_path / "c.toml", 'background = "~/backgrounds"\n')
    assert parse("--config", config)[0].background == str(tmp_path / "backgrounds")


@pytest.mark.parametrize("text, words", [
    ("colour = 1\n", ["unknown key 'colour'", "allowed:", "blur", "mirror"]),
    ("[look]\nblur = 3\n", ["has a section [look], which it does not take: its keys stand at "
                            "the top level", "remove the line [look]"]),
    ("[portrait]\nblur = 3\n", ["has a section [portrait]", "remove the line [portrait]"]),
    ("source = 1.0\n", ["'source'", "source = 1.0: a camera index is a whole number: source = 1; "
                                    "a video file's name goes in quotes"]),
    ("blur = -3\n", ["'blur'", "'-3' must be from 1 to 10000", "allowed: N"]),
    ("width = 0\n", ["'width'", "greater than 0", "allowed: W, camera width"]),
    ("fps = 0\n", ["'fps'", "allowed: F, camera frame rate"]),
    ("threads = -1\n", ["'threads'", "must be 0 (half the cores for camera and video, every "
                                     "core for photos) or more", "allowed: N, CPU threads"]),
    ("blur = 2.5\n", ["'blur'", "not a whole number"]),
    ("blur = true\n", ["'blur'", "true/false"]),
    ("device = \"tpu\"\n", ["'device'", '"auto", "cpu", "gpu"']),
    ("mirror = \"yes\"\n", ["'mirror'", "true or false"]),
    ("mirror = \"True\"\n", ["'mirror'", '"True" is a string, not true or false: write true '
                                        "without quotes"]),
    ("background = 3\n", ["'background'", "string"]),
    ("input-size = \"big\"\n", ["'input-size'", "WxH"]),
    ("blur = \n", ["not valid TOML"]),
    ("max_frames = 3\nmax-frames = 7\n", ["sets one option twice, as 'max_frames' and as "
                                          "'max-frames'; keep one"]),
    ("mirror = true\nno-mirror = true\n", ["as 'mirror' and as 'no-mirror'"]),
])
def test_a_bad_file_is_one_line_and_exit_code_2(capsys, tmp_path, text, words):
    config = write_config(tmp_path / "settings.toml", text)
    capsys.readouterr()
    assert main(["--config", str(config)]) == 2
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    assert "settings.toml" in lines[0]
    for word in words:
        assert word in lines[0]
    assert captured.out == ""


NUMBER_OPTIONS = [action for action in build_parser()._actions if hasattr(action.type, "field")]


@pytest.mark.parametrize("action", NUMBER_OPTIONS,
                         ids=[action.option_strings[0] for action in NUMBER_OPTIONS])
def test_a_number_out_of_range_in_the_file_is_refused_in_the_command_lines_words(
        capsys, tmp_path, action):
    """Each number option, its field's lower bound less 1 (each has one): the file's line
    quotes the command line's refusal, the range as the field gives it."""
    kind, bounds = number_field(*action.type.field)
    value = kind(bounds.low - 1)
    flag = action.option_strings[0]
    with pytest.raises(SystemExit) as stop:
        build_parser().parse_args([flag, str(value)])
    assert stop.value.code == 2
    refusal = capsys.readouterr().err.split(f"argument {flag}: ", 1)[1].split("; see ")[0]
    assert f"'{value}' must be" in refusal
    config = write_config(tmp_path / "settings.toml", f"{flag[2:]} = {value!r}\n")
    assert main(["--config", str(config)]) == 2
    line, = capsys.readouterr().err.splitlines()
    assert line.startswith(f"error: bad value for '{flag[2:]}' in config file '{config}': "
                           f"{flag[2:]} = {value!r}: {refusal}; allowed: "), line


def test_a_windows_path_in_double_quotes_is_refused_by_its_escapes_and_single_quotes_keep_it(
        capsys, tmp_path):
    """TOML reads "C:\\backgrounds\\beach.jpg" as C:, a backspace, 'ackgrounds', a backspace
    and 'each.jpg': the app stopped at a background 'not found', its name shown without the
    characters that went. The value with control characters is refused, saying why; in single
    quotes a backslash is a backslash."""
    config = write_config(tmp_path / "settings.toml",
                          'background = "C:\\backgrounds\\beach.jpg"\n')
    capsys.readouterr()
    assert main(["--config", str(config), "--print-config"]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f"error: bad value for 'background' in config file '{config}': background = "
        '"C:\\backgrounds\\beach.jpg": it holds a control character, which a backslash in double '
        "quotes makes"), lines
    assert "write a Windows path in single quotes" in lines[0]
    config.write_text("background = 'C:\\backgrounds\\beach.jpg'\n")
    assert parse("--config", config)[0].background == "C:\\backgrounds\\beach.jpg"


@pytest.mark.parametrize("line, column", [
    ("mirror = True", 10),  # Python's spelling
    ("background = beach.jpg", 14),  # text without quotes
    ('background = "C:\\Users\\me\\beach.jpg"', 19),  # \U starts an escape in double quotes
])
def test_invalid_toml_names_its_line_and_the_rules_a_newcomer_trips_on(capsys, tmp_path, line,
                                                                       column):
    """The line was "not valid TOML (Invalid value (at line 2, column 10)); write one option a
    line: blur = 30", which the file already did: it shows the line and TOML's rules for text,
    true/false and Windows paths."""
    config = write_config(tmp_path / "settings.toml", f"blur = 30\n{line}\n")
    capsys.readouterr()
    assert main(["--config", str(config), "--print-config"]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"error: config file '{config}' is not valid TOML (")
    assert f"(at line 2, column {column})): line 2 says {line}; " in lines[0]
    assert lines[0].endswith(
        "text in quotes, true and false in lower case, a Windows path in single quotes: "
        "blur = 30, background = \"beach.jpg\", mirror = true, "
        "background = 'C:\\Users\\me\\beach.jpg'")


@pytest.mark.parametrize("encoding, text, word", [
    ("utf-16", "blur = 30\n", "byte 0xff at position 0"),  # Notepad's "Unicode"
    ("latin-1", 'background = "Jos\u00e9.png"\n', "byte 0xe9 at position 17"),
])
def test_a_file_that_is_not_utf8_is_one_line(capsys, tmp_path, encoding, text, word):
    config = tmp_path / "settings.toml"
    config.write_text(text, encoding=encoding)
    capsys.readouterr()
    assert main(["--config", str(config), "--print-config"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"error: config file '{config}' is not UTF-8 text ({word}); save it as UTF-8"]


def test_a_byte_order_mark_is_read_past(capsys, tmp_path):
    config = tmp_path / "settings.toml"
    config.write_text("blur = 30\n", encoding="utf-8-sig")
    assert parse("--config", config)[0].blur == 30


def test_a_flag_set_in_the_file_is_undone_by_its_no_form(tmp_path):
    flags = ("matte", "preview", "realtime", "letterbox", "trust-model", "mirror")
    config = write_config(tmp_path / "c.toml", "".join(f"{flag} = true\n" for flag in flags))
    on = parse("--config", config)[0]
    off = parse("--config", config, *(f"--no-{flag}" for flag in flags))[0]
    for flag in flags:
        dest = flag.replace("-", "_")
        assert getattr(on, dest) is True and getattr(off, dest) is False, flag


def test_errors_from_the_app_itself_have_no_traceback(tmp_path):
    config = write_config(tmp_path / "c.toml", "blurr = 30\n")
    done = subprocess.run([sys.executable, "app.py", "--config", str(config)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"error: unknown key 'blurr' in config file '{config}'; did you mean 'blur'? allowed: "
        + ", ".join(sorted(settable_options(build_parser())))]
    missing = subprocess.run([sys.executable, "app.py", "--config", str(tmp_path / "no.toml")],
                             cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and "no.toml" in missing.stderr
    assert "Traceback" not in missing.stderr and len(missing.stderr.splitlines()) == 1


def test_print_config_prints_the_effective_settings_and_reads_back(capsys, tmp_path):
    config = write_config(tmp_path / "c.toml", 'blur = 30\nbackground = "#00ff00"\nmirror = true\n'
                                               'input-size = "64x32"\nmax-frames = 5\n')
    capsys.readouterr()
    assert main(["--config", str(config), "--blur", "12", "--tta", "--print-config"]) == 0
    printed = capsys.readouterr().out
    settings = tomllib.loads(printed)
    assert settings["blur"] == 12 and settings["background"] == "#00ff00"
    assert settings["mirror"] is True and settings["tta"] == "scales" and settings["max-frames"] == 5
    assert settings["input-size"] == "64x32"
    assert "# image = (not set)" in printed
    assert "# loop = (not set)" in printed  # by the output, as realtime
    # Fed back as a config file, the printout gives the same settings.
    again = write_config(tmp_path / "again.toml", printed)
    first, _ = parse("--config", config, "--blur", "12", "--tta")
    second, _ = parse("--config", again)
    ignore = {"config"}
    assert ({k: v for k, v in vars(first).items() if k not in ignore}
            == {k: v for k, v in vars(second).items() if k not in ignore})


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
@pytest.mark.parametrize("redirect", ["full", "closed"])
def test_print_config_into_a_full_disk_or_a_closed_output_is_one_line(redirect):
    """``--print-config > config.toml`` on a full disk (``/dev/full``), or with standard output
    closed: one line, exit code 2, no traceback."""
    stdout = open("/dev/full", "w") if redirect == "full" else None
    try:
        done = subprocess.run([sys.executable, "app.py", "--print-config"], cwd=ROOT,
                              stdout=stdout if stdout else subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True, timeout=60,
                              pass_fds=() if stdout else (),
                              preexec_fn=None if stdout else (lambda: os.close(1)))
    finally:
        if stdout:
            stdout.close()
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.splitlines()) == 1, done.stderr
    assert done.stderr.startswith("error: cannot print the settings: standard output takes no "
                                  "more ("), done.stderr


def test_print_config_names_the_config_files_background_that_b_also_steps_to(capsys, tmp_path):
    """A colour in the file and a folder on the command line: ``b`` steps through both, but the
    printout has one ``background``; a comment says what a file made from it would leave out."""
    config = write_config(tmp_path / "c.toml", 'background = "#00ff00"\n')
    folder = tmp_path / "backgrounds"
    folder.mkdir()
    capsys.readouterr()
    assert main(["--config", str(config), "--background", str(folder), "--print-config"]) == 0
    printed = capsys.readouterr().out
    assert tomllib.loads(printed)["background"] == str(folder)
    assert "# b also steps to '#00ff00', the config file's background" in printed
    capsys.readouterr()
    assert main(["--config", str(config), "--print-config"]) == 0  # one kind: nothing to say
    assert "b also steps" not in capsys.readouterr().out


def test_format_config_without_a_file_says_so():
    parser = build_parser()
    text = format_config(parser, parser.parse_args([]), read_config(parser))
    assert "no config file" in text.splitlines()[0]
    assert "blur" not in tomllib.loads(text)  # by the frame's size
    assert "# blur = (not set)" in text.splitlines()


def test_format_config_names_a_file_that_sets_nothing(tmp_path):
    """An empty config file is still the file read: the printout's first line names it."""
    config = write_config(tmp_path / "empty.toml", "# nothing yet\n")
    parser = build_parser()
    read = read_config(parser, str(config))
    assert read.path == config and read.defaults == {}
    first = format_config(parser, parser.parse_args([]), read).splitlines()[0]
    assert str(config) in first and "no config file" not in first


def test_a_folder_where_the_default_file_would_be_is_no_config_file(tmp_path, monkeypatch):
    """Only --config's path must be a file: a folder at the default place is skipped, as an
    absent file is, not an error telling the user to fix a --config they never gave."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    default_config_path().mkdir(parents=True)
    args, read = parse("--blur", "10")
    assert read.path is None and args.blur == 10


def test_the_no_form_of_a_flag_with_an_underscore_turns_it_off(tmp_path):
    """``no_mirror = true`` is ``no-mirror = true``: mirror off, as --no-mirror."""
    config = write_config(tmp_path / "c.toml", "no_mirror = true\nno_smooth = true\n")
    args = parse("--config", config, "--mirror")[0]
    assert args.mirror is True  # the command line wins
    args = parse("--config", config)[0]
    assert args.mirror is False and args.no_smooth is True
    config = write_config(tmp_path / "c.toml", "no_matte = false\n")
    assert parse("--config", config)[0].matte is True


def test_print_config_reads_back_for_actions_the_app_does_not_use_yet(tmp_path):
    """Every long option is settable, including ones added later: a count, a list (append) and
    a flag that stores False print as TOML that reads back to the same values."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--config")
    parser.add_argument("--loud", action="count", default=0)
    parser.add_argument("--extra", action="append")
    parser.add_argument("--sizes", nargs="+", type=int)
    parser.add_argument("--no-cache", dest="cache", action="store_false")
    args = parser.parse_args(["--loud", "--loud", "--extra", "a b", "--extra", "c",
                              "--sizes", "3", "4", "--no-cache"])
    text = format_config(parser, args)
    assert tomllib.loads(text) == {"loud": 2, "extra": ["a b", "c"], "sizes": [3, 4],
                                   "no-cache": True}
    path = write_config(tmp_path / "c.toml", text)
    again, _ = parse_with_config(parser, ["--config", str(path)])
    assert {k: v for k, v in vars(again).items() if k != "config"} == {
        "loud": 2, "extra": ["a b", "c"], "sizes": [3, 4], "cache": False}


def test_a_folder_and_a_colour_from_file_and_command_line_are_both_stepped_through(tmp_path):
    folder = tmp_path / "bg"
    folder.mkdir()
    config = write_config(tmp_path / "c.toml", 'background = "#00ff00"\n')
    args, read = parse("--config", config, "--background", folder)
    controls = control_options_from_args(args, read.defaults.get("background"))
    assert args.background == str(folder) and controls.backgrounds == ("#00ff00",)
    args, read = parse("--config", config, "--background", "#ff0000")  # same kind: file loses
    assert control_options_from_args(args, read.defaults.get("background")).backgrounds == ()
    args, read = parse("--config", config)
    assert control_options_from_args(args, read.defaults.get("background")).backgrounds == ()


def test_a_camera_index_may_be_a_number_and_a_folder_is_no_config_file(tmp_path, capsys):
    config = write_config(tmp_path / "c.toml", "source = 1\n")
    assert parse("--config", config)[0].source == "1"
    assert main(["--config", str(tmp_path)]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and "is a folder" in lines[0], lines


def test_an_error_about_a_value_from_the_file_says_it_came_from_the_file(tmp_path, capsys):
    """A background the file names and the run cannot read: the one line says where it was set
    (relative paths are read from the working folder, not the file's); one typed on the command
    line is the user's own, and gets no such note."""
    config = write_config(tmp_path / "c.toml", 'background = "beach.jpg"\nblur = 30\n')
    photo = tmp_path / "me.png"
    cv2.imwrite(str(photo), np.full((64, 48, 3), 128, np.uint8))
    common = ["--config", str(config), "--image", str(photo), "--out", str(tmp_path / "o.png")]
    assert main(common) == 2
    assert capsys.readouterr().err.strip() == (
        "error: cannot read background 'beach.jpg': file not found; use blur, transparent, "
        f"#rrggbb, an image or video file, or a folder of them (background = \"beach.jpg\" comes "
        f"from config file "
        f"'{config}')")
    assert main([*common, "--background", "beach.jpg"]) == 2
    assert "config file" not in capsys.readouterr().err
    assert not (tmp_path / "o.png").exists()


def test_config_origin_names_the_quoted_values_and_the_flags_the_file_set():
    from portrait.config import Config, config_origin

    config = Config(Path("c.toml"), {"background": "sky.png", "model": "mine.hdf5", "blur": 30,
                                     "loop": True, "mirror": False})
    assert config_origin("cannot read 'sky.png'", config, set()) == \
        " (background = \"sky.png\" comes from config file 'c.toml')"
    assert config_origin("cannot read 'sky.png' or 'mine.hdf5'", config, {"model"}) == \
        " (background = \"sky.png\" comes from config file 'c.toml')"
    assert config_origin("cannot read 'sky.png' or 'mine.hdf5'", config, set()) == \
        " (background = \"sky.png\", model = \"mine.hdf5\" come from config file 'c.toml')"
    assert config_origin("blur 30 is too strong", config, set()) == ""  # no number
    # A flag the file set true, named in the message: the user did not type it.
    assert config_origin("--loop never ends; give --no-loop", config, set()) == \
        " (loop = true comes from config file 'c.toml')"
    assert config_origin("--loop never ends", config, {"loop"}) == ""  # typed
    assert config_origin("give --no-loop or --loops", config, set()) == ""  # other flags
    assert config_origin("--mirror is off", config, set()) == ""  # set false: not its doing
    # A quoted name that only holds the value is another file's, not the config file's doing.
    assert config_origin("cannot read 'sky.png.old'", config, set()) == ""
    assert config_origin("cannot read 'sky.png'", Config(), set()) == ""  # no file


@pytest.mark.parametrize("text, argv, expected", [
    ("", ["-v"], (True, False)),
    ("", ["-q"], (False, True)),
    ("quiet = true\n", ["-v"], (True, False)),  # the command line wins over the file
    ("verbose = true\n", ["--quiet"], (False, True)),
    ("verbose = true\n", [], (True, False)),
])
def test_verbose_or_quiet_from_the_command_line_wins_over_the_file(tmp_path, text, argv,
                                                                   expected):
    config = write_config(tmp_path / "c.toml", text)
    args, read = parse("--config", config, *argv)
    assert log_verbosity(args, command_line_options(["--config", str(config), *argv]),
                         read.path) == expected


@pytest.mark.parametrize("verbose, quiet, shown", [
    (False, False, ["INFO", "WARNING"]), (True, False, ["DEBUG", "INFO", "WARNING"]),
    (False, True, ["WARNING"])])
def test_quiet_shows_warnings_only_and_verbose_debug_lines_too(verbose, quiet, shown):
    """What -q and -v do to the app's log, in a process of its own (pytest's log capture
    already configures this one's)."""
    code = ("import logging; from portrait.cli import configure_logging; "
            f"configure_logging(verbose={verbose}, quiet={quiet}); "
            "log = logging.getLogger('portrait'); "
            "log.debug('d'); log.info('i'); log.warning('w')")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert [line.split()[0] for line in done.stderr.splitlines()] == shown, done.stderr

@pytest.mark.parametrize("text, argv, words", [
    ("", ["-q", "-v"], "argument -v/--verbose: not allowed with argument -q/--quiet"),
    ("", ["-vq"], "argument -q/--quiet: not allowed with argument -v/--verbose"),
    ("verbose = true\n", ["-q", "-v"], "argument -v/--verbose: not allowed with argument "
                                       "-q/--quiet"),
    ("verbose = true\nquiet = true\n", [], "sets both verbose = true and quiet = true"),
])
def test_verbose_and_quiet_together_are_refused_in_one_line(tmp_path, capsys, text, argv, words):
    """Not silently verbose: -q -v contradict each other (exit code 2), typed or in the file."""
    config = write_config(tmp_path / "c.toml", text)
    try:
        code = main(["--config", str(config), *argv])
    except SystemExit as stop:  # argparse's refusal
        code = stop.code
    assert code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], lines
