"""One vocabulary: a module's file name finds one file in the package."""

from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "reversibility"


def shared_basenames(package: Path) -> dict[str, list[str]]:
    """Module file names that occur more than once under `package` (package markers aside)."""
    found = defaultdict(list)
    for path in package.rglob("*.py"):
        if path.name != "__init__.py":
            found[path.name].append(str(path.relative_to(package)))
    return {name: sorted(paths) for name, paths in found.items() if len(paths) > 1}


def test_no_two_modules_share_a_file_name():
    assert shared_basenames(PACKAGE) == {}


def test_a_shared_file_name_is_found(tmp_path):
    for path in ("training.py", "stages/__init__.py", "stages/training.py", "__init__.py"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).touch()
    assert shared_basenames(tmp_path) == {"training.py": ["stages/training.py", "training.py"]}
