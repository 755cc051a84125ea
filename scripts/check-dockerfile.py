#!/usr/bin/env python3
"""Checks the Dockerfile's dependency layer against the workspace, without Docker.

    scripts/check-dockerfile.py [--self-test]

The Dockerfile compiles the dependencies from the manifests alone, with an empty
stand-in for each workspace crate, so every member must be named three times (its
manifest copied, a stand-in made, its sources touched), every explicit `[[test]]` of
the root package needs a stand-in, and `.cargo/` (jemalloc's compiled-in options) must
be there before the first `cargo build`. A member added to the workspace and not to
the Dockerfile breaks `docker build` at its first step, which no other test runs.

--self-test: Dockerfiles broken on purpose (a member left out of each list in turn,
.cargo/ copied too late) must each be refused.
"""

import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def workspace():
    manifest = tomllib.loads((ROOT / "Cargo.toml").read_text())
    members = manifest["workspace"]["members"]
    test_dirs = [Path(t["path"]).parent.name for t in manifest.get("test", [])]
    return members, test_dirs


def problems_of(dockerfile, members, test_dirs):
    """What is wrong with DOCKERFILE (its text) for this workspace, as sentences."""
    problems = []
    build_stage = dockerfile.split("\nFROM ", 2)[1] if "\nFROM " in dockerfile else ""
    first_build = build_stage.find("cargo build")
    if first_build < 0:
        return ["no `cargo build` in the build stage"]
    deps_layer = build_stage[:first_build]

    copied = set(re.findall(r"^COPY (\S+)/Cargo\.toml \1/$", deps_layer, re.M))
    stand_ins = re.search(r"for crate in ([^;]+); do", deps_layer)
    stand_ins = set(stand_ins.group(1).split()) if stand_ins else set()
    tests = re.search(r"for t in ([^;]+); do", deps_layer)
    tests = set(tests.group(1).split()) if tests else set()
    touched = re.search(r"find src ((?:[\w-]+ )+)-name '\*\.rs'", build_stage)
    touched = set(touched.group(1).split()) if touched else set()

    for member in members:
        if member not in copied:
            problems.append(f"member {member}: its Cargo.toml is not copied before the first build")
        if member not in stand_ins:
            problems.append(f"member {member}: no stand-in lib.rs (the `for crate in` list)")
        if member not in touched:
            problems.append(f"member {member}: its sources are not touched before the real build")
    for stale in sorted((copied | stand_ins) - set(members)):
        problems.append(f"{stale}: in the Dockerfile but not a workspace member")
    for test in test_dirs:
        if test not in tests:
            problems.append(f"[[test]] tests/{test}: no stand-in main.rs (the `for t in` list)")
    if not re.search(r"^COPY \.cargo/ \.cargo/$", deps_layer, re.M):
        problems.append(".cargo/ (jemalloc's options) is not copied before the first build")
    return problems


def without(dockerfile, list_pattern, word):
    """DOCKERFILE with WORD taken out of the list that LIST_PATTERN's group 1 matches."""

    def drop(m):
        items = m.group(1)
        kept = " ".join(w for w in items.split() if w != word) + items[len(items.rstrip()) :]
        return m.group(0).replace(m.group(1), kept, 1)

    return re.sub(list_pattern, drop, dockerfile, count=1)


def self_test(dockerfile, members, test_dirs):
    breaks = {}
    for member in members:
        breaks[f"{member}'s manifest not copied"] = dockerfile.replace(
            f"COPY {member}/Cargo.toml {member}/\n", ""
        )
        breaks[f"{member} without a stand-in"] = without(
            dockerfile, r"for crate in ([^;]+); do", member
        )
        breaks[f"{member}'s sources not touched"] = without(
            dockerfile, r"find src ((?:[\w-]+ )+)-name", member
        )
    for test in test_dirs:
        breaks[f"tests/{test} without a stand-in"] = without(
            dockerfile, r"for t in ([^;]+); do", test
        )
    breaks[".cargo/ copied late"] = dockerfile.replace("COPY .cargo/ .cargo/\n", "").replace(
        "COPY . .\n", "COPY . .\nCOPY .cargo/ .cargo/\n"
    )
    missed = [name for name, text in breaks.items() if not problems_of(text, members, test_dirs)]
    for name in missed:
        print(f"check-dockerfile: self-test: not caught: {name}", file=sys.stderr)
    if missed:
        return 1
    print(f"check-dockerfile: self-test: all {len(breaks)} breaks caught")
    return 0


def main():
    dockerfile = (ROOT / "Dockerfile").read_text()
    members, test_dirs = workspace()
    if sys.argv[1:] == ["--self-test"]:
        return self_test(dockerfile, members, test_dirs)
    if sys.argv[1:]:
        print(__doc__, file=sys.stderr)
        return 2
    problems = problems_of(dockerfile, members, test_dirs)
    for p in problems:
        print(f"check-dockerfile: Dockerfile: {p}", file=sys.stderr)
    if not problems:
        print(f"check-dockerfile: {len(members)} members and {len(test_dirs)} test targets in step 1")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
