"""MkDocs hook: the CLI reference page (``cli.md``), generated from the Typer app at build time.

Why generated: a hand-written reference drifts from the code the day an option is added. This page
is rendered from the same Click objects that ``contestkit --help`` prints (``typer.main.get_command``),
so every command, argument and option appears with its own help text and default, and nothing else.
``tests/test_cli_docs.py`` renders it the same way and checks that nothing is missing.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

PAGE = "cli.md"


def command_tree() -> Any:
    """The Click command of the ``contestkit`` app (sub-commands registered by every module)."""
    import typer.main

    from contestkit.cli import app

    return typer.main.get_command(app)


def walk(command: Any, ctx: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any, Any]]:
    """(path, command, context) for ``command`` and every command below it, depth first, by name."""
    yield path, command, ctx
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        if sub.hidden:
            continue
        yield from walk(sub, sub.context_class(sub, info_name=name, parent=ctx), (*path, name))


def _cell(text: str) -> str:
    """One Markdown table cell: no line breaks, no bare pipes."""
    return " ".join(text.split()).replace("|", "\\|")


def render_command(path: tuple[str, ...], command: Any, ctx: Any) -> str:
    """One command's section: heading, usage line, help text, and a table of its parameters."""
    name = " ".join(("contestkit", *path))
    level = "#" * min(2 + max(len(path) - 1, 0), 4)
    lines = [f"{level} `{name}`", ""]
    lines += ["```text", command.get_usage(ctx), "```", ""]
    help_text = (command.help or command.short_help or "").strip()
    if help_text:
        lines += [help_text.replace("\b\n", "").strip(), ""]
    rows = []
    for param in command.get_params(ctx):
        if getattr(param, "hidden", False):
            continue
        record = param.get_help_record(ctx)
        if record is None:
            continue
        names, desc = record
        kind = "argument" if param.param_type_name == "argument" else "option"
        rows.append(f"| `{_cell(names)}` | {kind} | {_cell(desc)} |")
    if rows:
        lines += ["| parameter | kind | what |", "| --- | --- | --- |", *rows, ""]
    subs = [n for n, c in sorted(getattr(command, "commands", {}).items()) if not c.hidden]
    if subs:
        lines += ["Sub-commands: " + ", ".join(f"`{n}`" for n in subs) + ".", ""]
    return "\n".join(lines)


def render() -> str:
    """The whole reference page, as Markdown."""
    root = command_tree()
    ctx = root.context_class(root, info_name="contestkit")
    parts = [
        "# CLI reference",
        "",
        "Generated from the command line itself when the site is built (`docs/hooks/cli_reference.py`), "
        "so it always matches `contestkit --help`. The guides explain when to use each command.",
        "",
    ]
    if root.epilog:
        parts += [root.epilog.strip(), ""]
    parts += [render_command(path, command, ctx) for path, command, ctx in walk(root, ctx)]
    return "\n".join(parts)


def on_files(files: Any, config: Any) -> Any:
    """Add the generated page to the site's files (MkDocs >= 1.6)."""
    from mkdocs.structure.files import File

    files.append(File.generated(config, PAGE, content=render()))
    return files
