"""The CLI reference stays true: docs/cli.md is generated from the command tree, every command has
an example that the real parser accepts, and every `pds ...` line in the docs names a real command."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from pds_kernel.cli.reference import EXAMPLES, iter_commands, parse_example, render_cli_reference, root_command, splice

REPO = Path(__file__).resolve().parents[2]
CLI_PAGE = REPO / "docs" / "cli.md"


def _doc_command_lines() -> list[tuple[str, str]]:
    """(file, line) for every `pds ...` line inside a fenced code block of README.md and docs/."""
    found = []
    for path in [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]:
        in_code = False
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.lstrip().startswith("```"):
                in_code = not in_code
                continue
            text = line.strip().removeprefix("$ ")
            if in_code and text.startswith("pds "):
                found.append((str(path.relative_to(REPO)), text))
    return found


def test_cli_page_is_generated_from_the_commands():
    page = CLI_PAGE.read_text(encoding="utf-8")
    assert splice(page, render_cli_reference()) == page, \
        "docs/cli.md is stale: run python -m pds_kernel.cli.reference --write docs/cli.md"


def test_every_command_has_an_example_that_parses():
    commands = [" ".join(path) for path, _ in iter_commands(root_command())]
    assert "project apply" in commands and "demo run" in commands
    missing = [c for c in commands if c not in EXAMPLES]
    assert not missing, f"add an example to pds_kernel.cli.reference.EXAMPLES for: {missing}"
    for key in commands:
        path, _context = parse_example(EXAMPLES[key])
        assert " ".join(path) == key, EXAMPLES[key]
    stale = sorted(set(EXAMPLES) - set(commands))
    assert not stale, f"examples of commands that do not exist: {stale}"


def test_every_documented_command_exists():
    lines = _doc_command_lines()
    assert len(lines) > 20
    root = root_command()
    for where, line in lines:
        words = shlex.split(line, comments=True)
        # placeholders such as FILE or <project> are fine; unknown commands and options are not
        if where in ("docs/cli.md", "README.md") and not re.search(r"[A-Z]{3,}|<", line.split("#")[0][4:]):
            parse_example(" ".join(shlex.quote(w) for w in words), root)
        else:
            _command_path_exists(root, words, f"{where}: {line}")


def _command_path_exists(root, words: list[str], where: str) -> None:
    words = words[1:]
    while words and words[0].startswith("-"):
        words = words[2:] if words[0] in ("--config", "-c", "--as") else words[1:]
    command = root
    while hasattr(command, "commands"):
        if not words or words[0] in ("--help", "-h"):
            return
        assert words[0] in command.commands, f"{where}: no command {words[0]!r}"
        command, words = command.commands[words[0]], words[1:]


def test_parse_example_rejects_unknown_commands_and_options():
    with pytest.raises(ValueError):
        parse_example("pds project frobnicate x")
    with pytest.raises(Exception, match="--colour"):
        parse_example("pds project list --colour red")
    with pytest.raises(Exception, match="(?i)missing|required"):
        parse_example("pds project add-member diabetes-t2 alice")  # --role and --expires are required
