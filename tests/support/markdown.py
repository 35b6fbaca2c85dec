"""What the README and docs/ show a user: relative links, and the commands of their ```bash blocks."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

# [text](target) and ![alt](target); a target ends at the first space (a title may follow) or ')'.
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^```(\w*)\s*$")
ASSIGNMENT = re.compile(r"^[A-Z_][A-Z0-9_]*=")


def relative_links(text: str) -> list[str]:
    """Link targets that point into the repository (no scheme, not a bare anchor), fragment removed."""
    targets = []
    in_code = False
    for line in text.splitlines():
        if line.startswith("```"):
            in_code = not in_code
            continue
        if in_code:
            continue
        for target in LINK.findall(line):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
                continue
            targets.append(target.split("#", 1)[0])
    return targets


@dataclass(frozen=True)
class Command:
    source: str  # file and line, for messages
    env: dict[str, str]  # VAR=value prefixes
    argv: tuple[str, ...]  # the program and its arguments, quotes removed

    def __str__(self) -> str:
        return f"{self.source}: {' '.join(self.argv)}"


def bash_commands(path: Path, root: Path) -> list[Command]:
    """Every command of every ```bash block: continuation lines joined, comments dropped, `;` and `&&` split,
    leading VAR=value assignments taken apart."""
    commands: list[Command] = []
    lines = path.read_text().splitlines()
    in_bash = in_code = False
    pending, start = "", 0
    for number, line in enumerate(lines, 1):
        fence = FENCE.match(line)
        if fence and not in_code:
            in_code, in_bash = True, fence.group(1) in ("bash", "sh", "shell")
            continue
        if fence and in_code:
            in_code = in_bash = False
            continue
        if not in_bash:
            continue
        if not pending:
            start = number
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        full, pending = pending + line, ""
        lexer = shlex.shlex(full, posix=True, punctuation_chars=";&|")
        lexer.whitespace_split = True
        lexer.commenters = "#"
        words: list[str] = []
        for token in [*lexer, ";"]:
            if token in (";", "&&", "||", "|"):
                if words:
                    env: dict[str, str] = {}
                    while words and ASSIGNMENT.match(words[0]):
                        name, value = words.pop(0).split("=", 1)
                        env[name] = value
                    if words:
                        commands.append(Command(f"{path.relative_to(root)}:{start}", env, tuple(words)))
                words = []
            else:
                words.append(token)
    return commands


INLINE = re.compile(r"`(?:[A-Z_][A-Z0-9_]*=\$\()?(python -m [^`$)]+)\)?`")


def inline_commands(path: Path, root: Path) -> list[Command]:
    """`python -m …` commands written inline in the prose (an ellipsis or `|` alternatives end one)."""
    commands = []
    text = path.read_text()
    for match in INLINE.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        words = []
        for word in shlex.split(match.group(1).replace("\n", " ")):
            if word in ("…", "...", "|") or word.startswith("["):
                break
            words.append(word)
        commands.append(Command(f"{path.relative_to(root)}:{line}", {}, tuple(words)))
    return commands
