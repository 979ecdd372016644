#!/usr/bin/env python3
"""Regenerate the settings table in deploy/README.md from ``agent.settings.env_table()``.

    python deploy/gen_docs.py           # rewrite the table between the markers
    python deploy/gen_docs.py --check   # exit 1 when the README is out of date

The table sits between ``<!-- settings-table:start -->`` and ``<!-- settings-table:end -->``;
everything else in the README is left as written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from agent.settings import env_table  # noqa: E402

README = REPO / "deploy" / "README.md"
START = "<!-- settings-table:start -->"
END = "<!-- settings-table:end -->"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_table(rows: list[tuple[str, str, str]] | None = None) -> str:
    rows = env_table() if rows is None else rows
    out = ["| variable | default | description |", "|---|---|---|"]
    for var, default, description in rows:
        shown = f"`{_cell(default)}`" if default != "" else ""
        out.append(f"| `{var}` | {shown} | {_cell(description)} |")
    return "\n".join(out)


def parse_table(readme_text: str) -> list[tuple[str, str, str]]:
    """The (variable, default, description) rows of the table in ``readme_text``."""
    body = readme_text.split(START, 1)[1].split(END, 1)[0]
    rows = []
    for line in body.strip().splitlines()[2:]:
        cells = [c.strip() for c in line.strip().strip("|").replace("\\|", "\0").split("|")]
        var, default, description = (c.replace("\0", "|") for c in cells)
        rows.append((var.strip("`"), default[1:-1] if default.startswith("`") else default, description))
    return rows


def updated(readme_text: str) -> str:
    if START not in readme_text or END not in readme_text:
        raise SystemExit(f"{README}: markers {START} / {END} not found")
    head, rest = readme_text.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{render_table()}\n{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args(argv)
    text = README.read_text()
    new = updated(text)
    if args.check:
        if new != text:
            print(f"{README}: settings table is out of date; run python deploy/gen_docs.py", file=sys.stderr)
            return 1
        return 0
    README.write_text(new)
    print(f"wrote {len(env_table())} settings to {README}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
