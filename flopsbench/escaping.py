"""Report text made safe for each view. Every string in a report may come from another machine
(`flopsbench report FILE`, a board's ONNX file name or metadata), so no view passes it through as
is: each function here turns any value into text that can only show as itself in its format."""

from __future__ import annotations

import re

# Line and paragraph breaks (what str.splitlines splits on) and tabs: one space each, so that a
# value stays on its line (a table row, a '% ' comment, a '- ' note).
_BREAKS = re.compile(r"\r\n|[\t\n\v\f\r\x1c-\x1e\x85\u2028\u2029]")
# Other C0 and C1 controls (ESC, CSI 0x9b, BEL start terminal sequences), DEL, the bidirectional
# overrides and isolates (they reorder what a reader sees), and lone surrogates (not encodable).
_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def plain_text(value: object) -> str:
    """``str(value)`` on one line and free of control characters: breaks become spaces, every
    other control character its visible Python escape (``\\x1b``). Ordinary text is unchanged."""
    text = _BREAKS.sub(" ", str(value))
    return _CONTROLS.sub(lambda match: ascii(match.group())[1:-1], text)


# Backslash first among the escaped: no escape of ours can be undone by one in the text. '|' ends a
# table cell; '[' and ']' make links and images; '<' starts HTML and autolinks.
_MARKDOWN = re.compile(r"[\\|\[\]<>]")


def markdown_text(value: object) -> str:
    """Plain text for a GitHub-flavoured Markdown table cell or line: no cell boundary, link,
    image or HTML can come from it."""
    return _MARKDOWN.sub(r"\\\g<0>", plain_text(value))


_LATEX = str.maketrans({
    "\\": r"\textbackslash{}", "{": r"\{", "}": r"\}", "$": r"\$", "&": r"\&", "#": r"\#", "_": r"\_",
    "%": r"\%", "^": r"\textasciicircum{}", "~": r"\textasciitilde{}",
    # not specials, but the default OT1 font shows them as other glyphs
    "<": r"\textless{}", ">": r"\textgreater{}", "|": r"\textbar{}",
})


def latex_text(value: object) -> str:
    """Plain text for a LaTeX document (a tabular cell): every special character escaped. A
    leading '[' or '*' is shielded by '{}', as ``\\\\`` and ``\\midrule`` before it would take it
    for their optional argument. (Inside a '% ' comment, plain_text is enough: TeX ignores the
    rest of the line, and plain_text keeps the value on it.)"""
    text = plain_text(value).translate(_LATEX)
    return "{}" + text if text.lstrip(" ")[:1] in ("[", "*") else text


def csv_text(value: object) -> str:
    """Plain text for a CSV cell (the csv writer quotes ',' and '"'). Text that a spreadsheet could
    run as a formula (starting, after any spaces, with =, +, - or @: OWASP's 'CSV injection') gets a
    leading "'"."""
    text = plain_text(value)
    return "'" + text if text.lstrip(" ")[:1] in ("=", "+", "-", "@") else text
