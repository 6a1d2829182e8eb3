"""PyYAML's syntax errors in our own words, at the line where the mistake most likely is.

PyYAML reports where parsing could not go on, which for an indentation mistake can be many
lines below it (a mis-indented ``codex:`` is reported at the next app's line). These
functions look at the text around that place and name the line a person would fix.
"""

from __future__ import annotations

import yaml

__all__ = ["explain"]

INDENTATION = "check the indentation"


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _content(lines: list[str], index: int) -> bool:
    """A line that holds YAML: not blank, not only a comment."""
    text = lines[index].strip()
    return bool(text) and not text.startswith("#")


def _previous(lines: list[str], index: int) -> int | None:
    """The index of the nearest content line above ``index``."""
    for i in range(index - 1, -1, -1):
        if _content(lines, i):
            return i
    return None


def _open_levels(lines: list[str], index: int) -> list[tuple[int, int]]:
    """(indentation, line index) of the blocks still open just above ``index``: the nearest
    content line, then each line further up that is indented less than all below it."""
    levels: list[tuple[int, int]] = []
    i = _previous(lines, index)
    while i is not None:
        level = _indent(lines[i])
        if not levels or level < levels[-1][0]:
            levels.append((level, i))
        i = _previous(lines, i)
    return levels


def _misindented(lines: list[str], index: int) -> int:
    """The line whose indentation is most likely wrong, for a line (``index``) whose
    indentation matches no open block.

    Either that line is wrong (``  codex:`` written `` codex:``), or an earlier line went
    back too far and closed the block this one belongs to (``codex:`` written at column 0
    ends ``apps:``, and the next app, correctly indented, no longer fits anywhere). It is
    the earlier line when it left a block at exactly this line's indentation.
    """
    level = _indent(lines[index])
    levels = _open_levels(lines, index)
    for position, (indent, line) in enumerate(levels):
        if indent < level:
            deeper = levels[position - 1][0] if position else None
            if deeper is not None and deeper > level:
                before = [indent for indent, _ in _open_levels(lines, line)]
                if level in before:
                    return line
            break
    return index


def _missing_colon(lines: list[str], index: int) -> int | None:
    """``queue`` followed by ``providers: …``: PyYAML joins the two lines into one key."""
    before = _previous(lines, index)
    if before is None:
        return None
    text = lines[before].split("#", 1)[0].strip()
    if ":" in text or text.startswith("-") or _indent(lines[before]) != _indent(lines[index]):
        return None
    return before


def explain(error: yaml.MarkedYAMLError, text: str) -> tuple[int | None, str]:
    """(line, message) for a YAML syntax error; the line is 1-based."""
    problem = error.problem or ""
    context = error.context or ""
    mark = error.problem_mark or error.context_mark
    if mark is None:
        return None, f"malformed YAML: {problem or context}"
    lines = text.splitlines() or [""]
    index = min(mark.line, len(lines) - 1)
    opened = error.context_mark.line + 1 if error.context_mark else None
    if problem.startswith("expected <block end>") or "could not find expected ':'" in problem:
        line = _misindented(lines, index)
        key = lines[line].split("#", 1)[0].strip().split(":", 1)[0]
        what = f"{key!r}" if key else "this line"
        return line + 1, f"{what} does not line up with the lines around it; {INDENTATION}"
    if "'\\t'" in problem or "\t" in problem:
        return mark.line + 1, "a tab character: YAML indents with spaces only"
    if problem.startswith("mapping values are not allowed"):
        before = _missing_colon(lines, index)
        if before is not None:
            return before + 1, "a key without ':' (or check the indentation of the next line)"
        return (
            mark.line + 1,
            "a second ': ' on one line; put quotes around a value that contains ': '",
        )
    if context.startswith("while scanning a quoted scalar") and opened:
        return opened, "a quote opened on this line is never closed"
    if context.startswith("while parsing a flow sequence") and opened:
        return opened, "a list opened with '[' on this line is not closed with ']'"
    if context.startswith("while parsing a flow mapping") and opened:
        return opened, "a mapping opened with '{' on this line is not closed with '}'"
    if context.startswith("while parsing a block") and problem.startswith("expected"):
        return mark.line + 1, f"unexpected text here; {INDENTATION}"
    return mark.line + 1, f"malformed YAML: {problem or context}"
