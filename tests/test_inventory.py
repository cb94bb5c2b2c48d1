"""What a clone contains, and which test command INDEXING picks (DESIGN §5)."""

from __future__ import annotations

import json

import pytest

from bot.inventory import detect_test_command, take_inventory

NPM_INIT_TEST = 'echo "Error: no test specified" && exit 1'


def detect(files: dict[str, str]) -> str | None:
    """Detect the test command of a repository holding exactly `files`."""
    return detect_test_command(list(files), files.get)


def package_json(scripts: dict[str, str] | None = None) -> str:
    package: dict[str, object] = {"name": "app", "version": "1.0.0"}
    if scripts is not None:
        package["scripts"] = scripts
    return json.dumps(package, indent=2)


def test_languages_are_counted_most_common_first():
    inventory = take_inventory(
        ["b.py", "a.py", "pkg/c.PY", "web/app.ts", "web/index.tsx", "main.go", "LICENSE", "x.txt"]
    )
    assert inventory.languages == {"Python": 3, "TypeScript": 2, "Go": 1}
    assert list(inventory.languages) == ["Python", "TypeScript", "Go"]
    assert inventory.files[:2] == ("LICENSE", "a.py")
    assert len(inventory.files) == 8


def test_summary_counts_files_and_top_languages():
    assert take_inventory(["a.py", "b.py", "c.rs"]).summary == "3 files (Python 2, Rust 1)"
    assert take_inventory(["LICENSE"]).summary == "1 files"
    assert take_inventory([]).languages == {}


def test_pyproject_with_pytest_section():
    files = {"pyproject.toml": "[project]\nname = 'x'\n\n[tool.pytest.ini_options]\n", "x.py": ""}
    assert detect(files) == "python -m pytest"


def test_pyproject_without_pytest_and_no_tests_is_not_pytest():
    assert detect({"pyproject.toml": "[project]\nname = 'x'\n", "x.py": ""}) is None


@pytest.mark.parametrize(
    "path", ["tests/test_calc.py", "test_calc.py", "pkg/calc_test.py", "a/b/test_deep.py"]
)
def test_python_test_files_mean_pytest(path):
    assert detect({"calc.py": "", path: ""}) == "python -m pytest"


@pytest.mark.parametrize("name", ["pytest.ini", "conftest.py", "tox.ini"])
def test_pytest_configuration_files_mean_pytest(name):
    assert detect({name: ""}) == "python -m pytest"


def test_setup_cfg_pytest_section_means_pytest():
    assert detect({"setup.cfg": "[metadata]\nname = x\n[tool:pytest]\n"}) == "python -m pytest"


def test_files_merely_mentioning_test_are_not_pytest():
    assert detect({"tests/test_data.json": "", "docs/test_plan.md": "", "latest.py": ""}) is None


def test_npm_test_script():
    assert detect({"package.json": package_json({"test": "jest"})}) == "npm test"


def test_npm_init_default_test_script_does_not_count():
    assert detect({"package.json": package_json({"test": NPM_INIT_TEST})}) is None


@pytest.mark.parametrize(
    "text", [package_json(), package_json({"build": "tsc"}), "{not json", "[]", ""]
)
def test_package_json_without_a_usable_test_script_does_not_count(text):
    assert detect({"package.json": text}) is None


def test_npm_default_script_falls_through_to_another_runner():
    files = {"package.json": package_json({"test": NPM_INIT_TEST}), "Makefile": "test:\n\tgo vet\n"}
    assert detect(files) == "make test"


def test_go_module():
    assert detect({"go.mod": "module example.com/x\n", "main.go": ""}) == "go test ./..."


def test_cargo_crate():
    assert detect({"Cargo.toml": "[package]\nname = 'x'\n", "src/lib.rs": ""}) == "cargo test"


@pytest.mark.parametrize("rule", ["test:\n\t./run-tests\n", "build:\n\tcc x.c\n\ntest: build\n"])
def test_makefile_with_a_test_target(rule):
    assert detect({"Makefile": rule}) == "make test"


@pytest.mark.parametrize("rule", ["build:\n\tcc x.c\n", "tests:\n\t./t\n", "# test: later\n"])
def test_makefile_without_a_test_target(rule):
    assert detect({"Makefile": rule}) is None


def test_repository_without_tests():
    assert detect({"README.md": "# hi\n", "index.html": "", "src/main.c": ""}) is None
    assert detect({}) is None
