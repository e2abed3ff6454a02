"""The command line describes itself: every command and option has plain-words help, the examples in the help
parse, and ``--help`` works for the program and every command."""

import argparse
import os
import re
import shlex
import subprocess
import sys

import pytest

from sacnn_lab.cli import COMMANDS, build_parser, main, subcommands

#: Options deliberately left out of ``--help`` (help=argparse.SUPPRESS), option string → why. None today.
HIDDEN: dict[str, str] = {}

#: reST / Sphinx markup that must not reach a terminal.
MARKUP = re.compile(r"``|:(func|class|mod|data|meth|attr|exc|obj|ref|doc):")


def _parsers() -> list[tuple[str, argparse.ArgumentParser]]:
    parser = build_parser()
    return [("sacnn-lab", parser), *((f"sacnn-lab {name}", sub) for name, sub in subcommands(parser).items())]


def _described_actions():
    """(where, action) for every action of every parser, -h/--help left out; the subcommand entries too."""
    for where, parser in _parsers():
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            yield where, action
            if isinstance(action, argparse._SubParsersAction):
                yield from ((where, choice) for choice in action._choices_actions)


def _name(action: argparse.Action) -> str:
    return "/".join(action.option_strings) or action.dest


def test_the_commands():
    assert list(subcommands()) == list(COMMANDS)
    assert {"train", "evaluate", "predict", "export", "compare", "gallery", "demo"} <= set(COMMANDS)


@pytest.mark.parametrize("where,action", list(_described_actions()),
                         ids=lambda v: v.replace(" ", "_") if isinstance(v, str) else _name(v))
def test_every_option_has_plain_help(where, action):
    name = _name(action)
    if action.help == argparse.SUPPRESS:
        assert name in HIDDEN, f"{where} {name}: hidden from --help without a reason in HIDDEN"
        return
    assert isinstance(action.help, str) and action.help.strip(), f"{where} {name}: no help"
    assert len(action.help.split()) >= 2, f"{where} {name}: help too terse: {action.help!r}"
    assert not MARKUP.search(action.help), f"{where} {name}: markup in {action.help!r}"


def test_no_hidden_option_is_missing():
    shown = {_name(a) for _, a in _described_actions() if a.help != argparse.SUPPRESS}
    hidden = {_name(a) for _, a in _described_actions() if a.help == argparse.SUPPRESS}
    assert hidden == set(HIDDEN), f"HIDDEN lists {set(HIDDEN) - hidden} that are shown or gone"
    assert shown


def test_a_stated_default_is_shown():
    """An option with a default of its own says what it is; its help expands (no stray %)."""
    for where, parser in _parsers():
        formatter = parser._get_formatter()
        for action in parser._actions:
            if action.help in (None, argparse.SUPPRESS):
                continue
            expanded = formatter._expand_help(action)  # raises on a bad % in a help string
            if action.option_strings and action.default not in (None, False, argparse.SUPPRESS) \
                    and not isinstance(action, argparse._HelpAction):
                assert "default" in action.help and str(action.default) in expanded, \
                    f"{where} {_name(action)}: the default {action.default!r} is not in its help"


def test_descriptions_are_plain_words():
    for where, parser in _parsers():
        assert parser.description and len(parser.description.split()) >= 10, f"{where}: no description"
        text = parser.format_help()
        assert not MARKUP.search(text), f"{where}: markup in --help: {MARKUP.search(text).group()}"
        assert "examples:" in (parser.epilog or ""), f"{where}: no examples"


def test_the_examples_in_the_help_parse():
    """Every ``sacnn-lab ...`` line of an epilog names a real command and real options."""
    seen = 0
    for where, parser in _parsers():
        for line in (parser.epilog or "").splitlines():
            if line.strip().startswith("sacnn-lab "):
                argv = shlex.split(line)[1:]
                args = build_parser().parse_args(argv)
                assert args.command == argv[0]
                if where != "sacnn-lab":
                    assert where == f"sacnn-lab {args.command}", f"{where} shows an example of {args.command}"
                seen += 1
    assert seen >= 2 * len(COMMANDS)


def test_build_parser_checks_a_command_line():
    args = build_parser().parse_args(shlex.split("sacnn-lab train --preset fast --out runs/x")[1:])
    assert (args.command, args.preset, args.out) == ("train", "fast", "runs/x")
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["train", "--out", "runs/x", "--no-such-flag"])
    assert exc.value.code == 2


@pytest.mark.parametrize("name", list(COMMANDS))
def test_command_help(name, capsys):
    with pytest.raises(SystemExit) as exc:
        main([name, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: sacnn-lab {name}")
    for action in subcommands()[name]._actions:
        for option in action.option_strings:
            assert option in out
        if not action.option_strings:  # a positional: shown by its metavar
            assert (action.metavar or action.dest) in out


def test_program_help_in_a_process():
    env = {**os.environ, "COLUMNS": "100"}  # one line per command whatever the terminal
    res = subprocess.run([sys.executable, "-m", "sacnn_lab", "--help"], capture_output=True, text=True,
                         timeout=120, env=env)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("usage: sacnn-lab")
    for name, summary in COMMANDS.items():
        assert name in res.stdout and summary in res.stdout
    assert "examples:" in res.stdout and not MARKUP.search(res.stdout)
