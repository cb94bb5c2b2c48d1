"""Reading test runners' output and judging a run against the baseline (DESIGN §2)."""

from __future__ import annotations

# Imported under another name: pytest would try to collect a class called `Test…`.
from bot.testresults import TestRun as Run
from bot.testresults import Verdict, failed_tests, judge, trim_output

PYTEST_OUTPUT = """\
============================= test session starts ==============================
collected 5 items

tests/test_x.py .F.                                                      [ 60%]
tests/test_w.py F                                                        [ 80%]

=================================== FAILURES ===================================
___________________________________ test_y ____________________________________

    def test_y():
>       assert add(1, 2) == 4
E       AssertionError

tests/test_x.py:7: AssertionError
=========================== short test summary info ============================
FAILED tests/test_x.py::test_y - AssertionError
FAILED tests/test_w.py::TestW::test_v
ERROR tests/test_z.py - ModuleNotFoundError: No module named 'nope'
ERROR tests/test_e.py
2 failed, 1 passed, 2 errors in 0.12s
"""

GO_OUTPUT = """\
=== RUN   TestAdd
--- PASS: TestAdd (0.00s)
=== RUN   TestX
    x_test.go:12: got 3, want 4
--- FAIL: TestX (0.00s)
=== RUN   TestTable
=== RUN   TestTable/negative
    --- FAIL: TestTable/negative (0.00s)
--- FAIL: TestTable (0.00s)
FAIL
FAIL\texample.com/calc\t0.003s
FAIL
"""

CARGO_OUTPUT = """\
running 3 tests
test foo::adds ... ok
test foo::bar ... FAILED
test baz ... FAILED

failures:

---- foo::bar stdout ----
thread 'foo::bar' panicked at src/lib.rs:10:9:
assertion `left == right` failed

failures:
    foo::bar
    baz

test result: FAILED. 1 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out
"""

TAP_OUTPUT = """\
TAP version 13
# Subtest: adds
ok 1 - adds
# Subtest: multiplies
not ok 2 - multiplies
  ---
  duration_ms: 0.5
  ...
not ok 3 - divides by zero
1..3
# pass 1
# fail 2
"""


def run(exit_code: int | None, *names: str, timed_out: bool = False) -> Run:
    return Run(exit_code, frozenset(names), timed_out)


def test_pytest_short_summary_names_failures_and_errors():
    assert failed_tests(PYTEST_OUTPUT) == {
        "tests/test_x.py::test_y",
        "tests/test_w.py::TestW::test_v",
        "tests/test_z.py",
        "tests/test_e.py",
    }


def test_pytest_parametrized_id_with_a_space_is_named():
    output = "FAILED tests/test_p.py::test_p[a b] - AssertionError: assert 'a b' == 'c'\n"
    assert failed_tests(output) == {"tests/test_p.py::test_p[a b]"}


def test_pytest_progress_lines_are_not_failures():
    output = "tests/test_x.py::test_y FAILED                                 [ 50%]\n"
    assert failed_tests(output) == frozenset()


def test_go_test_failures_include_subtests():
    assert failed_tests(GO_OUTPUT) == {"TestX", "TestTable", "TestTable/negative"}


def test_cargo_test_failures():
    assert failed_tests(CARGO_OUTPUT) == {"foo::bar", "baz"}


def test_tap_not_ok_lines():
    assert failed_tests(TAP_OUTPUT) == {"multiplies", "divides by zero"}


def test_output_without_named_failures_gives_no_names():
    assert failed_tests("") == frozenset()
    assert failed_tests("Segmentation fault (core dumped)\n") == frozenset()
    assert failed_tests("5 passed in 0.01s\n") == frozenset()


def test_test_run_survives_json():
    original = run(1, "b", "a", timed_out=False)
    assert original.to_json() == {"exit_code": 1, "failures": ["a", "b"], "timed_out": False}
    assert Run.from_json(original.to_json()) == original
    assert Run.from_json({"exit_code": 0, "failures": []}) == run(0)


def test_exit_zero_passes():
    assert judge(run(0), None) == Verdict(True, (), (), "tests passed")
    assert judge(run(0), run(1, "t")).passed


def test_timed_out_run_fails_even_with_exit_zero():
    assert not run(0, timed_out=True).passed
    verdict = judge(run(None, timed_out=True), run(0))
    assert not verdict.passed
    assert "timed out" in verdict.summary


def test_timed_out_run_fails_even_when_baseline_failed_the_same_way():
    verdict = judge(run(None, timed_out=True), run(None, timed_out=True))
    assert not verdict.passed


def test_any_failure_counts_when_baseline_passed():
    verdict = judge(run(1, "tests/test_a.py::t2", "tests/test_a.py::t1"), run(0))
    assert not verdict.passed
    assert verdict.new_failures == ("tests/test_a.py::t1", "tests/test_a.py::t2")
    assert verdict.preexisting == ()
    assert verdict.summary == "tests fail: tests/test_a.py::t1, tests/test_a.py::t2"


def test_any_failure_counts_without_a_baseline():
    verdict = judge(run(1, "t"), None)
    assert (verdict.passed, verdict.new_failures) == (False, ("t",))


def test_unnamed_failure_after_passing_baseline_names_the_exit_code():
    verdict = judge(run(2), run(0))
    assert not verdict.passed
    assert verdict.summary == "tests fail (exit code 2)"


def test_new_failures_are_told_apart_from_preexisting_ones():
    verdict = judge(run(1, "old", "new"), run(1, "old", "fixed-since"))
    assert not verdict.passed
    assert verdict.new_failures == ("new",)
    assert verdict.preexisting == ("old",)
    assert verdict.summary == "new failures: new"


def test_only_preexisting_failures_pass():
    verdict = judge(run(1, "old"), run(1, "old", "other"))
    assert verdict.passed
    assert verdict.new_failures == ()
    assert verdict.preexisting == ("old",)
    assert "no new failures" in verdict.summary
    assert "1 failed before" in verdict.summary


def test_both_runs_failing_without_names_pass_and_say_so():
    verdict = judge(run(1), run(1))
    assert verdict.passed
    assert "could be told apart" in verdict.summary
    assert "exit code 1" in verdict.summary


def test_unnamed_failure_when_baseline_named_its_failures_fails():
    """A crash that names no test (collection error) must not hide behind old failures."""
    verdict = judge(run(2), run(1, "old"))
    assert not verdict.passed
    assert verdict.summary == "tests fail (exit code 2)"


def test_named_failures_when_baseline_named_none_are_all_new():
    verdict = judge(run(1, "a"), run(1))
    assert not verdict.passed
    assert verdict.new_failures == ("a",)


def test_long_failure_lists_are_shortened():
    names = [f"t{i:02d}" for i in range(13)]
    verdict = judge(run(1, *names), run(0))
    assert verdict.summary == "tests fail: " + ", ".join(names[:10]) + " and 3 more"
    assert len(verdict.new_failures) == 13


def test_short_output_is_kept_whole():
    assert trim_output("abc", limit=3) == "abc"
    assert trim_output("", limit=3) == ""


def test_long_output_keeps_its_end():
    output = "".join(f"line {i}\n" for i in range(1000))
    trimmed = trim_output(output, limit=100)
    assert trimmed.startswith("[… earlier output cut …]\n")
    assert trimmed.endswith("line 999\n")
    assert trimmed.removeprefix("[… earlier output cut …]\n") == output[-100:]
    assert "line 0\n" not in trimmed
