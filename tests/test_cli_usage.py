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


def _subparsers():
    parser = build_parser()
    action = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return action.choices.items()


def _starts_lower(text: str) -> bool:
    first = text.split()[0]
    return not first[0].isupper() or first.isupper() or first[:2].isupper()  # "PESQ", "JSONL", "EMA" allowed


@pytest.mark.parametrize("name, sub", _subparsers(), ids=lambda v: v if isinstance(v, str) else "")
def test_help_texts_share_one_style(name, sub):
    texts = [sub.description] + [a.help for a in sub._actions if a.help and not a.option_strings == ["-h", "--help"]]
    for text in texts:
        assert _starts_lower(text) and not text.rstrip().endswith("."), (name, text)
    for action in sub._actions:
        takes_value = action.nargs != 0 and not isinstance(action.const, bool) and action.option_strings != ["-h", "--help"]
        if takes_value and action.choices is None:
            shown = action.metavar or (action.dest.upper() if action.option_strings else action.dest)
            assert shown == shown.upper(), (name, action.dest, shown)
