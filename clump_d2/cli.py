"""Argument types shared by every command-line tool (``tools/*.py``): one place that says which
numbers an option accepts, so that a negative flux fraction, PSF width or size is refused by
argparse (exit status 2, naming the option and the value) instead of running on nonsense.

    parser.add_argument("--psf-fwhm-px", type=positive_float)
    parser.add_argument("--fractions", nargs="+", type=split_fraction)  # train=0.7 ...
"""
from __future__ import annotations

import argparse
import math
from typing import Callable, Tuple

from clump_d2.data.datasets.builtin import check_split_name


def _number(kind: Callable, test: Callable[[float], bool], what: str) -> Callable[[str], float]:
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            noun = "an integer" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"{text!r} is not {noun}") from None
        if not (math.isfinite(value) and test(value)):
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
        return value

    parse.__name__ = what.replace(" ", "_")  # argparse names the type in some messages
    return parse


#: > 0 (widths, sizes in arcsec or px, flux fractions, learning rates, zoom factors).
positive_float = _number(float, lambda v: v > 0, "a number > 0")
#: >= 0 (radii, thresholds that may be zero, "0 = none" options).
non_negative_float = _number(float, lambda v: v >= 0, "a number >= 0")
#: in [0, 1] (score thresholds, fractions that may be 0 or 1).
unit_float = _number(float, lambda v: 0 <= v <= 1, "a number in [0, 1]")
#: in (0, 1] (a crop or share that cannot be empty).
fraction = _number(float, lambda v: 0 < v <= 1, "a number in (0, 1]")
#: in (0, 1) (a held-out fraction: both parts non-empty).
open_fraction = _number(float, lambda v: 0 < v < 1, "a number in (0, 1)")
#: >= 1 (counts, sizes in px).
positive_int = _number(int, lambda v: v >= 1, "an integer >= 1")
#: >= 0 (counts that may be zero).
non_negative_int = _number(int, lambda v: v >= 0, "an integer >= 0")


def split_fraction(text: str) -> Tuple[str, float]:
    """``"train=0.7"`` -> ``("train", 0.7)``: a plain split name
    (:func:`clump_d2.data.datasets.builtin.check_split_name`) and a fraction in [0, 1]."""
    name, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"{text!r} is not SPLIT=FRACTION")
    try:
        check_split_name(name, f"split {name!r}")
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return name, unit_float(value)
