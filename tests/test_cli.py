"""The argument types shared by the tools (clump_d2/cli.py): which numbers each accepts, and
that the tools' parsers use them (a negative size or width exits with status 2, naming the
option and the value)."""
import argparse

import pytest

from clump_d2.cli import (fraction, non_negative_float, non_negative_int, open_fraction,
                          positive_float, positive_int, split_fraction, unit_float)


def test_each_type_accepts_its_range_and_names_the_value():
    cases = [(positive_float, ["1e-3", "5"], ["0", "-1", "nan", "inf", "x"]),
             (non_negative_float, ["0", "2.5"], ["-0.1", "nan"]),
             (unit_float, ["0", "1", "0.5"], ["1.01", "-0.01"]),
             (fraction, ["1", "0.5"], ["0", "1.5"]),
             (open_fraction, ["0.3"], ["0", "1"]),
             (positive_int, ["1", "7"], ["0", "-3", "2.5"]),
             (non_negative_int, ["0"], ["-1"])]
    for kind, good, bad in cases:
        for text in good:
            assert kind(text) == type(kind(text))(text)
        for text in bad:
            with pytest.raises(argparse.ArgumentTypeError, match=repr(text)):
                kind(text)
    assert split_fraction("train=0.7") == ("train", 0.7)
    for text in ("../../x=1", "a/b=0.5", "x.report=1", "train", "train=2"):
        with pytest.raises(argparse.ArgumentTypeError):
            split_fraction(text)


def test_tool_parsers_refuse_negative_sizes(load_tool, capsys):
    predict = load_tool("predict_catalog").build_parser()
    convert = load_tool("convert_clumpscout").build_parser()
    for parser, argv, what in (
            (predict, ["--input", "x", "--pixel-scale-factor", "-1"], "--pixel-scale-factor"),
            (predict, ["--input", "x", "--num-workers", "0"], "--num-workers"),
            (convert, ["catalog", "--clumps", "c", "--galaxies", "g", "--images", "i", "--out",
                       "o", "--psf-fwhm-arcsec", "-1.4"], "--psf-fwhm-arcsec"),
            (convert, ["consensus", "--table", "t.csv", "--out", "o", "--crop-size", "0x200"],
             "--crop-size"),
            (convert, ["export", "--export", "e.csv", "--out", "o", "--min-volunteer-fraction",
                       "1.5"], "--min-volunteer-fraction")):
        with pytest.raises(SystemExit) as e:
            parser.parse_args(argv)
        assert e.value.code == 2 and f"argument {what}" in capsys.readouterr().err
    # rotation may be any angle
    assert convert.parse_args(["catalog", "--clumps", "c", "--galaxies", "g", "--images", "i",
                               "--out", "o", "--rotation-deg", "-30"]).rotation_deg == -30.0
