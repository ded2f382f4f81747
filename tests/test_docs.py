"""The documentation (issue 13): every command has a section in README.md and every option of every
command is named in its section of docs/options.md, walking the CLI's click command tree; every
relative link in README.md, docs/*.md and results/README.md leads to a file, and to a heading
there when it names one; every page under docs/ is linked from README.md."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

import typer

from flopsbench.cli import app

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
OPTIONS_DOC = DOCS / "options.md"
LINKED_PAGES = [README, *sorted(DOCS.glob("*.md")), ROOT / "results" / "README.md"]

FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
INLINE_CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")  # http:, https:, mailto: ... are not checked


def prose_lines(text: str) -> Iterator[str]:
    """The lines of a Markdown text outside fenced code blocks (a '# comment' in a bash block is no
    heading, and an option that only an example uses is not documented)."""
    fenced = False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            yield line


def sections(text: str, level: int) -> dict[str, str]:
    """Each heading of ``level`` -> its prose up to the next heading of that level or above."""
    found: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in prose_lines(text):
        heading = HEADING.match(line)
        if heading and len(heading.group(1)) <= level:
            current = found.setdefault(heading.group(2), []) if len(heading.group(1)) == level else None
        elif current is not None:
            current.append(line)
    return {title: "\n".join(lines) for title, lines in found.items()}


def headings(text: str) -> list[str]:
    return [m.group(2) for m in map(HEADING.match, prose_lines(text)) if m]


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation (backticks, colons, dashes other
    than '-') dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(text: str) -> set[str]:
    """Every heading's anchor; a repeated one gets -1, -2, ... as on GitHub."""
    seen: dict[str, int] = {}
    result = set()
    for heading in headings(text):
        base = slug(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
        result.add(base if count == 0 else f"{base}-{count}")
    return result


def commands(command, path: tuple[str, ...] = ("flopsbench",)) -> Iterator[tuple[str, object]]:
    """('flopsbench', the root), ('flopsbench ops', ops), ...: every visible command, groups included."""
    yield " ".join(path), command
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        if not getattr(sub, "hidden", False):
            yield from commands(sub, (*path, name))


def spellings(command) -> list[str]:
    """Every way to write each visible option of ``command``: -o, --output, --save, --no-save, ..."""
    return [spelling for param in command.params
            if param.param_type_name == "option" and not getattr(param, "hidden", False)
            for spelling in (*param.opts, *param.secondary_opts)]


def undocumented(root, readme: str, options_doc: str) -> list[str]:
    """What the CLI under ``root`` has that the docs do not: a README section per command (a heading
    naming `flopsbench NAME`), and in docs/options.md a section '## `flopsbench NAME`' that names
    each of its options, every spelling, in its prose or tables."""
    readme_headings = headings(readme)
    by_command = sections(options_doc, level=2)
    problems = []
    for name, command in commands(root):
        if name != "flopsbench" and not any(f"`{name}`" in heading for heading in readme_headings):
            problems.append(f"README.md: no heading names `{name}`")
        section = by_command.get(f"`{name}`")
        if section is None:
            problems.append(f"docs/options.md: no section '## `{name}`'")
            continue
        for option in spellings(command):
            if not re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", section):
                problems.append(f"docs/options.md, `{name}`: {option} is not documented")
    return problems


def broken_links(pages: list[Path]) -> list[str]:
    """Each relative link of ``pages`` that leads to no file, or to no heading of a Markdown file."""
    problems = []
    for page in pages:
        text = page.read_text(encoding="utf-8")
        prose = INLINE_CODE.sub("", "\n".join(prose_lines(text)))
        for target in LINK.findall(prose):
            if SCHEME.match(target):
                continue
            path_part, _, anchor = target.partition("#")
            linked = (page.parent / path_part).resolve() if path_part else page
            if not linked.exists():
                problems.append(f"{page.name}: {target} does not exist")
            elif anchor and linked.suffix == ".md" and anchor not in anchors(linked.read_text(encoding="utf-8")):
                problems.append(f"{page.name}: {target} names no heading of {linked.name}")
    return problems


def test_every_command_and_option_is_documented():
    assert undocumented(typer.main.get_command(app), README.read_text(encoding="utf-8"),
                        OPTIONS_DOC.read_text(encoding="utf-8")) == []


def test_an_undocumented_command_or_option_is_caught():
    fake = typer.Typer(add_completion=False)

    @fake.command("ops")
    def ops(op: str = typer.Option("", "--op"), knob: int = typer.Option(0, "--undocumented-knob/--no-knob")):
        """A documented command with a documented and an undocumented option."""

    @fake.command("brand-new")
    def brand_new():
        """A command nobody wrote about."""

    assert undocumented(typer.main.get_command(fake), README.read_text(encoding="utf-8"),
                        OPTIONS_DOC.read_text(encoding="utf-8")) == [
        "README.md: no heading names `flopsbench brand-new`",
        "docs/options.md: no section '## `flopsbench brand-new`'",
        "docs/options.md, `flopsbench ops`: --undocumented-knob is not documented",
        "docs/options.md, `flopsbench ops`: --no-knob is not documented",
    ]


def test_an_option_named_only_in_an_example_or_another_section_is_undocumented():
    fake = typer.Typer(add_completion=False)

    @fake.command("ops")
    def ops(save: bool = typer.Option(False, "--save")):
        """One option."""

    @fake.command("other")
    def other():
        """A second command, so that the app is a group."""

    readme = "## `flopsbench ops`\n\n## `flopsbench other`\n"
    in_example = ("## `flopsbench`\n\n## `flopsbench ops`\n\n```bash\nflopsbench ops --save\n```\n\n"
                  "## `flopsbench other`\n")
    elsewhere = "## `flopsbench`\n\n## `flopsbench ops`\n\n## `flopsbench other`\n\n`--save`, `--saved`\n"
    described = "## `flopsbench`\n\n## `flopsbench ops`\n\n| `--save` | saves |\n\n## `flopsbench other`\n"
    missing = ["docs/options.md, `flopsbench ops`: --save is not documented"]
    root = typer.main.get_command(fake)
    assert undocumented(root, readme, in_example) == missing
    assert undocumented(root, readme, elsewhere) == missing
    assert undocumented(root, readme, described) == []


def test_links_resolve():
    assert broken_links(LINKED_PAGES) == []


def test_a_broken_link_is_caught(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "page.md").write_text("# A page\n\n## `flopsbench ops`: operators\n\n[back](../README.md)\n")
    readme = tmp_path / "README.md"
    readme.write_text("# Title\n\n[ok](docs/page.md) [ok](docs/page.md#flopsbench-ops-operators) [ok](#title)\n"
                      "[gone](docs/missing.md) [no heading](docs/page.md#nowhere) [web](https://example.org/x)\n"
                      "```\n[in code](not/checked.md)\n```\n")
    assert broken_links([readme, tmp_path / "docs" / "page.md"]) == [
        "README.md: docs/missing.md does not exist",
        "README.md: docs/page.md#nowhere names no heading of page.md",
    ]


def test_every_page_under_docs_is_linked_from_the_readme():
    linked = {(README.parent / target.partition("#")[0]).resolve()
              for target in LINK.findall(README.read_text(encoding="utf-8"))}
    assert [page.name for page in sorted(DOCS.glob("*.md")) if page.resolve() not in linked] == []


def test_slug_follows_github():
    assert slug("`flopsbench ops`: operators, the paper's Table 1") == "flopsbench-ops-operators-the-papers-table-1"
    assert slug("Comparing two runs (`flopsbench compare`)") == "comparing-two-runs-flopsbench-compare"
    assert slug("`python -m flopsbench.board`") == "python--m-flopsbenchboard"
    assert slug("Set-up, main job, tests") == "set-up-main-job-tests"
