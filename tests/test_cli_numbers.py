"""Every numeric option of every command has a range (cli.OPTION_BOUNDS), and a value out of it, not finite,
or beyond 64 bits is refused in one line with exit 2 before the command runs."""

from __future__ import annotations

import argparse

import pytest

from genieworld.cli import OPTION_BOUNDS, build_parser, check_numbers, main


def _numeric_options():
    out = []

    def walk(parser, prefix):
        for a in parser._actions:
            if isinstance(a, argparse._SubParsersAction):
                for name, sp in a.choices.items():
                    walk(sp, prefix + [name])
            elif a.option_strings and a.nargs != 0 and (a.type in (int, float) or getattr(a.type, "__name__", "")
                                                        in ("_positive", "_nonneg")):
                out.append((tuple(prefix), a.dest, a.option_strings[-1]))
    walk(build_parser(), [])
    return out


def test_every_numeric_option_has_a_range():
    opts = _numeric_options()
    assert len(opts) > 60
    missing = sorted({d for _, d, _ in opts if d not in OPTION_BOUNDS})
    assert not missing, f"numeric options without a range in cli.OPTION_BOUNDS: {missing}"


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -1, 2**64, -(2**70)])
def test_out_of_range_values_are_caught_for_every_option(value):
    tried = 0
    for _, dest, _ in _numeric_options():
        lo, _ = OPTION_BOUNDS[dest]
        if value == -1 and lo is not None and lo < 0:
            continue
        msg = check_numbers(argparse.Namespace(**{dest: value}))
        assert msg is not None and "--" + dest.replace("_", "-") in msg, (dest, value, msg)
        tried += 1
    assert tried > 50


@pytest.mark.parametrize("argv", [
    ["train", "dynamics", "--data", "d", "--out", "o", "--tokenizer", "t", "--lr", "nan"],
    ["train", "tokenizer", "--data", "d", "--out", "o", "--seed", "18446744073709551616"],
    ["train", "tokenizer", "--data", "d", "--out", "o", "--num-workers", "-1"],
    ["train", "tokenizer", "--data", "d", "--out", "o", "--grad-accum", "0"],
    ["train", "tokenizer", "--data", "d", "--out", "o", "--stop-after", "-1"],
    ["data", "coinrun", "d", "--start-level", "99999999999999"],
    ["play", "m", "--idle-timeout", "nan"],
])
def test_whole_commands_refuse_bad_numbers_before_running(argv, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("genie: error: --") and err.count("\n") == 1, err
    assert not any(tmp_path.iterdir())  # nothing was created


def test_frame_skip_zero_and_huge_levels_are_refused(capsys):
    assert main(["recipe", "coinrun", "--out", "x", "--frame-skip", "0"]) == 2
    assert "--frame-skip" in capsys.readouterr().err
    assert main(["data", "coinrun", "d", "--start-level", "2147483000", "--levels", "1000"]) == 2
    assert "last level seed" in capsys.readouterr().err
