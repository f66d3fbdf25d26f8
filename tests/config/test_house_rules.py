"""House rules that hold for the whole tree: every module says what it is for in a docstring."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("core", "tenants", "providers", "billing", "gateway", "support", "tenantconfig", "config", "tests", "bench")
SKIPPED = {"migrations", "__pycache__", ".venv-litellm"}  # generated code, and bench's own virtualenv


def project_modules() -> list[Path]:
    """manage.py and every .py file of the project's packages, outside migrations."""
    found = [ROOT / "manage.py"]
    for package in PACKAGES:
        found += [path for path in sorted((ROOT / package).rglob("*.py"))
                  if not SKIPPED.intersection(path.relative_to(ROOT).parts)]
    return found


def test_the_walk_finds_the_project():
    names = {path.relative_to(ROOT).as_posix() for path in project_modules()}
    assert {"manage.py", "config/settings.py", "gateway/app.py", "tests/config/test_house_rules.py"} <= names
    assert len(names) > 150
    assert not any("/migrations/" in name for name in names)


def test_every_module_starts_with_a_docstring_saying_what_it_is_for():
    missing = []
    for path in project_modules():
        source = path.read_text(encoding="utf-8")
        if not source.strip():
            continue  # an empty __init__.py only marks a package
        docstring = ast.get_docstring(ast.parse(source, filename=str(path)))
        if not (docstring or "").strip():
            missing.append(path.relative_to(ROOT).as_posix())
    assert not missing, (
        f"{len(missing)} module(s) lack a docstring; start each with one whose first line says what the "
        f"module is for: {', '.join(missing)}"
    )
