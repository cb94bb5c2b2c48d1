"""Localization benchmark: does the repository index rank the files a fix touched near the top?

Measures bot/index on SWE-bench Lite (the rows of `../shared/bench/swebench-lite-localization.jsonl`
next to this repository, or `--data FILE`): for each task, the repository is checked out at the
task's base commit, indexed (bot.index.build.index_tree, with one SQLite cache for the whole run, so
a repository's later commits reuse the blobs of its earlier ones; tasks run oldest commit first),
and its files are ranked for the issue's text (bot.index.rank.rank_files). A task is a hit at k when
a file its fix touched (its gold files) is among the first k files of the ranking.

The baseline, on the same indexed files in the same run: plain BM25 over whole files (each file's
identifiers, split into terms by rank.terms_of; no path or definition weighting, no reference
graph, no priors), scored with rank.bm25 against rank.query_terms of the issue's text.

Then, on the largest repository covered (by bytes indexed, at its newest task's commit; not by
files, where pylint's thousands of tiny test files would win): a full index with a cold cache
against `ctags -R` on the same checkout (median of --runs, taking turns), the index without worker
processes, an unchanged re-index (the index kept in memory, and the disk cache alone) and a
re-index ~10 commits later (warm blob cache).

Repositories come from a folder of bare mirrors, DIR/<owner>/<name>.git; make one with

    git clone --mirror https://github.com/<owner>/<name> DIR/<owner>/<name>.git

Repositories without a mirror are skipped (and listed). Each repository is cloned once into a
temporary folder with `git clone --shared --no-checkout`, then checked out commit by commit.

    /tmp/venv/bin/python bench/localization.py --mirrors /tmp/mirrors            # every task
    /tmp/venv/bin/python bench/localization.py --mirrors /tmp/mirrors --quick    # 3 per repository
    /tmp/venv/bin/python bench/localization.py --mirrors /tmp/mirrors --repos psf/requests \\
        --max-per-repo 10 --runs 5
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import BenchError, cpu_model, give_up, leave_scratch  # noqa: E402
from bot.git import Git  # noqa: E402
from bot.index import build, rank  # noqa: E402
from bot.index.languages import PARSED, parser  # noqa: E402
from bot.redact import Redactor  # noqa: E402
from bot.runner import Runner  # noqa: E402

DATA = ROOT.parent / "shared" / "bench" / "swebench-lite-localization.jsonl"
MIRROR_HINT = "git clone --mirror https://github.com/<owner>/<name> DIR/<owner>/<name>.git"
KS = (1, 5, 10)
QUICK_PER_REPO = 3
# The targets.
TARGET_POINTS_AT_5 = 10.0
TARGET_CTAGS_RATIO = 3.0
TARGET_UNCHANGED_SHARE = 0.10
# How far after the timed commit the incremental re-index checks out (first-parent commits).
LATER_COMMITS = 10
GIT_TIMEOUT = 300
# Git as Nimbus runs it on a clone (bot/git.py `_SAFE`).
SAFE = ("-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false")


@dataclass(frozen=True)
class Task:
    instance_id: str
    repo: str
    commit: str
    problem: str
    gold: tuple[str, ...]


@dataclass(frozen=True)
class Outcome:
    """One task: where each gold file ranks (1-based; None when not indexed), and the costs."""

    task: Task
    files: int
    size: int  # bytes of the indexed files
    read: int
    reused: int
    index_seconds: float
    rank_seconds: float
    baseline_seconds: float
    index_ranks: tuple[int | None, ...]
    baseline_ranks: tuple[int | None, ...]
    index_top: tuple[str, ...]


def progress(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def git(*args: str, cwd: Path, timeout: float = GIT_TIMEOUT) -> str:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": os.environ.get("LANG", "C.UTF-8"),
        "HOME": str(cwd),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_TERMINAL_PROMPT": "0",
    }
    try:
        done = subprocess.run(
            ["git", *SAFE, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"git {' '.join(args)} took over {timeout:.0f} s in {cwd}") from exc
    if done.returncode != 0:
        raise BenchError(f"git {' '.join(args)} failed in {cwd.name}: {done.stderr.strip()}")
    return done.stdout


def load_tasks(path: Path) -> list[Task]:
    if not path.is_file():
        raise BenchError(
            f"no task file at {path}: pass --data FILE (JSON lines with instance_id, repo,"
            " base_commit, problem_statement, gold_files)"
        )
    tasks = []
    for line in path.read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            tasks.append(
                Task(
                    row["instance_id"],
                    row["repo"],
                    row["base_commit"],
                    row["problem_statement"],
                    tuple(row["gold_files"]),
                )
            )
    return tasks


def mirror_of(mirrors: Path, repo: str) -> Path:
    owner, name = repo.split("/", 1)
    return mirrors / owner / f"{name}.git"


def select(
    tasks: list[Task], mirrors: Path, repos: list[str], per_repo: int
) -> tuple[dict[str, list[Task]], Counter[str]]:
    """The tasks to run by repository (file order, at most `per_repo` each), and those skipped."""
    known = dict.fromkeys(t.repo for t in tasks)
    unknown = [r for r in repos if r not in known]
    if unknown:
        raise BenchError(f"--repos: no tasks for {', '.join(unknown)}; known: {', '.join(known)}")
    chosen: dict[str, list[Task]] = {}
    skipped: Counter[str] = Counter()
    for task in tasks:
        if repos and task.repo not in repos:
            continue
        if not mirror_of(mirrors, task.repo).exists():
            skipped[task.repo] += 1
            continue
        group = chosen.setdefault(task.repo, [])
        if not per_repo or len(group) < per_repo:
            group.append(task)
    return chosen, skipped


def checkout(work: Path, commit: str) -> None:
    git("checkout", "-q", "-f", commit, cwd=work)
    # What an earlier commit left untracked would reach ctags (the index reads tracked files).
    git("clean", "-q", "-f", "-d", "-x", cwd=work)


@functools.cache
def product_git() -> Git:
    """Git as Nimbus runs it (its runner, hooks off), with a home of its own for the run."""
    home = Path(tempfile.mkdtemp(prefix="nimbus-bench-git-home-"))
    return Git(Runner(), Redactor(), home=home, timeout=300, author="Bench <bench@localhost>")


def index_at(work: Path, commit: str, cache: Path, *, parallel: bool = True) -> build.RepoIndex:
    """The index of the checked-out `commit` exactly as INDEXING builds it (build_index)."""
    index = asyncio.run(build.build_index(work, product_git(), cache, parallel=parallel))
    if index.commit != commit:
        raise BenchError(f"{work.name} is at {index.commit[:12]}, not at {commit[:12]}")
    return index


def baseline_ranking(index: build.RepoIndex, text: str) -> list[str]:
    """Plain BM25 over each file's whole-text terms; files that score nothing come last."""
    docs: dict[str, Counter[str]] = {}
    for path, file in index.files.items():
        doc: Counter[str] = Counter()
        for word, count in file.symbols.words.items():
            for term in rank.terms_of(word):
                doc[term] += count
        docs[path] = doc
    scores = rank.bm25(docs, rank.query_terms(text))
    return sorted(index.files, key=lambda path: (-scores.get(path, 0.0), path))


def ranks_of(order: Sequence[str], gold: Sequence[str]) -> tuple[int | None, ...]:
    position = {path: n for n, path in enumerate(order, 1)}
    return tuple(position.get(path) for path in gold)


def run_task(work: Path, task: Task, cache: Path) -> Outcome:
    checkout(work, task.commit)
    started = time.perf_counter()
    index = index_at(work, task.commit, cache)
    index_seconds = time.perf_counter() - started
    started = time.perf_counter()
    ranked = [r.path for r in rank.rank_files(index, task.problem)]
    rank_seconds = time.perf_counter() - started
    started = time.perf_counter()
    baseline = baseline_ranking(index, task.problem)
    baseline_seconds = time.perf_counter() - started
    return Outcome(
        task,
        len(index.files),
        sum(f.size for f in index.files.values()),
        index.read,
        index.reused,
        index_seconds,
        rank_seconds,
        baseline_seconds,
        ranks_of(ranked, task.gold),
        ranks_of(baseline, task.gold),
        tuple(ranked[:3]),
    )


def clone_all(chosen: dict[str, list[Task]], mirrors: Path, root: Path) -> dict[str, Path]:
    """Clone each repository once; the checkouts, by repository."""
    works = {}
    for repo in chosen:
        work = root / "checkouts" / repo.replace("/", "__")
        work.parent.mkdir(parents=True, exist_ok=True)
        mirror = str(mirror_of(mirrors, repo))
        git("clone", "-q", "--shared", "--no-checkout", mirror, str(work), cwd=root)
        works[repo] = work
    return works


def by_date(work: Path, tasks: list[Task]) -> list[Task]:
    """The tasks, oldest base commit first (as a service following the repository would index)."""
    shown = git(
        "log", "--no-walk=unsorted", "--format=%H %ct", *{t.commit for t in tasks}, cwd=work
    )
    when = {sha: int(ct) for sha, ct in (line.split() for line in shown.splitlines())}
    return sorted(tasks, key=lambda t: (when.get(t.commit, 0), t.instance_id))


def localize(
    chosen: dict[str, list[Task]], works: dict[str, Path], cache: Path
) -> tuple[dict[str, list[Outcome]], dict[Task, str]]:
    """Every task's outcome by repository, and why the tasks without one have none."""
    results: dict[str, list[Outcome]] = {repo: [] for repo in chosen}
    failed: dict[Task, str] = {}
    for repo, group in chosen.items():
        ordered = by_date(works[repo], group)
        for n, task in enumerate(ordered, 1):
            where = f"{repo} {n}/{len(ordered)} {task.instance_id}"
            try:
                outcome = run_task(works[repo], task, cache)
            except BenchError as exc:
                # A mirror may lack an object (snapshots leave out the largest files).
                failed[task] = f"not run: {str(exc).splitlines()[0]}"
                progress(f"{where}: {failed[task]}")
                continue
            except Exception as exc:
                # The product failed on this task: a finding to list, not the end of the run.
                frame = traceback.extract_tb(exc.__traceback__)[-1]
                failed[task] = (
                    f"crashed: {type(exc).__name__}: {exc} at"
                    f" {Path(frame.filename).name}:{frame.lineno} ({frame.name})"
                )
                progress(f"{where}: {failed[task]}")
                continue
            results[repo].append(outcome)
            progress(
                f"{where}: gold at index"
                f" #{'/'.join(map(str, outcome.index_ranks))}, bm25"
                f" #{'/'.join(map(str, outcome.baseline_ranks))} ({outcome.files} files,"
                f" {outcome.read} read, index {outcome.index_seconds:.2f} s, rank"
                f" {outcome.rank_seconds:.2f} s)"
            )
    return results, failed


def hit(ranks: Sequence[int | None], k: int) -> bool:
    return any(r is not None and r <= k for r in ranks)


def task_recall(outcomes: Sequence[Outcome], k: int, baseline: bool = False) -> float:
    if not outcomes:
        return 0.0
    got = [hit(o.baseline_ranks if baseline else o.index_ranks, k) for o in outcomes]
    return sum(got) / len(got)


def file_recall(outcomes: Sequence[Outcome], k: int, baseline: bool = False) -> float:
    ranks = [r for o in outcomes for r in (o.baseline_ranks if baseline else o.index_ranks)]
    return sum(1 for r in ranks if r is not None and r <= k) / len(ranks) if ranks else 0.0


def pct(value: float) -> str:
    return f"{100 * value:.1f}"


def points(a: float, b: float) -> str:
    return f"{100 * (a - b):+.1f}"


def seconds(values: Sequence[float]) -> str:
    return f"{statistics.median(values):.2f}" if values else "-"


def localization_report(results: dict[str, list[Outcome]], failed: dict[Task, str]) -> list[str]:
    everything = [o for outcomes in results.values() for o in outcomes]
    header = (
        f"{'repository':<22} {'tasks':>5} {'failed':>6} {'files':>6} {'index s':>8}"
        f" {'index @1':>9} {'@5':>6} {'@10':>6}   {'bm25 @1':>8} {'@5':>6} {'@10':>6}"
        f" {'diff @5':>8}"
    )
    lines = [
        "",
        "Localization: recall@k = % of tasks with a gold file among the first k files ranked",
        header,
        "-" * len(header),
    ]
    rows = [*results.items(), ("all", everything)]
    for name, outcomes in rows:
        if name == "all":
            lines.append("-" * len(header))
        lost = sum(1 for task in failed if name in (task.repo, "all"))
        if not outcomes:
            lines.append(f"{name:<22} {0:>5} {lost:>6}   (no task with a result)")
            continue
        ours = [task_recall(outcomes, k) for k in KS]
        theirs = [task_recall(outcomes, k, baseline=True) for k in KS]
        lines.append(
            f"{name:<22} {len(outcomes):>5} {lost:>6}"
            f" {statistics.median(o.files for o in outcomes):>6.0f}"
            f" {seconds([o.index_seconds for o in outcomes]):>8}"
            f" {pct(ours[0]):>9} {pct(ours[1]):>6} {pct(ours[2]):>6}  "
            f" {pct(theirs[0]):>8} {pct(theirs[1]):>6} {pct(theirs[2]):>6}"
            f" {points(ours[1], theirs[1]):>8}"
        )
    gold = sum(len(o.task.gold) for o in everything)
    missing = [o.task.instance_id for o in everything if None in o.index_ranks]
    lines += [
        "  tasks    tasks with a result; failed: tasks without one (listed below)",
        "  files    indexed files (median over the tasks)",
        "  index s  median seconds to index a task's commit: git ls-tree + index_tree, the cache",
        "           warm with the repository's earlier tasks (oldest commit first)",
        "  index    rank_files: BM25 over paths, definitions and text, mentions, reference graph",
        "  bm25     the baseline: rank.bm25 over whole-file identifiers (rank.terms_of), no path",
        "           or definition weights, no graph, no priors; diff @5 in points",
        f"  by gold file ({gold} over {len(everything)} tasks), the share of gold files in the top"
        f" k, @1/@5/@10:",
        f"           index {'/'.join(pct(file_recall(everything, k)) for k in KS)},"
        f" bm25 {'/'.join(pct(file_recall(everything, k, baseline=True)) for k in KS)}",
        f"  gold files not in the index (never found): {len(missing)}"
        + (f" ({', '.join(missing[:8])}{', ...' if len(missing) > 8 else ''})" if missing else ""),
    ]
    if failed:
        lines.append(f"  tasks without a result (left out of every figure): {len(failed)}")
        lines += [f"    {task.instance_id}: {why}" for task, why in failed.items()]
    ours, theirs = task_recall(everything, 5), task_recall(everything, 5, baseline=True)
    met = 100 * (ours - theirs) >= TARGET_POINTS_AT_5
    lines.append(
        f"Target recall@5 >= bm25 + {TARGET_POINTS_AT_5:.0f} points: index {pct(ours)}%,"
        f" bm25 {pct(theirs)}%, {points(ours, theirs)} points -> {'MET' if met else 'NOT MET'}"
    )
    wins = [o for o in everything if hit(o.index_ranks, 5) and not hit(o.baseline_ranks, 5)]
    losses = [o for o in everything if hit(o.baseline_ranks, 5) and not hit(o.index_ranks, 5)]
    lines += [
        "",
        f"At 5: the index finds {len(wins)} task(s) bm25 misses and misses {len(losses)} task(s)"
        " bm25 finds" + (":" if losses else "."),
    ]
    for o in losses[:15]:
        ours_rank = "/".join(str(r) if r else "-" for r in o.index_ranks)
        theirs_rank = "/".join(str(r) if r else "-" for r in o.baseline_ranks)
        lines.append(
            f"  {o.task.instance_id:<28} gold {', '.join(o.task.gold)}: index #{ours_rank},"
            f" bm25 #{theirs_rank}; index top 3: {', '.join(o.index_top)}"
        )
    if len(losses) > 15:
        lines.append(f"  ... and {len(losses) - 15} more")
    ranking = [o.rank_seconds for o in everything]
    lines += [
        "",
        f"rank_files per task: median {seconds(ranking)} s, max {max(ranking):.2f} s"
        f" (bm25 baseline: median {seconds([o.baseline_seconds for o in everything])} s);"
        f" indexing per task: median {seconds([o.index_seconds for o in everything])} s, max"
        f" {max(o.index_seconds for o in everything):.2f} s, {sum(o.read for o in everything):,}"
        f" files read and {sum(o.reused for o in everything):,} reused from the cache in all",
    ]
    return lines


def ctags(work: Path, tags: Path) -> float:
    started = time.perf_counter()
    try:
        subprocess.run(
            ["ctags", "-R", "-f", str(tags), "."],
            cwd=work,
            capture_output=True,
            check=True,
            timeout=GIT_TIMEOUT,
        )
    except (subprocess.SubprocessError, OSError) as exc:
        raise BenchError(f"ctags -R failed in {work}: {exc}") from exc
    return time.perf_counter() - started


def parse_only(work: Path, index: build.RepoIndex) -> float:
    """Seconds for tree-sitter alone to parse the indexed files, in this one process."""
    chosen = [f for f in index.files.values() if f.language in PARSED]
    sources = [((work / f.path).read_bytes(), parser(f.language)) for f in chosen]
    started = time.perf_counter()
    for source, language_parser in sources:
        language_parser.parse(source)
    return time.perf_counter() - started


def timed_index(
    work: Path, commit: str, cache: Path, *, parallel: bool = True
) -> tuple[float, build.RepoIndex]:
    started = time.perf_counter()
    index = index_at(work, commit, cache, parallel=parallel)
    return time.perf_counter() - started, index


def later_commit(work: Path, commit: str) -> tuple[str, str] | None:
    """A commit about LATER_COMMITS after `commit` on the default branch, and how far after."""
    for extra in (("--first-parent",), ()):
        listed = git(
            "rev-list", "--reverse", "--ancestry-path", *extra, f"{commit}..origin/HEAD", cwd=work
        ).split()
        if listed:
            steps = min(LATER_COMMITS, len(listed))
            later = listed[steps - 1]
            count = int(git("rev-list", "--count", f"{commit}..{later}", cwd=work))
            path = "first-parent " if extra else ""
            return later, f"{steps} {path}commits ({count} in all)"
    return None


def stats(values: Sequence[float]) -> str:
    return (
        f"{statistics.median(values):>8.3f} {min(values):>7.3f} {max(values):>7.3f}"
        f" {len(values):>5}"
    )


def indexing_report(repo: str, work: Path, commit: str, root: Path, runs: int) -> list[str]:
    """Full, serial, unchanged and incremental index times on one checkout, against ctags."""
    folder = root / "timing"
    folder.mkdir()
    checkout(work, commit)
    has_ctags = shutil.which("ctags") is not None
    progress(f"timing on {repo} at {commit[:12]}: one untimed warm-up of each")
    _, index = timed_index(work, commit, folder / "warmup.db")
    if has_ctags:
        ctags(work, folder / "warmup.tags")
    before = load()
    full: list[float] = []
    serial: list[float] = []
    tagging: list[float] = []
    parsing: list[float] = []
    warm = folder / "warm.db"
    for n in range(runs):
        progress(f"timing run {n + 1}/{runs}: index, ctags, index without workers")
        cache = warm if n == 0 else folder / f"full-{n}.db"
        full.append(timed_index(work, commit, cache)[0])
        if has_ctags:
            tagging.append(ctags(work, folder / f"run-{n}.tags"))
        serial.append(timed_index(work, commit, folder / f"serial-{n}.db", parallel=False)[0])
        parsing.append(parse_only(work, index))
    # Unchanged: as a running server sees it (the index kept in memory by commit), and as after
    # a restart or once other commits pushed it out (the disk cache only).
    in_memory: list[float] = []
    unchanged: list[float] = []
    reread = 0
    for _ in range(runs):
        in_memory.append(timed_index(work, commit, warm)[0])
        build.forget_recent()
        took, again = timed_index(work, commit, warm)
        unchanged.append(took)
        reread = again.read
    tags = 0
    if has_ctags:
        with open(folder / "run-0.tags", "rb") as handle:
            tags = sum(1 for line in handle if not line.startswith(b"!_TAG_"))
    base = statistics.median(full)
    definitions = sum(len(f.symbols.definitions) for f in index.files.values())
    header = f"{'what':<52} {'median s':>8} {'min':>7} {'max':>7} {'runs':>5}  ratio"
    lines = [
        "",
        f"Indexing {repo} at {commit[:12]} (its newest task; the most bytes indexed unless"
        f" --timing-repo): {len(index.files):,} files indexed"
        f" ({sum(f.size for f in index.files.values()) / 2**20:.1f} MiB), {definitions:,}"
        f" definitions; ctags: {tags:,} tags",
        header,
        "-" * len(header),
        f"{f'index, cold cache, {build.workers()} worker processes':<52} {stats(full)}  1.00x full",
        f"{'index, cold cache, no worker processes':<52} {stats(serial)}"
        f"  {statistics.median(serial) / base:.2f}x full",
    ]
    if tagging:
        lines.append(
            f"{'ctags -R':<52} {stats(tagging)}  index is"
            f" {base / statistics.median(tagging):.2f}x ctags"
        )
    # The floor under the ctags ratio: tree-sitter's parse alone, before any query or cache.
    floor = statistics.median(parsing) / build.workers()
    lines.append(
        f"{'tree-sitter parse alone, one process (no queries)':<52} {stats(parsing)}"
        f"  {statistics.median(parsing) / base:.2f}x full"
        + (
            f"; / {build.workers()} cores = {floor / statistics.median(tagging):.2f}x ctags"
            if tagging
            else ""
        )
    )
    lines += [
        f"{'index, unchanged, kept in memory (same process)':<52} {stats(in_memory)}"
        f"  {statistics.median(in_memory) / base:.3f}x full",
        f"{f'index, unchanged, disk cache only ({reread} read)':<52} {stats(unchanged)}"
        f"  {statistics.median(unchanged) / base:.3f}x full",
    ]
    later = later_commit(work, commit)
    if later is None:
        lines.append("index after a few commits: no later commit on origin/HEAD (not measured)")
    else:
        sha, distance = later
        changed = len(git("diff", "--name-only", commit, sha, cwd=work).splitlines())
        checkout(work, sha)
        incremental = []
        for n in range(runs):
            cache = folder / f"incremental-{n}.db"
            shutil.copyfile(warm, cache)
            took, moved = timed_index(work, sha, cache)
            incremental.append(took)
        lines.append(
            f"{f'index {changed} files changed later ({moved.read} read)':<52} {stats(incremental)}"
            f"  {statistics.median(incremental) / base:.3f}x full"
        )
        lines.append(f"  later: {sha[:12]}, {distance} after {commit[:12]}, warm blob cache")
    lines += [
        "  index: git ls-tree + index_tree (tree-sitter definitions, references and words of",
        "  every file, written to the SQLite cache); ctags: definitions only",
        "  runs take turns (index, ctags, index without workers, parse alone) after one warm-up of",
        "  each (page cache, worker processes started); each cold run gets a new cache file;",
        f"  load average before the timed runs: {before} (this run's localization included)",
    ]
    if tagging:
        ratio = base / statistics.median(tagging)
        lines.append(
            f"Target full index within {TARGET_CTAGS_RATIO:.0f}x ctags: {ratio:.2f}x ->"
            f" {'MET' if ratio <= TARGET_CTAGS_RATIO else 'NOT MET'}"
        )
    else:
        lines.append(
            f"Target full index within {TARGET_CTAGS_RATIO:.0f}x ctags: not measured (no ctags on"
            " PATH)"
        )
    shares = [statistics.median(times) / base for times in (in_memory, unchanged)]
    lines.append(
        f"Target unchanged re-index under {100 * TARGET_UNCHANGED_SHARE:.0f}% of a full one:"
        f" kept in memory {100 * shares[0]:.2f}% ->"
        f" {'MET' if shares[0] < TARGET_UNCHANGED_SHARE else 'NOT MET'};"
        f" disk cache only {100 * shares[1]:.2f}% ->"
        f" {'MET' if shares[1] < TARGET_UNCHANGED_SHARE else 'NOT MET'}"
    )
    return lines


def load() -> str:
    with contextlib.suppress(OSError):
        return " ".join(f"{value:.2f}" for value in os.getloadavg())
    return "?"


def machine_info() -> list[str]:
    def out(*argv: str) -> str:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=10)
            return done.stdout.strip()
        return "?"

    cpu = cpu_model()
    head = out("git", "rev-parse", "--short", "HEAD")
    dirty = " (uncommitted changes)" if out("git", "status", "--porcelain") else ""
    return [
        f"machine: nproc={os.cpu_count()} {cpu}; {platform.system()} {platform.release()}"
        f" {platform.machine()}",
        f"python:  {platform.python_implementation()} {platform.python_version()}"
        f" ({sys.executable}); index worker processes: {build.workers()}",
        f"tools:   {out('git', '--version')}; {(out('ctags', '--version') or '?').split(',')[0]}",
        f"nimbus:  {head}{dirty} ({ROOT})",
        f"load:    {load()} (1, 5, 15 min; other work on the machine skews the timings)",
    ]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--mirrors",
        type=Path,
        required=True,
        help=f"folder of bare mirrors DIR/<owner>/<name>.git (make one: {MIRROR_HINT})",
    )
    parser.add_argument("--data", type=Path, default=DATA, help=f"task file (default {DATA})")
    parser.add_argument(
        "--repos", default="", help="only these repositories, comma-separated (owner/name)"
    )
    parser.add_argument(
        "--max-per-repo",
        type=int,
        default=0,
        help="at most this many tasks per repository, in file order (default: all)",
    )
    parser.add_argument(
        "--timing-repo",
        default="",
        help="repository to time indexing on (default: the most bytes indexed, at its newest task)",
    )
    parser.add_argument(
        "--runs", type=int, default=0, help="timed runs of each indexing measure (default 3)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"{QUICK_PER_REPO} tasks per repository and 1 timed run (smoke run)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args(argv)
    if args.quick and not args.max_per_repo:
        args.max_per_repo = QUICK_PER_REPO
    if not args.runs:
        args.runs = 1 if args.quick else 3
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="nimbus-bench-localization-"))
    started = time.perf_counter()
    try:
        print("Nimbus localization benchmark: the index's file ranking on SWE-bench Lite")
        print(f"command: {' '.join([sys.executable, *sys.argv])}")
        for line in machine_info():
            print(line)
        if not args.mirrors.is_dir():
            raise BenchError(
                f"--mirrors {args.mirrors}: no such folder; make one with {MIRROR_HINT}"
            )
        tasks = load_tasks(args.data)
        repos = [r.strip() for r in args.repos.split(",") if r.strip()]
        chosen, skipped = select(tasks, args.mirrors, repos, args.max_per_repo)
        if not chosen:
            raise BenchError(
                f"no mirror under {args.mirrors} for any task; make one with {MIRROR_HINT}"
            )
        limit = f"at most {args.max_per_repo} per repository" if args.max_per_repo else "all"
        print(
            f"tasks:   {sum(map(len, chosen.values()))} of {len(tasks)} in {args.data} ({limit};"
            f" {'--quick' if args.quick else 'default'}), from {len(chosen)} repositories"
            f" with a mirror under {args.mirrors}"
        )
        if skipped:
            print(
                "skipped: "
                + ", ".join(f"{repo} ({n} tasks)" for repo, n in skipped.items())
                + f": no mirror; make one with {MIRROR_HINT}"
            )
        sys.stdout.flush()
        if args.timing_repo and args.timing_repo not in chosen:
            raise BenchError(f"--timing-repo {args.timing_repo}: not among the repositories run")
        works = clone_all(chosen, args.mirrors, root)
        cache = root / "index.db"
        results, failed = localize(chosen, works, cache)
        if not any(results.values()):
            raise BenchError("no task has a result: " + "; ".join(failed.values()))
        print("\n".join(localization_report(results, failed)))
        sys.stdout.flush()
        # The most bytes to parse, not the most files (pylint's thousands of tiny test files).
        done = {repo: outcomes for repo, outcomes in results.items() if outcomes}
        largest = args.timing_repo or max(done, key=lambda r: done[r][-1].size)
        if largest not in done:
            raise BenchError(f"--timing-repo {largest}: none of its tasks has a result")
        newest = done[largest][-1].task.commit
        print("\n".join(indexing_report(largest, works[largest], newest, root, args.runs)))
        crashed = [task for task, why in failed.items() if why.startswith("crashed")]
        if crashed:
            print(f"\nWARNING: the index crashed on {len(crashed)} task(s) (listed above)")
        print(f"\nTotal benchmark time: {time.perf_counter() - started:.1f} s")
        return 1 if crashed else 0
    except BenchError as exc:
        return give_up(exc)
    finally:
        build.close_pool()
        leave_scratch(root, args.keep)


if __name__ == "__main__":
    sys.exit(main())
