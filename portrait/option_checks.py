"""Checks of the option dataclasses' values (:mod:`portrait.options`), made where they are built.

Each field's type comes from its annotation (``bool``, ``int``, ``float``, ``str``, a ``Literal``,
a ``(width, height)`` pair, a ``(low, high)`` pair of numbers, a tuple of strings, any of them
``Optional``) and a number's bounds from the field's :func:`bounded` metadata: a :class:`Range`.
The command line's number types (:mod:`portrait.cli`, :func:`number_field`) check against the
same :class:`Range` objects, so a bound is written once.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
import os
import sys
import types
import typing
from dataclasses import dataclass
from typing import Any, Optional

from portrait.errors import PortraitError


class _OptionError(PortraitError):
    """A field of an option dataclass given a value it does not take: ``owner.field = shown:
    expected expected``; :meth:`named` words it for the command-line flag that set the field."""

    def __init__(self, owner: str, field: str, shown: str, expected: str) -> None:
        super().__init__(f"{owner}.{field} = {shown}: expected {expected}")
        self.owner, self.field, self.shown, self.expected = owner, field, shown, expected

    def named(self, name: str) -> "_OptionError":
        """The same error, worded for the flag (or config key) ``name`` that set the field:
        ``--average-last 1: expected ...``."""
        error = type(self)(self.owner, self.field, self.shown, self.expected)
        error.args = (f"{name} {self.shown}: expected {self.expected}",)
        return error


class OptionValueError(_OptionError, ValueError):
    """An option dataclass built with a value out of its range (or not one of its choices)."""


class OptionTypeError(_OptionError, TypeError):
    """An option dataclass built with a value of the wrong type (text for a number, ...)."""


def _number_text(value: float) -> str:
    return str(value) if isinstance(value, int) else f"{value:g}"  # a seed's 4294967295 in full


@dataclass(frozen=True)
class Range:
    """Where a number may lie: from ``low`` to ``high`` (None: no bound), each end included
    unless ``low_open``/``high_open``, and a multiple of ``step`` where one is given (a side the
    models run at: 32); ``note`` says what a bound means ("1 = never zoom in"). NaN and
    infinities are never in a range."""

    low: Optional[float] = None
    high: Optional[float] = None
    low_open: bool = False
    high_open: bool = False
    note: str = ""
    step: Optional[int] = None

    def holds(self, value: float) -> bool:
        """Whether ``value`` is a finite number within the range (a multiple of its ``step``)."""
        return math.isfinite(value) and self.within(value) and not self.off_step(value)

    def off_step(self, value: float) -> bool:
        """Whether a finite ``value`` is no multiple of ``step`` (never, without one)."""
        return self.step is not None and value % self.step != 0

    def within(self, value: float) -> bool:
        """Whether ``value`` lies between the bounds (an infinity may, past a missing one; NaN
        never does)."""
        if self.low is not None and not (value > self.low if self.low_open else value >= self.low):
            return False
        if self.high is not None and not (value < self.high if self.high_open else value <= self.high):
            return False
        return value == value  # not NaN, where there is no bound to compare it with

    @property
    def says(self) -> str:
        """The range in words, to follow "must be": "from 0 to 1", "greater than 0", ..."""
        low, high = self.low, self.high
        if low is None and high is None:
            words = "a finite number"
        elif high is None:
            words = (f"greater than {_number_text(low)}" if self.low_open
                     else "0 or more" if low == 0 else f"at least {_number_text(low)}")
        elif low is None:
            words = f"below {_number_text(high)}" if self.high_open else f"at most {_number_text(high)}"
        elif not self.low_open and not self.high_open:
            words = f"from {_number_text(low)} to {_number_text(high)}"
        else:
            first = f"greater than {_number_text(low)}" if self.low_open else f"at least {_number_text(low)}"
            second = f"below {_number_text(high)}" if self.high_open else f"at most {_number_text(high)}"
            words = f"{first} and {second}"
        if self.step is not None:
            words = f"a multiple of {self.step}, {words}"
        return f"{words} ({self.note})" if self.note else words


POSITIVE = Range(0, low_open=True)
NON_NEGATIVE = Range(0)
AT_LEAST_ONE = Range(1)
UNIT = Range(0, 1)  # a probability, a strength, a weight or a share
FRACTION = Range(0, 1, high_open=True)  # a share to set aside: 0 <= x < 1
SHARE = Range(0, 1, low_open=True)  # a share of something that must be there: 0 < x <= 1


def bounded(default: Any, bounds: Range) -> Any:
    """A dataclass field with ``default`` whose number (or each side of a pair) lies in
    ``bounds``; a ``(low, high)`` pair of floats also needs ``low <= high``."""
    return dataclasses.field(default=default, metadata={"range": bounds})


@functools.cache
def _hints(cls: type) -> tuple[tuple[str, Any, Optional[Range]], ...]:
    """(name, resolved annotation, range) of each field of ``cls``, worked out once per class."""
    hints = typing.get_type_hints(cls)
    return tuple((field.name, hints[field.name], field.metadata.get("range"))
                 for field in dataclasses.fields(cls))


def number_field(cls: type, name: str) -> tuple[type, Range]:
    """(``int`` or ``float``, its :class:`Range`) of the number field ``name`` of the option
    dataclass ``cls`` (``Optional`` or not; a pair's sides), for a command line to check its
    text against what the field takes.

    Raises:
        KeyError: ``cls`` has no field ``name`` with a range.
    """
    for field, hint, bounds in _hints(cls):
        if field == name and bounds is not None:
            if typing.get_origin(hint) in (typing.Union, types.UnionType):  # Optional[...]
                (hint,) = [arg for arg in typing.get_args(hint) if arg is not type(None)]
            if typing.get_origin(hint) is tuple:  # a pair: each side's
                hint = typing.get_args(hint)[0]
            return (int if hint is int else float), bounds
    raise KeyError(f"{cls.__name__} has no number field {name!r} with a range")


def check_fields(options: Any) -> None:
    """Check every field of the dataclass ``options`` against its annotation and range.

    Raises:
        OptionTypeError: a value of the wrong type, e.g. ``SmoothOptions.min_weight = '0.5'
            (str): expected a number from 0 to 1``.
        OptionValueError: a value out of its range or choices, e.g. ``PipelineOptions.max_reuse
            = -3: expected a whole number, 0 or more``.
    """
    owner = type(options).__name__
    for name, hint, bounds in _hints(type(options)):
        problem = _problem(getattr(options, name), hint, bounds)
        if problem is not None:
            error, expected = problem
            value = getattr(options, name)
            shown = repr(value) if error is OptionValueError else f"{value!r} ({type(value).__name__})"
            raise error(owner, name, shown, expected)


def field_error(options: Any, name: str, expected: str) -> OptionValueError:
    """The error for the field ``name`` of ``options`` whose value another field rules out, in
    :func:`check_fields`' words: ``TrainOptions.average_last = 1: expected 0 (off) or ...``."""
    return OptionValueError(type(options).__name__, name, repr(getattr(options, name)), expected)


class CheckedOptions:
    """A base for an option dataclass: building one (``dataclasses.replace`` too) runs
    :func:`check_fields`, after taking a NumPy scalar (``np.bool_``, ``np.int64``,
    ``np.float32``, ...) as the Python value it holds and a path as its ``str``, then
    :meth:`check_together`. A few microseconds; options are built per run or per key press, never
    per frame."""

    def __post_init__(self) -> None:
        for name, hint, _ in _hints(type(self)):
            value = getattr(self, name)
            taken = _as_taken(value, hint)
            if taken is not value:
                object.__setattr__(self, name, taken)  # the dataclasses are frozen
        check_fields(self)
        self.check_together()

    def check_together(self) -> None:
        """What one field asks of another, checked once each field passed its own check: a
        class that has such a rule overrides this and raises :func:`field_error`."""


def _plain(value: Any) -> Any:
    """A NumPy scalar (``np.bool_``, an integer, a float, a string: what indexing an array
    gives) as the Python value it holds; anything else as it is."""
    numpy = sys.modules.get("numpy")  # not imported: nothing can be one of its scalars
    if numpy is not None and isinstance(value, numpy.generic) and value.dtype.kind in "biufU":
        return value.item()
    return value


_PAIRS = (tuple[int, int], tuple[float, float])
_PAIRS_ARGS = tuple(typing.get_args(pair) for pair in _PAIRS)  # ((int, int), (float, float))


def _as_taken(value: Any, hint: Any) -> Any:
    """``value`` as the options keep it, to be checked against ``hint``: a NumPy scalar as the
    Python ``bool``, ``int``, ``float`` or ``str`` it holds (so ``np.bool_(True)`` is a flag and
    ``train.json`` can be written), and so each side of a pair; a pair given as a list as a
    tuple (so the options stay hashable and equal to those built with a tuple); a path
    (``pathlib.Path``, any ``os.PathLike``) as its ``str`` where ``hint`` takes a string or a
    tuple of strings (a list given for the tuple as a tuple, so the options stay hashable)."""
    value = _plain(value)
    takes = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    if str in takes and isinstance(value, os.PathLike):
        return os.fspath(value)
    if tuple[str, ...] in takes and isinstance(value, (tuple, list)) and (
            isinstance(value, list) or any(isinstance(item, os.PathLike) for item in value)):
        return tuple(os.fspath(item) if isinstance(item, os.PathLike) else item for item in value)
    if any(pair in takes for pair in _PAIRS) and isinstance(value, (tuple, list)):
        sides = tuple(_plain(side) for side in value)
        if isinstance(value, list) or any(side is not given for side, given in zip(sides, value)):
            return sides
    return value


def _problem(value: Any, hint: Any, bounds: Optional[Range]) -> Optional[tuple[type, str]]:
    """None when ``value`` fits ``hint`` and ``bounds``, else (the error class, what was
    expected)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType) and type(None) in args:
        if value is None:
            return None
        (inner,) = [arg for arg in args if arg is not type(None)]
        problem = _problem(value, inner, bounds)
        return None if problem is None else (problem[0], f"None or {problem[1]}")
    if origin is typing.Literal:  # of its choice's type: 16.0 is no choice of Literal[16, 32]
        if any(type(value) is type(choice) and value == choice for choice in args):
            return None
        error = OptionTypeError if value in args else OptionValueError
        return error, "one of " + ", ".join(repr(choice) for choice in args)
    if hint is bool:
        return None if isinstance(value, bool) else (OptionTypeError, "True or False")
    if hint is int or hint is float:
        return _number_problem(value, hint is int, bounds)
    if hint is str:
        if not isinstance(value, str):
            return OptionTypeError, "a string or a path"
        return None if value.strip() else (OptionValueError, "a string that is not empty")
    if origin is tuple and args in _PAIRS_ARGS:  # a size (width, height), or a (low, high)
        whole = args == (int, int)
        expected = (("(width, height), two " if whole else "(low, high) with low <= high, two ")
                    + _number_words(whole, bounds))
        if not isinstance(value, (tuple, list)) or len(value) != 2:
            return OptionTypeError, expected
        problems = [_number_problem(side, whole, bounds) for side in value]
        wrong = [problem for problem in problems if problem is not None]
        if wrong:
            return wrong[0][0], expected
        return None if whole or value[0] <= value[1] else (OptionValueError, expected)
    if origin is tuple and args == (str, Ellipsis):
        expected = "a tuple of strings that are not empty"
        if not isinstance(value, tuple) or not all(isinstance(item, str) for item in value):
            return OptionTypeError, expected
        return None if all(item.strip() for item in value) else (OptionValueError, expected)
    raise NotImplementedError(f"no check for a field of type {hint}")  # a new field's type


def _number_words(whole: bool, bounds: Optional[Range]) -> str:
    kind = "whole numbers" if whole else "numbers"
    return f"{kind}, each {bounds.says}" if bounds else kind


def _number_problem(value: Any, whole: bool, bounds: Optional[Range]) -> Optional[tuple[type, str]]:
    """A number field's problem: not an ``int`` (``whole``) or a real number (True is not one),
    or out of ``bounds``; bounds or none, never NaN or an infinity."""
    kind = numbers.Integral if whole else numbers.Real
    expected = ("a whole number" if whole else "a number") + (f", {bounds.says}" if bounds else "")
    if isinstance(value, bool) or not isinstance(value, kind):
        return OptionTypeError, expected
    if not (bounds or Range()).holds(value):
        return OptionValueError, expected
    return None
