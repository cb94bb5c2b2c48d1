"""The model agent's file tools, on real files, in a clone that may be hostile (DESIGN §7)."""

from __future__ import annotations

import inspect
import os
import re
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.agents.tools import TOOL_SPECS, CloneTools, ToolError
from bot.repo_config import RepoConfig

SECRET = "TOP SECRET: the server's own file"
APP = "def add(a, b):\n    return a + b\n\n\ndef sub(a, b):\n    return a - b\n"


def make_clone(base: Path) -> tuple[Path, Path]:
    """A clone with the traps a hostile repository can set, and a folder outside it."""
    outside = base / "outside"
    outside.mkdir(parents=True)
    (outside / "secret.txt").write_text(SECRET)
    root = base / "repo"
    (root / "src").mkdir(parents=True)
    (root / "src" / "app.py").write_text(APP)
    (root / "README.md").write_text("# Demo\n")
    (root / ".git").mkdir()
    (root / ".git" / "config").write_text("[core]\n\thooksPath = evil\n")
    (root / ".github" / "workflows").mkdir(parents=True)
    (root / ".github" / "workflows" / "ci.yml").write_text("on: push\n")
    (root / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR")
    (root / "leak.txt").symlink_to(outside / "secret.txt")
    (root / "outdir").symlink_to(outside)
    (root / "relative_leak").symlink_to("../outside/secret.txt")
    (root / "workflow.yml").symlink_to(".github/workflows/ci.yml")
    (root / "src" / "same.py").symlink_to("app.py")
    return root, outside


def tools_for(root: Path, **limits: int) -> CloneTools:
    config = RepoConfig()
    return CloneTools(
        root,
        protected=config.is_protected,
        protected_patterns=config.protected_paths,
        **limits,
    )


@pytest.fixture
def clone(tmp_path: Path) -> tuple[CloneTools, Path, Path]:
    root, outside = make_clone(tmp_path)
    return tools_for(root), root, outside


@pytest.fixture
def tools(clone) -> CloneTools:
    return clone[0]


@pytest.fixture
def root(clone) -> Path:
    return clone[1]


def test_list_files_is_sorted_relative_and_skips_git(tools: CloneTools) -> None:
    listed = tools.list_files().splitlines()
    assert listed == sorted(listed)
    assert "src/app.py" in listed and ".github/workflows/ci.yml" in listed
    assert not any(name.startswith(".git/") for name in listed)
    assert "outdir/secret.txt" not in listed  # a symlinked folder is not followed


def test_list_files_under_a_folder_gives_paths_from_the_root(tools: CloneTools) -> None:
    assert tools.list_files("src") == "src/app.py\nsrc/same.py"


def test_list_files_pattern_matches_path_or_name(tools: CloneTools) -> None:
    assert tools.list_files(pattern="*.py") == "src/app.py\nsrc/same.py"
    assert tools.list_files(pattern="app.*") == "src/app.py"
    assert tools.list_files(pattern="*.rs") == "no files matching '*.rs' under ."


def test_list_files_is_capped(tools: CloneTools, root: Path) -> None:
    (root / "many").mkdir()
    for n in range(620):
        (root / "many" / f"f{n:04}.txt").write_text("")
    listed = tools.list_files("many").splitlines()
    assert len(listed) == 501
    assert listed[-1].startswith("… and 120 more")


def test_list_files_of_a_missing_folder(tools: CloneTools) -> None:
    with pytest.raises(ToolError, match="there is no 'nope'"):
        tools.list_files("nope")


def test_read_file_numbers_lines(tools: CloneTools) -> None:
    assert tools.read_file("src/app.py").splitlines()[:2] == [
        "   1| def add(a, b):",
        "   2|     return a + b",
    ]


def test_read_file_range_says_the_length(tools: CloneTools) -> None:
    text = tools.read_file("src/app.py", start_line=5, end_line=6)
    assert (
        text
        == "   5| def sub(a, b):\n   6|     return a - b\n[src/app.py has 6 lines; this shows 5-6]"
    )


def test_read_file_is_capped_and_says_how_to_read_on(root: Path) -> None:
    (root / "long.txt").write_text("".join(f"line {n}\n" for n in range(1, 1001)))
    tools = tools_for(root, max_read_lines=400)
    text = tools.read_file("long.txt", start_line=401).splitlines()
    assert text[0] == " 401| line 401" and text[399] == " 800| line 800"
    assert "has 1000 lines" in text[400] and "start_line=801" in text[400]
    assert "start_line" not in tools.read_file("long.txt", start_line=901)


def test_read_file_cuts_very_long_lines(tools: CloneTools, root: Path) -> None:
    (root / "min.js").write_text("x" * 5000 + "\n")
    assert tools.read_file("min.js").endswith("[… 4000 more characters]")


def test_read_file_out_of_range_says_the_length(tools: CloneTools) -> None:
    with pytest.raises(ToolError, match="has 6 lines; start_line=7 is past its end"):
        tools.read_file("src/app.py", start_line=7)
    with pytest.raises(ToolError, match="start_line must be 1 or more"):
        tools.read_file("src/app.py", start_line=0)
    with pytest.raises(ToolError, match="must not be before start_line"):
        tools.read_file("src/app.py", start_line=3, end_line=2)


def test_read_file_of_an_empty_file(tools: CloneTools, root: Path) -> None:
    (root / "empty.py").write_text("")
    assert tools.read_file("empty.py") == "empty.py is empty (0 lines)"


def test_read_file_missing_or_folder(tools: CloneTools) -> None:
    with pytest.raises(
        ToolError, match=re.escape("there is no file 'src/nope.py'; use list_files")
    ):
        tools.read_file("src/nope.py")
    with pytest.raises(ToolError, match="src is a folder"):
        tools.read_file("src")


def test_binary_files_are_not_read(tools: CloneTools) -> None:
    with pytest.raises(ToolError, match=re.escape("logo.png is a binary file")):
        tools.read_file("logo.png")
    with pytest.raises(ToolError, match="binary"):
        tools.edit_file("logo.png", "PNG", "GIF")
    assert "logo.png" not in tools.search("PNG")


def test_a_symlink_inside_the_clone_is_read_under_its_target(tools: CloneTools) -> None:
    assert tools.read_file("src/same.py") == tools.read_file("src/app.py")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_fifo_never_blocks(tools: CloneTools, root: Path) -> None:
    os.mkfifo(root / "pipe")
    with pytest.raises(ToolError, match="not a regular file"):
        tools.read_file("pipe")
    assert "return a + b" in tools.search("return a + b")


def test_search_finds_text_with_path_and_line(tools: CloneTools) -> None:
    assert tools.search("return a") == "src/app.py:2: return a + b\nsrc/app.py:6: return a - b"
    assert tools.search("nowhere") == "no matches for 'nowhere' under ."


def test_search_by_regex_and_under_a_path(tools: CloneTools) -> None:
    assert tools.search(r"def \w+\(a", path="src", regex=True).splitlines() == [
        "src/app.py:1: def add(a, b):",
        "src/app.py:5: def sub(a, b):",
    ]


def test_search_with_an_invalid_regex(tools: CloneTools) -> None:
    with pytest.raises(ToolError, match="invalid regular expression"):
        tools.search("def (", regex=True)


def test_search_is_capped_with_a_note(tools: CloneTools, root: Path) -> None:
    (root / "many.txt").write_text("hit\n" * 50)
    found = tools.search("hit", max_results=10).splitlines()
    assert len(found) == 11 and found[-1].startswith("[stopped at 10 matches")
    with pytest.raises(ToolError, match="max_results must be 1 to 500"):
        tools.search("hit", max_results=0)


def test_search_skips_git_symlinks_out_and_big_files(root: Path) -> None:
    (root / "big.txt").write_text("hooksPath\n" + "x" * 2000)
    tools = tools_for(root, max_file_bytes=1000)
    assert tools.search("hooksPath") == "no matches for 'hooksPath' under ."
    assert tools.search("TOP SECRET") == "no matches for 'TOP SECRET' under ."


def test_edit_file_replaces_and_says_which_lines(tools: CloneTools, root: Path) -> None:
    result = tools.edit_file("src/app.py", "return a - b", "result = a - b\n    return result")
    assert result == "edited src/app.py: lines 6-7 are new or changed; the file now has 7 lines"
    assert (root / "src" / "app.py").read_text().endswith("    return result\n")


def test_edit_file_with_wrong_indentation_still_edits(tools: CloneTools, root: Path) -> None:
    tools.edit_file("src/app.py", "def sub(a, b):\nreturn a - b", "def sub(a, b):\nreturn b - a")
    assert (root / "src" / "app.py").read_text().endswith("def sub(a, b):\n    return b - a\n")


def test_edit_file_miss_shows_the_closest_lines(tools: CloneTools) -> None:
    with pytest.raises(ToolError) as caught:
        tools.edit_file("src/app.py", "return a * b", "x")
    message = str(caught.value)
    assert message.startswith("the search text was not found in src/app.py")
    assert "|     return a" in message


def test_edit_file_keeps_crlf_and_bytes_that_are_not_utf8(tools: CloneTools, root: Path) -> None:
    (root / "win.txt").write_bytes(b"caf\xe9\r\nold\r\n")
    tools.edit_file("win.txt", "old\n", "new\nline\n")
    assert (root / "win.txt").read_bytes() == b"caf\xe9\r\nnew\r\nline\r\n"


def test_edit_file_that_changes_nothing(tools: CloneTools) -> None:
    assert tools.edit_file("README.md", "# Demo", "# Demo").startswith("no change to README.md")


def test_edit_of_a_missing_file_suggests_create_file(tools: CloneTools) -> None:
    with pytest.raises(ToolError, match=re.escape("src/new.py does not exist; use create_file")):
        tools.edit_file("src/new.py", "x", "y")


def test_edit_of_a_file_over_the_limit(root: Path) -> None:
    (root / "big.txt").write_text("x\n" * 1000)
    with pytest.raises(ToolError, match="over the 100-byte limit"):
        tools_for(root, max_file_bytes=100).edit_file("big.txt", "x", "y")


def test_create_file_makes_folders(tools: CloneTools, root: Path) -> None:
    assert (
        tools.create_file("pkg/sub/mod.py", "A = 1\nB = 2\n") == "created pkg/sub/mod.py (2 lines)"
    )
    assert (root / "pkg" / "sub" / "mod.py").read_text() == "A = 1\nB = 2\n"


def test_create_file_over_an_existing_one(tools: CloneTools, root: Path) -> None:
    with pytest.raises(ToolError, match="already exists; use edit_file"):
        tools.create_file("README.md", "new")
    assert tools.create_file("README.md", "new\n", overwrite=True) == "overwrote README.md (1 line)"
    assert (root / "README.md").read_text() == "new\n"


def test_create_file_on_a_folder(tools: CloneTools) -> None:
    with pytest.raises(ToolError, match="src is a folder"):
        tools.create_file("src", "x", overwrite=True)


OUTSIDE_PATHS = [
    "../../etc/passwd",
    "/etc/passwd",
    "../outside/secret.txt",
    "src/../../outside/secret.txt",
    "leak.txt",
    "relative_leak",
    "outdir/secret.txt",
    "outdir/../outside/secret.txt",
]


@pytest.mark.parametrize("path", OUTSIDE_PATHS)
def test_paths_outside_the_clone_are_refused(clone, path: str) -> None:
    tools, _, outside = clone
    before = sorted(p.name for p in outside.iterdir())
    for attempt in (
        lambda: tools.read_file(path),
        lambda: tools.list_files(path),
        lambda: tools.search("SECRET", path=path),
        lambda: tools.edit_file(path, "TOP SECRET", "owned"),
        lambda: tools.create_file(path, "owned"),
        lambda: tools.create_file(path, "owned", overwrite=True),
    ):
        with pytest.raises(ToolError, match="outside the repository"):
            attempt()
    assert (outside / "secret.txt").read_text() == SECRET
    assert sorted(p.name for p in outside.iterdir()) == before


def test_no_file_is_created_through_a_symlinked_folder(clone) -> None:
    tools, _, outside = clone
    with pytest.raises(ToolError, match="outside the repository"):
        tools.create_file("outdir/new/evil.sh", "echo owned")
    assert [p.name for p in outside.iterdir()] == ["secret.txt"]


def test_the_refusal_names_the_path(tools: CloneTools) -> None:
    with pytest.raises(ToolError, match=r"^path '\.\./\.\./etc/passwd' is outside the repository"):
        tools.read_file("../../etc/passwd")


@pytest.mark.parametrize("path", [".git/config", "./.git/config", "src/../.git/config", ".GIT/x"])
def test_git_folder_is_refused(tools: CloneTools, root: Path, path: str) -> None:
    with pytest.raises(ToolError, match=re.escape("inside .git")):
        tools.read_file(path)
    with pytest.raises(ToolError, match=re.escape("inside .git")):
        tools.create_file(path, "x", overwrite=True)
    assert "evil" in (root / ".git" / "config").read_text()


def test_a_symlink_into_git_is_refused(tools: CloneTools, root: Path) -> None:
    (root / "gitconfig").symlink_to(".git/config")
    with pytest.raises(ToolError, match=re.escape("inside .git")):
        tools.read_file("gitconfig")


def test_protected_paths_are_not_written(tools: CloneTools, root: Path) -> None:
    workflow = root / ".github" / "workflows" / "ci.yml"
    with pytest.raises(ToolError) as caught:
        tools.edit_file(".github/workflows/ci.yml", "push", "pull_request")
    assert "'.github/workflows/**'" in str(caught.value)
    with pytest.raises(ToolError, match="protected"):
        tools.create_file(".github/workflows/new.yml", "on: push\n")
    with pytest.raises(
        ToolError, match=re.escape("workflow.yml leads to .github/workflows/ci.yml")
    ):
        tools.edit_file("workflow.yml", "push", "pull_request")
    assert workflow.read_text() == "on: push\n"
    assert not (root / ".github" / "workflows" / "new.yml").exists()
    assert tools.read_file(".github/workflows/ci.yml") == "   1| on: push"


def test_protected_rule_without_patterns_names_the_setting(root: Path) -> None:
    tools = CloneTools(root, protected=lambda path: path == "README.md")
    with pytest.raises(ToolError, match=re.escape("protected_paths of .github/nimbus.yml")):
        tools.edit_file("README.md", "Demo", "x")


def test_a_symlink_out_is_named_as_such(tools: CloneTools) -> None:
    with pytest.raises(ToolError, match="a symlink in it leads out of the clone"):
        tools.read_file("leak.txt")


def test_a_path_no_file_can_have_is_refused(tools: CloneTools) -> None:
    for path in ("\ud800", "a\0b"):
        with pytest.raises(ToolError, match="path"):
            tools.read_file(path)


def test_a_submodule_git_file_is_neither_listed_nor_read(tools: CloneTools, root: Path) -> None:
    (root / "vendor").mkdir()
    (root / "vendor" / ".git").write_text("gitdir: ../.git/modules/vendor\n")
    (root / "vendor" / "lib.py").write_text("gitdir = 1\n")
    assert tools.list_files("vendor") == "vendor/lib.py"
    assert tools.search("gitdir") == "vendor/lib.py:1: gitdir = 1"
    with pytest.raises(ToolError, match=re.escape("inside .git")):
        tools.read_file("vendor/.git")


def test_search_counts_lines_as_read_file_does(tools: CloneTools, root: Path) -> None:
    (root / "odd.txt").write_text("a\x0cb\nneedle\n")
    assert tools.search("needle") == "odd.txt:2: needle"
    assert tools.read_file("odd.txt", start_line=2).startswith("   2| needle")


def test_a_symlink_loop_is_refused(tools: CloneTools, root: Path) -> None:
    (root / "loop").symlink_to("loop")
    with pytest.raises(ToolError):
        tools.read_file("loop")


def test_tool_specs_describe_the_five_tools() -> None:
    assert [spec["name"] for spec in TOOL_SPECS] == [
        "list_files",
        "read_file",
        "search",
        "edit_file",
        "create_file",
    ]
    for spec in TOOL_SPECS:
        assert set(spec) == {"name", "description", "parameters"}
        schema = spec["parameters"]
        assert schema["type"] == "object" and schema["additionalProperties"] is False
        assert set(schema["required"]) <= set(schema["properties"])
        signature = inspect.signature(getattr(CloneTools, spec["name"]))
        arguments = [name for name in signature.parameters if name != "self"]
        assert list(schema["properties"]) == arguments
        required = [
            name
            for name, parameter in signature.parameters.items()
            if name != "self" and parameter.default is inspect.Parameter.empty
        ]
        assert schema["required"] == required


def test_call_dispatches(tools: CloneTools) -> None:
    assert tools.call("read_file", {"path": "README.md"}) == "   1| # Demo"
    assert tools.call("search", {"pattern": "Demo", "regex": False, "max_results": 5.0}) == (
        "README.md:1: # Demo"
    )
    # Models send null for optional arguments they mean to leave out.
    assert tools.call("list_files", {"path": "src", "pattern": None}).startswith("src/app.py")


@pytest.mark.parametrize(
    ("name", "arguments", "message"),
    [
        ("rm_rf", {}, "there is no tool 'rm_rf'; the tools are list_files, read_file, search"),
        ("read_file", {}, "read_file needs the argument 'path'"),
        ("read_file", {"path": None}, "read_file: argument 'path' must be a string"),
        ("read_file", {"path": "a", "lines": 3}, "read_file has no argument 'lines'"),
        ("read_file", {"path": 3}, "argument 'path' must be a string, not int 3"),
        ("read_file", {"path": "a", "start_line": "2"}, "'start_line' must be an integer"),
        ("read_file", {"path": "a", "start_line": True}, "'start_line' must be an integer"),
        ("read_file", {"path": "a", "start_line": 1.5}, "'start_line' must be an integer"),
        ("search", {"pattern": "x", "regex": "yes"}, "'regex' must be a boolean"),
        ("edit_file", {"path": "a", "search": "x"}, "edit_file needs the argument 'replace'"),
        ("create_file", ["a", "b"], "create_file takes a JSON object of arguments"),
    ],
)
def test_call_validates_arguments(tools: CloneTools, name: str, arguments, message: str) -> None:
    with pytest.raises(ToolError) as caught:
        tools.call(name, arguments)
    assert message in str(caught.value)


@pytest.fixture(scope="module")
def shared_clone(tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("hostile")
    root, outside = make_clone(base)
    (base / "sibling.txt").write_text(SECRET)
    yield tools_for(root), root, base, outside
    shutil.rmtree(base)


PARTS = st.sampled_from(
    [
        *["..", ".", "", "src", "app.py", "leak.txt", "relative_leak", "outdir", "outside"],
        *["repo", "secret.txt", "sibling.txt", ".git", "config", "etc", "passwd", "new", "~"],
    ]
)


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(parts=st.lists(PARTS, min_size=1, max_size=6), absolute=st.booleans())
def test_no_generated_path_reaches_outside_the_root(shared_clone, parts, absolute) -> None:
    tools, root, base, outside = shared_clone
    path = ("/" if absolute else "") + "/".join(parts)
    where = Path(os.path.realpath(os.path.join(root, path)))
    try:
        tools.read_file(path)
    except ToolError:
        pass
    else:
        # Whatever was read is where the system itself would find that path: inside the root.
        assert where.is_relative_to(root.resolve()) and ".git" not in where.parts
    for attempt in (
        lambda: tools.read_file(path),
        lambda: tools.search("SECRET", path=path),
        lambda: tools.list_files(path),
        lambda: tools.edit_file(path, "TOP SECRET", "owned"),
        lambda: tools.create_file(path, "owned", overwrite=True),
    ):
        try:
            answer = attempt()
        except ToolError:
            continue
        assert "TOP SECRET" not in answer and "hooksPath" not in answer
    assert (outside / "secret.txt").read_text() == SECRET
    assert (base / "sibling.txt").read_text() == SECRET
    assert sorted(p.name for p in base.iterdir()) == ["outside", "repo", "sibling.txt"]
    assert [p.name for p in outside.iterdir()] == ["secret.txt"]
    assert "evil" in (root / ".git" / "config").read_text()
