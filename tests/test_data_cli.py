"""`genie data ...` argument parsing and help."""

from __future__ import annotations

import json

import pytest

from genieworld.cli import build_parser, main


@pytest.mark.parametrize("sub,needle", [("info", "--verify"), ("coinrun", "--steps-per-level"),
                                        ("atari", "--steps-per-episode"), ("ingest", "--min-frames")])
def test_help(capsys, sub, needle):
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(["data", sub, "--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    assert needle in text and "example" in text


def test_data_without_subcommand_prints_help(capsys):
    assert main(["data"]) == 2
    assert "coinrun" in capsys.readouterr().out


def test_coinrun_cli(tmp_path, capsys):
    rc = main(["data", "coinrun", str(tmp_path / "c"), "--levels", "1", "--steps-per-level", "20",
               "--mode", "easy", "--no-progress"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["levels_done"] == 1 and out["store_frames"] >= 20
    assert main(["data", "info", str(tmp_path / "c"), "--verify"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["levels"] == {"count": 1, "min": 0, "max": 0} and info["verify"]["ok"]


def test_a_reader_that_leaves_early_ends_the_command_quietly():
    """`genie data info STORE | head`: the closed pipe is not reported as a bug (exit 141, as Unix tools)."""
    import subprocess
    import sys

    code = ("import argparse, sys\nimport genieworld.cli as cli\n"
            "def lots(args):\n    for _ in range(200000):\n        print('x' * 80)\n"
            "p = argparse.ArgumentParser(); p.set_defaults(func=lots)\n"
            "cli.build_parser = lambda: p\nsys.exit(cli.main([]))\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout.read(100) == b"x" * 80 + b"\n" + b"x" * 19
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == 141
    assert err == b""
