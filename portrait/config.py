"""The config file: defaults for the command line's long options, in TOML.

``$XDG_CONFIG_HOME/portrait/config.toml`` (``~/.config/portrait/config.toml``) when it exists,
or the file ``--config PATH`` names. Its keys are the long option names without ``--``
(``background = "#00ff00"``, ``blur = 30``, ``mirror = true``; ``max_frames`` may be written for
``max-frames``). The keys and the checks of their values come from the argparse parser itself
(each option's action, ``type`` and ``choices``), so every long option, including ones added
later, is settable without a second list. The command line wins over the file: the file's values
become the parser's defaults.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from portrait.errors import PortraitError

# Options that make no sense in the file that they would point to, or at all there.
NOT_SETTABLE = frozenset({"help", "config", "print-config"})


class ConfigError(PortraitError):
    """A config file that cannot be used: unreadable, not TOML, an unknown key or a bad value."""

    exit_code = 2


@dataclass(frozen=True)
class Config:
    """A config file as read: where from (None: no file) and its values by argparse ``dest``."""

    path: Optional[Path] = None
    defaults: dict[str, Any] = field(default_factory=dict)


def default_config_path() -> Path:
    """``$XDG_CONFIG_HOME/portrait/config.toml``, or ``~/.config/portrait/config.toml``."""
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "portrait" / "config.toml"


def settable_options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """Every key a config file may set, mapped to its argparse action: each long option's name
    without ``--``, except those in :data:`NOT_SETTABLE`."""
    keys: dict[str, argparse.Action] = {}
    for action in parser._actions:
        for option in action.option_strings:
            if option.startswith("--") and option[2:] not in NOT_SETTABLE:
                keys[option[2:]] = action
    return keys


def _toml(value: Any) -> str:
    """A value as TOML (strings as JSON strings, which TOML reads alike); sizes as ``WxH``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, tuple) and all(isinstance(v, (int, float)) for v in value):
        return json.dumps("x".join(str(v) for v in value))  # --input-size's WxH form
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(str(value))


def _allowed(action: argparse.Action) -> str:
    """What an option's value may be, for an error message."""
    if isinstance(action, argparse.BooleanOptionalAction) or (
            action.nargs == 0 and not isinstance(action, argparse._CountAction)):
        return "true or false"
    if action.choices is not None:
        return "one of " + ", ".join(f'"{c}"' if isinstance(c, str) else str(c)
                                     for c in action.choices)
    what = action.metavar or (action.type.__name__ if callable(action.type) else "text")
    if action.type is None or getattr(action.type, "quoted", False):
        what = f"a string ({what})"
    help_text = re.sub(r"\s*\(default: [^)]*\)", "", action.help or "").strip()
    return f"{what}, {help_text}" if help_text else str(what)


class _BadValue(Exception):
    pass


def _convert_one(parser: argparse.ArgumentParser, action: argparse.Action, value: Any) -> Any:
    """One TOML value through the option's own ``type`` and ``choices``, as argparse would."""
    type_func = parser._registry_get("type", action.type, action.type)
    if isinstance(value, bool):
        raise _BadValue("true/false is not a value of this option")
    if not isinstance(value, (str, int, float)):
        kind = "a list" if isinstance(value, list) else "a table" if isinstance(value, dict) else (
            f"a {type(value).__name__}")
        raise _BadValue(f"{kind} is not allowed here")
    if (action.type is None or getattr(action.type, "quoted", False)) and not isinstance(value, str):
        raise _BadValue("expected a string in quotes")
    if isinstance(value, float) and getattr(action.type, "refuse_float", None):
        raise _BadValue(action.type.refuse_float)
    text = str(value)
    if any(ord(char) < 32 or ord(char) == 127 for char in text):
        # A Windows path in double quotes: "C:\backgrounds\beach.jpg" is read as C:, a
        # backspace, "ackgrounds" and another backspace, and named a file that is not there.
        raise _BadValue("it holds a control character, which a backslash in double quotes "
                        "makes (\\b, \\t, \\n, \\f, \\r); write a Windows path in single quotes, "
                        "where a backslash is a backslash: 'C:\\backgrounds\\beach.jpg'")
    if text.startswith("~"):
        text = os.path.expanduser(text)  # the file can't rely on a shell to expand it
    if callable(type_func):
        try:
            converted = type_func(text)
        except argparse.ArgumentTypeError as error:
            raise _BadValue(str(error)) from None
        except (TypeError, ValueError):
            name = getattr(type_func, "__name__", "value")
            raise _BadValue(f"'{text}' is not a valid {name}") from None
    else:
        converted = text
    if action.choices is not None and converted not in action.choices:
        raise _BadValue(f"'{converted}' is not a choice")
    return converted


def _convert(parser: argparse.ArgumentParser, key: str, action: argparse.Action, value: Any) -> Any:
    """A TOML value as the parsed value of ``action`` (what argparse would store in ``dest``)."""
    if isinstance(action, argparse._CountAction):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise _BadValue("expected a count, 0 or more")
        return value
    if isinstance(action, argparse.BooleanOptionalAction) or action.nargs == 0:
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            raise _BadValue(f"{json.dumps(value)} is a string, not true or false: write "
                            f"{value.strip().lower()} without quotes")
        if not isinstance(value, bool):
            raise _BadValue(f"{json.dumps(value) if isinstance(value, str) else value} is not "
                            "true or false")
        if isinstance(action, argparse.BooleanOptionalAction):
            return value != key.startswith("no-")
        return action.const if value else action.default
    if action.nargs == "?" and isinstance(value, bool):  # --flag [VALUE]: true is the bare flag
        # false is the option's "off" where it has one (tta = false: one pass), else its default
        return action.const if value else ("off" if "off" in (action.choices or ()) else action.default)
    many = (isinstance(action, argparse._AppendAction)
            or action.nargs in ("*", "+") or isinstance(action.nargs, int))
    if many:
        items = value if isinstance(value, list) else [value]
        return [_convert_one(parser, action, item) for item in items]
    return _convert_one(parser, action, value)


def _quoted_line(text: str, error: tomllib.TOMLDecodeError) -> str:
    """``: line 2 says mirror = True``, the line that ``error`` names (its message says "at
    line N") as written, or nothing where it names none."""
    match = re.search(r"at line (\d+)", str(error))
    lines = text.splitlines()
    if match is None or not 1 <= int(match.group(1)) <= len(lines):
        return ""
    number = int(match.group(1))
    return f": line {number} says {lines[number - 1].strip()}"


def read_config(parser: argparse.ArgumentParser, explicit: Optional[str] = None) -> Config:
    """Read the config file ``explicit`` (``--config``), else the default one if it exists.

    Returns:
        The file's values by argparse ``dest``, converted and checked as the command line's are.

    Raises:
        ConfigError: a missing ``--config`` file, unreadable or invalid TOML, an unknown key or
            a bad value; the one-line message names the key, the file and what is allowed.
    """
    path = Path(os.path.expanduser(explicit)) if explicit else default_config_path()
    if not path.is_file():
        if explicit and path.is_dir():
            raise ConfigError(f"config file '{path}' is a folder; give the TOML file's path to "
                              "--config")
        if explicit:
            raise ConfigError(f"config file '{path}' not found; check the path given to --config")
        return Config()
    text = ""
    try:
        # TOML is UTF-8; a byte-order mark (Windows Notepad) is dropped rather than refused.
        text = path.read_bytes().decode("utf-8-sig")
        table = tomllib.loads(text)
    except UnicodeDecodeError as error:
        raise ConfigError(f"config file '{path}' is not UTF-8 text (byte {error.object[error.start]:#04x} "
                          f"at position {error.start}); save it as UTF-8") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"config file '{path}' is not valid TOML ({error}){_quoted_line(text, error)}"
                          "; write one option a line, text in quotes, true and false in lower "
                          "case, a Windows path in single quotes: blur = 30, background = "
                          "\"beach.jpg\", mirror = true, background = 'C:\\Users\\me\\beach.jpg'"
                          ) from None
    except OSError as error:
        raise ConfigError(f"cannot read config file '{path}' ({error.strerror})") from None
    options = settable_options(parser)
    defaults: dict[str, Any] = {}
    keys_of: dict[str, str] = {}  # dest -> the key that set it
    for key, value in table.items():
        action = options.get(key) or options.get(key.replace("_", "-"))
        if action is None and isinstance(value, dict):
            raise ConfigError(f"config file '{path}' has a section [{key}], which it does not "
                              "take: its keys stand at the top level, one a line (blur = 30); "
                              f"remove the line [{key}]")
        if action is None:
            close = difflib.get_close_matches(key.replace("_", "-"), options, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise ConfigError(f"unknown key '{key}' in config file '{path}'; {hint}allowed: "
                              f"{', '.join(sorted(options))}")
        if action.dest in keys_of:  # max_frames and max-frames, or mirror and no-mirror
            raise ConfigError(f"config file '{path}' sets one option twice, as "
                              f"'{keys_of[action.dest]}' and as '{key}'; keep one")
        keys_of[action.dest] = key
        try:
            defaults[action.dest] = _convert(parser, key.replace("_", "-"), action, value)
        except _BadValue as error:
            shown = _toml(value) if not isinstance(value, dict) else "{...}"
            raise ConfigError(f"bad value for '{key}' in config file '{path}': {key} = {shown}: "
                              f"{error}; allowed: {_allowed(action)}") from None
    return Config(path, defaults)


def config_origin(message: str, config: Config, typed: set[str]) -> str:
    """What to add to an error ``message`` that quotes a value the config file set (and the
    command line did not, ``typed`` being the dests typed there), or names a flag it set true
    (``--loop`` for ``loop = true``): ' (KEY = "VALUE" comes from config file 'PATH')', so the
    user knows where to change it; else ''."""
    if config.path is None:
        return ""
    notes = [f'{dest.replace("_", "-")} = {json.dumps(value)}'
             for dest, value in config.defaults.items()
             if dest not in typed and _names(message, dest, value)]
    if not notes:
        return ""
    return f" ({', '.join(notes)} {'comes' if len(notes) == 1 else 'come'} from config file " \
           f"'{config.path}')"


def _names(message: str, dest: str, value: Any) -> bool:
    """Whether ``message`` quotes ``value``, a string (``'beach.jpg'``), or names the flag of
    ``dest`` that ``value`` True set (``--loop``, not ``--no-loop``)."""
    if isinstance(value, str):
        return bool(value.strip()) and f"'{value}'" in message
    flag = "--" + dest.replace("_", "-")
    return value is True and re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", message) is not None


def format_config(parser: argparse.ArgumentParser, args: argparse.Namespace,
                  config: Config = Config()) -> str:
    """The effective settings as TOML that :func:`read_config` reads back: every settable option
    under its first long name; options without a value as comments."""
    source = (f"the config file {config.path}, then the command line" if config.path
              else "the command line (no config file)")
    lines = [f"# portrait settings: the defaults, {source}"]
    seen: set[int] = set()
    for key, action in settable_options(parser).items():
        if id(action) in seen:
            continue  # an option's other names (--no-x of --x)
        seen.add(id(action))
        value = getattr(args, action.dest, None)
        if isinstance(action, argparse.BooleanOptionalAction):
            if value is None:  # on or off by the run (--realtime: by the output)
                lines.append(f"# {key} = (not set)")
            else:
                lines.append(f"{key} = {_toml(bool(value))}")
        elif isinstance(action, argparse._CountAction):
            lines.append(f"{key} = {value or 0}")
        elif action.nargs == 0:
            lines.append(f"{key} = {_toml(value == action.const)}")
        elif value is None:
            lines.append(f"# {key} = (not set)")
        else:
            lines.append(f"{key} = {_toml(value)}")
    return "\n".join(lines) + "\n"


def parse_with_config(parser: argparse.ArgumentParser,
                      argv: Sequence[str]) -> tuple[argparse.Namespace, Config]:
    """Parse ``argv`` over the config file's values (``--config`` in ``argv``, else the default
    file): the command line wins.

    The parser needs a ``--config`` option; its own parse finds it, so abbreviations work as
    for any option.

    Raises:
        ConfigError: see :func:`read_config`.
        SystemExit: a command-line usage error (argparse's).
    """
    first = parser.parse_args(argv)
    config = read_config(parser, getattr(first, "config", None))
    if not config.defaults:
        return first, config
    parser.set_defaults(**config.defaults)
    return parser.parse_args(argv), config
