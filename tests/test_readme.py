"""The README says what runs, and stays short.

Every command line of the README's (and docs/*.md's) ``bash`` blocks that calls this project is checked
against the real parsers, without running anything: ``sacnn-lab`` / ``python -m sacnn_lab`` (also after
``torchrun ... -m sacnn_lab``) and ``python -m data_gen`` must name a subcommand that exists and only its
options, with values the parser accepts; ``torchrun``'s own options are torchrun's; ``python benchmarks/X.py``
and ``python notebooks/execute.py`` must exist and take the flags given (the cheap ones, a gallery and a small
data set, run in a fresh folder); ``pip install -e ".[extra]"`` names
extras of pyproject.toml. Then: the README is at most 210 lines, shows every subcommand, has exactly two
set-up commands (the ``bash`` blocks under "## Set up"), which install what ``.ci/run`` installs and run its
test command; every figure it quotes is in docs/results.md; its layout names every module; and the relative
links of README.md and docs/*.md (their #anchors included) resolve, with every picture in docs/ shown by some
Markdown file.
"""

from __future__ import annotations

import argparse
import ast
import re
import shlex
import unicodedata
from pathlib import Path

import pytest

from data_gen.__main__ import build_parser as data_gen_parser
from data_gen.__main__ import main as data_gen_main
from sacnn_lab.cli import build_parser as sacnn_parser
from sacnn_lab.cli import main as sacnn_main

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
MAX_LINES = 210
SEPARATORS = {"&&", "||", ";", "|"}


def bash_blocks(text: str) -> list[str]:
    """The contents of the fenced ```bash blocks of a Markdown text."""
    return re.findall(r"^```bash\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)


def commands(block: str) -> list[list[str]]:
    """Each simple command of a bash block as its words: continuation lines joined, comments dropped, split at
    ``&&``, ``||``, ``;`` and ``|``."""
    found = []
    for line in block.replace("\\\n", " ").splitlines():
        words: list[str] = []
        for word in shlex.split(line, comments=True):
            if word in SEPARATORS:
                found.append(words)
                words = []
            else:
                words.append(word)
        found.append(words)
    return [c for c in found if c]


def all_commands(path: Path) -> list[list[str]]:
    return [c for block in bash_blocks(path.read_text(encoding="utf-8")) for c in commands(block)]


def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    return next(a.choices for a in parser._actions if isinstance(a, argparse._SubParsersAction))


def flags(words: list[str]) -> list[str]:
    return [w.split("=", 1)[0] for w in words if w.startswith("-") and w != "-" and not re.match(r"-\d", w)]


def check_against(parser: argparse.ArgumentParser, args: list[str], line: str) -> None:
    """``args`` (after the program's name) name a subcommand of ``parser`` and only its options, and parse."""
    subs = subparsers(parser)
    assert args and args[0] in subs, f"{line!r}: {parser.prog} has no subcommand {args[:1]} (it has {sorted(subs)})"
    options = {o for a in subs[args[0]]._actions for o in a.option_strings}
    unknown = [f for f in flags(args[1:]) if f not in options]
    assert not unknown, f"{line!r}: {parser.prog} {args[0]} has no option {unknown}"
    try:
        parser.parse_args(args)
    except SystemExit as e:  # a value the parser refuses (a choice, a type, a missing required option)
        pytest.fail(f"{line!r}: {parser.prog} refuses it (exit status {e.code})")


def script_options(path: Path) -> set[str]:
    """The option strings a script's argparse calls declare (read from its source: nothing is imported)."""
    options = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "add_argument":
            options |= {a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)
                        and a.value.startswith("-")}
    return options | {"-h", "--help"}


def torchrun_parser() -> argparse.ArgumentParser:
    run = pytest.importorskip("torch.distributed.run")
    return run.get_args_parser()


def extras() -> set[str]:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11 on
    return set(tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
               ["optional-dependencies"])


def check_command(words: list[str]) -> None:
    line = shlex.join(words)
    if words[0] == "sacnn-lab":
        check_against(sacnn_parser(), words[1:], line)
    elif words[:3] == ["python", "-m", "sacnn_lab"]:
        check_against(sacnn_parser(), words[3:], line)
    elif words[:3] == ["python", "-m", "data_gen"]:
        check_against(data_gen_parser(), words[3:], line)
    elif words[0] == "torchrun":
        assert "-m" in words, f"{line!r}: torchrun without -m"
        at = words.index("-m")
        try:
            torchrun_parser().parse_args(words[1:])
        except SystemExit as e:
            pytest.fail(f"{line!r}: torchrun refuses its options (exit status {e.code})")
        assert words[at + 1] == "sacnn_lab", f"{line!r}: torchrun runs {words[at + 1]}, not sacnn_lab"
        check_against(sacnn_parser(), words[at + 2:], line)
    elif words[0] in ("python", "python3", "bash") and len(words) > 1 and "/" in words[1]:
        script = ROOT / words[1]
        assert script.is_file(), f"{line!r}: there is no {words[1]}"
        if script.suffix == ".py":
            unknown = [f for f in flags(words[2:]) if f not in script_options(script)]
            assert not unknown, f"{line!r}: {words[1]} has no option {unknown}"
    elif words[:2] == ["pip", "install"] and "-e" in words:
        target = words[words.index("-e") + 1]
        named = re.fullmatch(r"\.(?:\[([\w,-]+)\])?", target)
        assert named, f"{line!r}: installs {target}, not this project"
        missing = set((named.group(1) or "").split(",")) - extras() - {""}
        assert not missing, f"{line!r}: pyproject.toml has no extra {sorted(missing)}"
    elif words[:2] == ["jupyter", "lab"]:
        assert all((ROOT / w).exists() for w in words[2:] if not w.startswith("-")), line


README_COMMANDS = all_commands(README)
DOCS_COMMANDS = [c for doc in DOCS for c in all_commands(doc)]


@pytest.mark.parametrize("words", README_COMMANDS + DOCS_COMMANDS, ids=lambda w: shlex.join(w)[:80])
def test_command_is_real(words):
    check_command(words)


def test_cheap_commands_run(tmp_path, monkeypatch):
    """The README's commands that take seconds run as written, in a fresh folder."""
    monkeypatch.chdir(tmp_path)
    ran = []
    for words in README_COMMANDS:
        if words[:2] == ["sacnn-lab", "gallery"]:
            assert sacnn_main(words[1:]) == 0
            assert Path(words[words.index("--out") + 1]).is_file()
        elif words[:4] == ["python", "-m", "data_gen", "characters"] and int(words[words.index("--n") + 1]) <= 100:
            assert data_gen_main(words[3:] + ["--quiet"]) == 0
            assert (Path(words[words.index("--out") + 1]) / "labels.csv").is_file()
        else:
            continue
        ran.append(shlex.join(words))
    assert len(ran) >= 2, f"the README's cheap commands were not found (ran {ran})"


def test_commands_were_found():
    # the checks above see the README's commands: every kind of line they know is there
    firsts = {c[0] for c in README_COMMANDS}
    assert {"sacnn-lab", "torchrun", "python", "pip"} <= firsts
    assert any(c[:2] == ["python", "notebooks/execute.py"] for c in README_COMMANDS)
    assert any(c[:2] == ["python", "-m"] and c[2] == "data_gen" for c in README_COMMANDS)
    assert any(c[1].startswith("benchmarks/") for c in README_COMMANDS if c[0] == "python" and len(c) > 1)


def test_readme_is_short():
    lines = README.read_text(encoding="utf-8").count("\n") + 1
    assert lines <= MAX_LINES, f"README.md has {lines} lines: at most {MAX_LINES} (move the detail into docs/)"


def test_readme_shows_every_subcommand():
    shown = {c[1] for c in README_COMMANDS if c[0] == "sacnn-lab" and len(c) > 1}
    missing = sorted(set(subparsers(sacnn_parser())) - shown)
    assert not missing, f"README.md shows no `sacnn-lab {missing}` command"


def section(text: str, heading: str) -> str:
    """The text under a ``## heading`` up to the next one."""
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", text, flags=re.MULTILINE | re.DOTALL)
    assert match, f"README.md has no section '## {heading}'"
    return match.group(1)


def test_two_setup_commands_match_ci():
    text = README.read_text(encoding="utf-8")
    setup = bash_blocks(section(text, "Set up"))
    assert len(setup) == 2, f"'## Set up' holds {len(setup)} bash blocks: exactly two set-up commands"
    assert all(len(block.strip().splitlines()) == 1 for block in setup), "a set-up command is one line"
    # no other block of the README makes a fresh environment
    assert sum("python3 -m venv" in block for block in bash_blocks(text)) == 2
    main_job, tests = (block.strip() for block in setup)
    assert main_job.startswith("python3 -m venv") and main_job.endswith("sacnn-lab demo")
    assert 'pip install -e ".[lab]"' in main_job
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    pins = re.search(r"pip install (?:-q )?(torch==\S+ torchvision==\S+)", ci).group(1)
    ci_install = re.search(r"pip install (?:-q )?(-e \S+)", ci).group(1)
    ci_test = [line for line in ci.splitlines() if line.strip() and not line.startswith("#")][-1].strip()
    assert ci_test == "python -m pytest -q"
    for block in (main_job, tests):
        assert f"pip install {pins}" in block, f"the set-up commands install {pins}, as .ci/run does"
    assert f"pip install {ci_install}" in tests and tests.endswith(ci_test), \
        f"the test command installs {ci_install} and runs {ci_test!r}, as .ci/run does"


def test_readme_says_how_long_the_tests_take_and_which_torch():
    setup = section(README.read_text(encoding="utf-8"), "Set up")
    assert re.search(r"\d+(–\d+)? minutes", setup)
    assert "--index-url https://download.pytorch.org/whl/cpu" in setup


def test_gpu_section():
    gpu = section(README.read_text(encoding="utf-8"), "Several GPUs or machines")
    assert "torchrun --nnodes" in gpu and "--rdzv_endpoint" in gpu
    assert "rank 0" in gpu and "samples/s" in gpu


# a figure: 1,760 or 98.40, or a whole number with its unit (49 s, 455 tests)
FIGURE = re.compile(r"(?<![\w.,])\d{1,3}(?:,\d{3})+(?:\.\d+)?|(?<![\w.,])\d+\.\d+"
                    r"|(?<![\w.,])\d+(?=\s?(?:%|s\b|ms\b|min\b|minutes\b|tests\b|epochs\b|px\b|images\b|faces\b))")
# numbers of the README that are no measurement: the paper's citation, Python's version, a lecture's length
NOT_FIGURES = {"2020", "28", "6", "144", "3.11", "90"}


def prose(text: str) -> str:
    """A Markdown text without its code blocks, inline code and link targets."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.MULTILINE | re.DOTALL)
    text = re.sub(r"`[^`]*`", "", text)
    return re.sub(r"\]\([^)]*\)", "]", text)


def test_every_figure_of_the_readme_is_in_results():
    results = set(FIGURE.findall((ROOT / "docs" / "results.md").read_text(encoding="utf-8")))
    quoted = set(FIGURE.findall(prose(README.read_text(encoding="utf-8")))) - NOT_FIGURES
    missing = sorted(quoted - results)
    assert not missing, f"README.md quotes {missing}, which docs/results.md does not hold with its command"


def test_dependencies_are_explained():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11 on
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    deps = project["dependencies"] + [d for extra in project["optional-dependencies"].values() for d in extra]
    names = {re.match(r"[A-Za-z0-9_.-]+", d).group(0).lower() for d in deps}
    table = section(README.read_text(encoding="utf-8"), "Dependencies, and why each is here").lower()
    missing = sorted(n for n in names if not re.search(rf"(?<![\w-]){re.escape(n)}(?![\w-])", table))
    assert not missing, f"the README's dependencies do not say why {missing} are here"
    for extra in project["optional-dependencies"]:
        assert f"extra `{extra}`" in table, f"the README's dependencies do not name the extra {extra!r}"


def test_layout_names_every_module():
    layout = section(README.read_text(encoding="utf-8"), "Layout")
    modules = [p for folder in ("sacnn_lab", "data_gen") for p in sorted((ROOT / folder).glob("*.py"))
               if p.name != "__init__.py"]
    missing = [str(p.relative_to(ROOT)) for p in modules if p.name not in layout]
    assert not missing, f"the README's layout does not name {missing}"
    named = set(re.findall(r"\b(\w+\.py)\b", layout))
    known = {p.name for folder in ("sacnn_lab", "data_gen", "benchmarks", "notebooks")
             for p in (ROOT / folder).glob("*.py")}
    assert named <= known, f"the README's layout names files that do not exist: {sorted(named - known)}"
    for folder in ("sacnn_lab/", "data_gen/", "benchmarks/", "notebooks/", "docs/", "tests/"):
        assert re.search(rf"^{re.escape(folder)}", layout, flags=re.MULTILINE), f"the layout has no line for {folder}"


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces as hyphens."""
    heading = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip()).lower()
    kept = "".join(c for c in heading if c in " -_" or unicodedata.category(c)[0] in "LMN")
    return kept.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    found, seen = set(), {}
    text = re.sub(r"^```.*?^```", "", path.read_text(encoding="utf-8"), flags=re.MULTILINE | re.DOTALL)
    for heading in re.findall(r"^#{1,6} (.+)$", text, flags=re.MULTILINE):
        base = slug(heading)
        n = seen.get(base, 0)
        found.add(base if n == 0 else f"{base}-{n}")
        seen[base] = n + 1
    return found


MARKDOWN = [README, *DOCS]


def links(path: Path) -> list[str]:
    text = re.sub(r"^```.*?^```", "", path.read_text(encoding="utf-8"), flags=re.MULTILINE | re.DOTALL)
    text = re.sub(r"`[^`]*`", "", text)
    return re.findall(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", text)


@pytest.mark.parametrize("path", MARKDOWN, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(path):
    broken = []
    for target in links(path):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto: ...
            continue
        file, _, anchor = target.partition("#")
        dest = (path.parent / file).resolve() if file else path
        if not dest.exists():
            broken.append(target)
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target} (no such heading)")
    assert not broken, f"{path.relative_to(ROOT)} links to what is not there: {broken}"


def test_every_picture_in_docs_is_shown():
    markdown = [README, *DOCS, *sorted((ROOT / "notebooks").glob("*.md"))]
    shown = {(p.parent / t.partition("#")[0]).resolve() for p in markdown for t in links(p)}
    pictures = [p for p in sorted((ROOT / "docs").iterdir()) if p.suffix.lower() in (".png", ".svg", ".jpg", ".gif")]
    unshown = [p.name for p in pictures if p.resolve() not in shown]
    assert not unshown, f"no Markdown file shows docs/{unshown}"
