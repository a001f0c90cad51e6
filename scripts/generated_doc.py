"""The command line of a script that writes a doc from a source of truth: rewrite it, or
with --check exit 1 when the committed doc differs from what the script would write."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def write_or_check(description: str, doc: Path, render: Callable[[], str]) -> int:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--check", action="store_true", help="exit 1 if the doc is stale")
    args = parser.parse_args()
    text = render()
    name = doc.relative_to(REPO)
    if args.check:
        if not doc.exists() or doc.read_text(encoding="utf-8") != text:
            print(f"{name} is stale; run: python scripts/{Path(parser.prog).name}")
            return 1
        print(f"{name} is up to date")
        return 0
    doc.write_text(text, encoding="utf-8")
    print(f"wrote {name}")
    return 0
