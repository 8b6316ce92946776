"""Command-line usage: every command line in the README parses, and errors in a sub-command's arguments
print that sub-command's usage."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from simvq_audio.cli import build_parser, main

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_commands() -> list[str]:
    text = README.read_text()
    return sorted({m for m in re.findall(r"`(simvq-audio [a-z][^`]*)`", text)})


@pytest.mark.parametrize("line", readme_commands())
def test_readme_command_lines_parse(line):
    words = shlex.split(re.sub(r"[\[\]]|\.\.\.", "", line))[1:]  # optional parts are used too
    args = build_parser().parse_args(["x" if w.isupper() else w for w in words])  # placeholders: INPUT, OUT
    if args.command == "eval":
        assert args.baseline == ["opus:6k", "codec2:1200", "codec2:3200"]


def test_unknown_argument_prints_the_subcommands_usage(capsys):
    with pytest.raises(SystemExit) as info:
        main(["eval", "ref", "--baseline", "opus:6k", "codec2:1200"])
    err = capsys.readouterr().err
    assert info.value.code == 2
    assert err.startswith("usage: simvq-audio eval ")
    assert "unrecognized arguments: codec2:1200" in err and "repeat the option" in err


def test_unknown_option_of_a_subcommand(capsys):
    with pytest.raises(SystemExit):
        main(["decode", "a.svqt", "-o", "out", "--frobnicate"])
    err = capsys.readouterr().err
    assert err.startswith("usage: simvq-audio decode ") and "unrecognized arguments: --frobnicate" in err
    assert "repeat" not in err
