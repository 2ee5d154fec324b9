"""Check that the built sdist and wheel ship every recording and diagram (make dist).

Run: ``python scripts/check_dist.py dist`` after ``python -m build --outdir dist``. The
lesson replays the recordings and shows the diagrams from the installed package, so a
wheel without them installs fine and then fails in Colab: this catches that here.
"""

from __future__ import annotations

import sys
import tarfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The package data the installed lesson needs, as globs under llm_workflows/.
PACKAGE_DATA = ("recordings/*.jsonl", "diagrams/*.svg", "diagrams/*.json")


def expected_files() -> set[str]:
    """Package-relative paths of the data files in the source tree, e.g. 'diagrams/routing.svg'."""
    package = ROOT / "llm_workflows"
    found = {p.relative_to(package).as_posix() for g in PACKAGE_DATA for p in package.glob(g)}
    for pattern in PACKAGE_DATA[:2]:  # the lesson cannot run without these two kinds
        if not any(Path(f).match(pattern) for f in found):
            raise SystemExit(f"check_dist: no llm_workflows/{pattern} in the source tree")
    return found


def missing_from(names: list[str], prefix: str, expected: set[str]) -> list[str]:
    """The expected files that are not in an archive listing, under `prefix` + 'llm_workflows/'."""
    present = {n.removeprefix(prefix) for n in names}
    return sorted(f for f in expected if f"llm_workflows/{f}" not in present)


def check(dist: Path) -> list[str]:
    """One line per problem with the archives in `dist` (empty when all is well)."""
    wheels, sdists = sorted(dist.glob("*.whl")), sorted(dist.glob("*.tar.gz"))
    if len(wheels) != 1 or len(sdists) != 1:
        return [
            f"expected one wheel and one sdist in {dist}, found {len(wheels)} and {len(sdists)}"
        ]
    expected = expected_files()
    problems = []
    with zipfile.ZipFile(wheels[0]) as wheel:
        for f in missing_from(wheel.namelist(), "", expected):
            problems.append(f"{wheels[0].name} lacks llm_workflows/{f}")
    with tarfile.open(sdists[0]) as sdist:
        top = sdists[0].name.removesuffix(".tar.gz") + "/"
        for f in missing_from(sdist.getnames(), top, expected):
            problems.append(f"{sdists[0].name} lacks llm_workflows/{f}")
    return problems


def main(argv: list[str]) -> int:
    dist = Path(argv[1] if len(argv) > 1 else "dist")
    problems = check(dist)
    for line in problems:
        print(f"check_dist: {line}; check [tool.setuptools.package-data] in pyproject.toml")
    if not problems:
        print(
            f"check_dist: the wheel and the sdist in {dist} hold all {len(expected_files())} data files"
        )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
