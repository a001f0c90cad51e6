"""Fail when proto/ breaks the contract of the previous commit (buf breaking, FILE rules).

    python scripts/buf_breaking.py --buf .tools/buf/node_modules/.bin/buf [--against REF]

Compares the working tree's proto/ with proto/ at REF (default HEAD~1: on main, main's previous
commit; for a merge commit, the first parent, i.e. main before the merge). REF's proto/ is taken
with `git archive`, so this works in a fresh clone and in a git worktree alike (it needs the
history down to REF: CI's clone has all of it).

A deliberate break is declared, not hidden: a commit between REF and HEAD carrying the trailer
`Contract-Break-Allowed: <why>` turns the failure into a printed notice. A merge brings its
branch's commits, trailers included, so the merge commit of such a branch passes too. When REF
has no proto/buf.yaml (the contract did not exist yet), there is nothing to compare.
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

TRAILER = "Contract-Break-Allowed"


def _git(repo: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, check=False)


def allowances(repo: Path, against: str) -> list[str]:
    """`<commit> <why>` for each commit in against..HEAD that declares a break."""
    trailer = f"%(trailers:key={TRAILER},valueonly,separator=%x20)"
    out = _git(repo, "log", f"--format=%h%x00{trailer}", f"{against}..HEAD")
    found = []
    for line in out.stdout.decode("utf-8", "replace").splitlines():
        commit, _, why = line.partition("\0")
        if why.strip():
            found.append(f"{commit} {why.strip()}")
    return found


def check(repo: Path, buf: str, against: str) -> int:
    if _git(repo, "rev-parse", "--verify", "--quiet", f"{against}^{{commit}}").returncode != 0:
        print(f"buf breaking: {against} is not a commit here (a shallow clone? fetch the history)")
        return 1
    if _git(repo, "cat-file", "-e", f"{against}:proto/buf.yaml").returncode != 0:
        print(f"buf breaking: {against} has no proto/buf.yaml; nothing to compare")
        return 0
    archive = _git(repo, "archive", "--format=tar", against, "proto")
    if archive.returncode != 0:
        print(archive.stderr.decode("utf-8", "replace"))
        return 1
    with tempfile.TemporaryDirectory(prefix="airlock-breaking-") as tmp:
        with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
            tar.extractall(tmp, filter="data")
        result = subprocess.run(
            [buf, "breaking", "proto", "--against", str(Path(tmp) / "proto")],
            cwd=repo,
            capture_output=True,
            text=True,
            check=False,
        )
    report = (result.stdout + result.stderr).strip()
    if result.returncode == 0:
        print(f"buf breaking: no breaking change against {against}")
        return 0
    print(report)
    if result.returncode != 100:  # 100 is "breaking changes found"; anything else is a failure
        print(f"buf breaking: buf failed (exit {result.returncode})")
        return 1
    allowed = allowances(repo, against)
    if allowed:
        for line in allowed:
            print(f"buf breaking: allowed by {TRAILER} in {line}")
        return 0
    print(
        f"buf breaking: proto/ breaks the contract of {against}. If the break is deliberate, say "
        f"so in the commit message with a trailer line `{TRAILER}: <why>`."
    )
    return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--buf", required=True, help="the pinned buf binary")
    parser.add_argument("--against", default="HEAD~1", help="the git ref to compare with")
    parser.add_argument("--repo", type=Path, default=Path(__file__).resolve().parent.parent)
    opts = parser.parse_args(argv)
    return check(opts.repo, str(Path(opts.buf).resolve()), opts.against)


if __name__ == "__main__":
    sys.exit(main())
