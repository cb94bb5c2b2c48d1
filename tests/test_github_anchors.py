"""Placing review findings on lines of the diff that GitHub accepts (FACTS 5, DESIGN §3)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from bot.github.anchors import Finding, PrFile, anchor, commentable_lines, summary_with

# Old lines 1-4 become new lines 1-4 (line 2 replaced); old 20-22 become new 20-24.
TWO_HUNKS = (
    "@@ -1,4 +1,4 @@\n"
    " import os\n"
    "-import sys\n"
    "+import re\n"
    " \n"
    " x = 1\n"
    "@@ -20,3 +20,5 @@ def main():\n"
    "     a = 1\n"
    "+    b = 2\n"
    "+    c = 3\n"
    "     return a\n"
    " # end\n"
)
DELETED = "@@ -1,3 +0,0 @@\n-one\n-two\n-three\n"
NO_NEWLINE = (
    "@@ -1,2 +1,2 @@\n a\n-b\n\\ No newline at end of file\n+c\n\\ No newline at end of file"
)


def comment(path: str, line: int, body: str, side: str = "RIGHT") -> dict[str, object]:
    return {"path": path, "line": line, "side": side, "body": body}


def test_added_and_context_lines_are_right_removed_lines_are_left():
    lines = commentable_lines(TWO_HUNKS)
    assert lines["RIGHT"] == {1, 2, 3, 4, 20, 21, 22, 23, 24}
    assert lines["LEFT"] == {2}


def test_deleted_file_has_only_left_lines():
    assert commentable_lines(DELETED) == {"RIGHT": set(), "LEFT": {1, 2, 3}}


def test_no_newline_marker_is_not_a_line():
    assert commentable_lines(NO_NEWLINE) == {"RIGHT": {1, 2}, "LEFT": {2}}


def test_malformed_patch_has_no_commentable_lines():
    # The header promises three lines and only one follows.
    assert commentable_lines("@@ -1,3 +1,3 @@\n a\n") == {"RIGHT": set(), "LEFT": set()}
    assert commentable_lines("") == {"RIGHT": set(), "LEFT": set()}


def test_lines_in_the_second_hunk_are_anchored():
    findings = [Finding("app.py", 22, "c is unused"), Finding("app.py", 2, "why sys?", side="LEFT")]
    comments, moved = anchor(findings, [PrFile("app.py", TWO_HUNKS)])
    assert comments == [
        comment("app.py", 22, "c is unused"),
        comment("app.py", 2, "why sys?", "LEFT"),
    ]
    assert moved == []


def test_lines_between_hunks_are_moved():
    finding = Finding("app.py", 10, "between the hunks")
    assert anchor([finding], [PrFile("app.py", TWO_HUNKS)]) == ([], [finding])


def test_right_finding_on_a_removed_line_number_is_not_moved_to_left():
    # Line 3 of the old file was removed; the new file has no line 3 in the diff.
    patch = "@@ -1,3 +1,2 @@\n a\n b\n-c\n"
    finding = Finding("f.py", 3, "about c")
    assert anchor([finding], [PrFile("f.py", patch)]) == ([], [finding])


def test_renamed_file_is_found_by_either_path_and_anchored_on_the_new_one():
    renamed = PrFile("new.py", TWO_HUNKS, status="renamed", previous_path="old.py")
    findings = [Finding("old.py", 1, "by old path"), Finding("new.py", 21, "by new path")]
    comments, moved = anchor(findings, [renamed])
    assert comments == [comment("new.py", 1, "by old path"), comment("new.py", 21, "by new path")]
    assert moved == []


def test_a_new_file_keeps_its_path_when_another_was_renamed_away_from_it():
    renamed = PrFile("b.py", DELETED, status="renamed", previous_path="a.py")
    added = PrFile("a.py", "@@ -0,0 +1 @@\n+new\n", status="added")
    comments, _ = anchor([Finding("a.py", 1, "x")], [renamed, added])
    assert comments == [comment("a.py", 1, "x")]


def test_deleted_file_takes_only_left_comments():
    deleted = PrFile("gone.py", DELETED, status="removed")
    right, left = Finding("gone.py", 2, "right"), Finding("gone.py", 2, "left", side="LEFT")
    assert anchor([right, left], [deleted]) == ([comment("gone.py", 2, "left", "LEFT")], [right])


def test_binary_file_without_patch_line_none_and_unknown_path_are_moved():
    findings = [
        Finding("logo.png", 1, "too big"),
        Finding("app.py", None, "overall"),
        Finding("elsewhere.py", 1, "not in this PR"),
    ]
    files = [PrFile("logo.png", None), PrFile("app.py", TWO_HUNKS)]
    assert anchor(findings, files) == ([], findings)


def test_duplicates_are_dropped_and_order_is_kept():
    a, b = Finding("app.py", 21, "a"), Finding("app.py", 1, "b")
    outside = Finding("app.py", 10, "outside")
    comments, moved = anchor([a, b, a, outside, b, outside], [PrFile("app.py", TWO_HUNKS)])
    assert comments == [comment("app.py", 21, "a"), comment("app.py", 1, "b")]
    assert moved == [outside]


def test_summary_lists_moved_findings_and_unreviewed_files():
    moved = [Finding("app.py", 10, "between hunks"), Finding("app.py", None, "two\nlines")]
    left_out = [("logo.png", "no diff"), ("old.py", "only lines removed"), ("b.png", "no diff")]
    assert summary_with("Looks good.", moved, left_out) == (
        "Looks good.\n\n"
        "### Comments on lines outside the diff\n\n"
        "- app.py:10 — between hunks\n"
        "- app.py — two\n  lines\n\n"
        "### Not reviewed\n\n"
        "No diff (2 files):\n- `logo.png`\n- `b.png`\n\n"
        "Only lines removed (1 file):\n- `old.py`"
    )


def test_summary_names_a_bounded_number_of_unreviewed_files():
    left_out = [(f"src/m{i}.py", "over the budget") for i in range(100)]
    summary = summary_with("", [], left_out)
    assert summary.startswith("### Not reviewed\n\nOver the budget (100 files):\n- `src/m0.py`")
    assert "`src/m29.py`" in summary and "`src/m30.py`" not in summary
    assert summary.endswith("- and 70 more")


def test_summary_leaves_out_empty_sections():
    assert summary_with("Looks good.", [], []) == "Looks good."
    assert summary_with("", [], [("a.bin", "binary")]) == (
        "### Not reviewed\n\nBinary (1 file):\n- `a.bin`"
    )


def hunk_lines() -> st.SearchStrategy[list[str]]:
    return st.lists(st.sampled_from(["+", "-", " "]), min_size=1, max_size=8)


@st.composite
def patches(draw: st.DrawFn) -> str:
    """A well-formed hunks-only patch of one to three hunks."""
    text, old, new = "", draw(st.integers(1, 5)), draw(st.integers(1, 5))
    for _ in range(draw(st.integers(1, 3))):
        kinds = draw(hunk_lines())
        old_len = sum(kind != "+" for kind in kinds)
        new_len = sum(kind != "-" for kind in kinds)
        text += f"@@ -{old},{old_len} +{new},{new_len} @@\n"
        text += "".join(f"{kind}line\n" for kind in kinds)
        gap = draw(st.integers(1, 5))
        old, new = old + old_len + gap, new + new_len + gap
    return text


PATHS = ["a.py", "b.py", "old.py", "c.bin", "missing.py"]
findings_strategy = st.lists(
    st.builds(
        Finding,
        path=st.sampled_from(PATHS),
        line=st.none() | st.integers(0, 40),
        body=st.sampled_from(["x", "y"]),
        side=st.sampled_from(["RIGHT", "LEFT"]),
    ),
    max_size=20,
)


@given(findings_strategy, patches(), patches() | st.sampled_from(["", "@@ -1 +1 @@\n"]))
def test_every_comment_names_a_commentable_line_and_every_finding_goes_one_way(
    findings: list[Finding], patch_a: str, patch_b: str
):
    files = [
        PrFile("a.py", patch_a),
        PrFile("b.py", patch_b, status="renamed", previous_path="old.py"),
        PrFile("c.bin", None),
    ]
    patch_of = {file.path: file.patch for file in files}
    comments, moved = anchor(findings, files)
    for c in comments:
        patch = patch_of[str(c["path"])]
        assert patch is not None
        assert c["line"] in commentable_lines(patch)[str(c["side"])]
    new_path = {"old.py": "b.py"}
    for f in findings:
        inline = comment(new_path.get(f.path, f.path), f.line or 0, f.body, f.side) in comments
        assert inline != (f in moved)
    assert len(comments) == len({(c["path"], c["line"], c["side"], c["body"]) for c in comments})


@given(st.text())
def test_any_text_as_patch_never_raises(text: str):
    lines = commentable_lines(text)
    assert set(lines) == {"RIGHT", "LEFT"}
