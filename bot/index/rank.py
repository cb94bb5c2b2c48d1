"""Ranking a repository's files for a task: BM25 over names and text, then the reference graph.

Pure. The lexical score finds files whose paths, definitions and words match the task's text; a
personalised PageRank over who-references-whom (as aider's repo map does) then lifts the files
those depend on and the files that define the names the task mentions.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from functools import lru_cache

from bot import paths
from bot.index.build import RepoIndex

# BM25's usual constants.
_K1, _B = 1.2, 0.75
# A term in a file's path or among the names it defines says more than one in its text.
_PATH_WEIGHT, _DEFINITION_WEIGHT = 4, 2
# Names defined in more files than this (`get`, `run`, `__init__`) link everything to everything.
_MAX_DEFINERS = 8
# Walks that restart often stay near the task's files; at 0.85, files everything uses (a
# project's application or node classes) ranked first for every task.
_DAMPING = 0.5
_ITERATIONS = 30
# How much of a file's final score the graph decides (the rest is the lexical score).
_GRAPH_SHARE = 0.35
# A file the task names by path, or that defines a name the task writes as code.
_MENTION_BOOST = 2.0
# Where a change is likely to go: source before tests before everything else; code under
# doc/ or examples/ is read, rarely changed.
_KIND_PRIOR = {paths.SOURCE: 1.0, paths.TEST: 0.4, paths.OTHER: 0.5}
_ASIDE_DIRS = frozenset({"doc", "docs", "example", "examples", "benchmarks", "bench", "asv_bench"})
_ASIDE_PRIOR = 0.5

_STOPWORDS = frozenset(
    """a an and are as at be but by can could did do does for from had has have how i if in
    into is it its itself let may me might more most must my no not of on or our out over
    please same should so some such than that the their them then there these they this those
    through to too under up us use used using very was we were what when where which while who
    why will with would you your also get set new one two all any each just like only other
    work works working issue bug error problem example expected actual result code file line
    self none true false return def class import""".split()
)
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CAMEL = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")
# Something the task writes as code: `name`, name(), a.b.c, CamelCase, snake_case.
_CODE_NAME = re.compile(
    r"`([^`\n]+)`|\b([A-Za-z_][A-Za-z0-9_]*)\(|\b([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+)\b"
    r"|\b([A-Z][a-z0-9]+[A-Z]\w*|[a-z0-9]+_[a-z0-9_]+)\b"
)
# Extensions that name files, not attributes (`response.json` is code, `setup.py` is a file).
_FILE_NAME = re.compile(
    r"[\w./-]*\.(?:py|pyi|js|jsx|ts|tsx|go|rs|java|rb|cpp|md|rst|txt|cfg|ini|toml|ya?ml)"
)
_PATH_LIKE = re.compile(r"[\w./-]+\.[A-Za-z0-9]{1,5}\b|[\w-]+(?:/[\w.-]+)+")


@lru_cache(maxsize=200_000)
def terms_of(word: str) -> tuple[str, ...]:
    """Search terms of one identifier: its parts (snake_case, CamelCase) and itself, lowercased."""
    lowered = word.lower()
    parts = [p.lower() for chunk in word.split("_") for p in _CAMEL.findall(chunk)]
    found = [p for p in parts if len(p) > 1 and p not in _STOPWORDS]
    if lowered not in found and len(lowered) > 2 and lowered not in _STOPWORDS:
        found.append(lowered)
    return tuple(found)


def query_terms(text: str) -> Counter[str]:
    """The task's text as search terms."""
    found: Counter[str] = Counter()
    for word in _WORD.findall(text):
        found.update(terms_of(word))
    return found


def code_names(text: str) -> set[str]:
    """Names the task writes as code; each dotted part counts on its own too."""
    names: set[str] = set()
    for match in _CODE_NAME.finditer(text):
        value = next(group for group in match.groups() if group)
        if _FILE_NAME.fullmatch(value):
            continue  # `test.py`, `index.rst`: a file, not a name in the code
        for part in re.split(r"[^A-Za-z0-9_]+", value):
            if len(part) > 2 and part.lower() not in _STOPWORDS:
                names.add(part)
    return names


# A file name that many files share (`conf.py`, `__init__.py`) names none of them.
_MAX_NAMESAKES = 3


def _mentioned_paths(text: str, files: list[str]) -> set[str]:
    """Files the task names by path or by a path's tail (`models.py`, `requests/models`)."""
    found = set()
    for raw in _PATH_LIKE.findall(text):
        tail = raw.strip("./").replace("\\", "/")
        if len(tail) < 4:
            continue
        last = tail.rsplit("/", 1)[-1]
        stem = tail.rsplit(".", 1)[0] if "." in last else tail
        matches = {
            path
            for path in files
            if path == tail
            or path.endswith("/" + tail)
            or (stem != tail and "/" in stem and path.rsplit(".", 1)[0].endswith(stem))
        }
        if "/" in tail or len(matches) <= _MAX_NAMESAKES:
            found |= matches
    return found


@dataclass(frozen=True)
class RankedFile:
    """A file and how relevant it is to the task (higher is more; comparable within one ranking)."""

    path: str
    score: float


def _documents(index: RepoIndex) -> dict[str, Counter[str]]:
    """Each file's search terms, made once per index (every task ranks the same index)."""
    if index.search_terms is not None:
        return index.search_terms
    docs: dict[str, Counter[str]] = {}
    for path, file in index.files.items():
        doc: Counter[str] = Counter()
        for word, count in file.symbols.words.items():
            for term in terms_of(word):
                doc[term] += count
        for part in re.split(r"[/._-]+", path):
            for term in terms_of(part):
                doc[term] += _PATH_WEIGHT
        for definition in file.symbols.definitions:
            for term in terms_of(definition.name):
                doc[term] += _DEFINITION_WEIGHT
        docs[path] = doc
    index.search_terms = docs
    return docs


def bm25(docs: dict[str, Counter[str]], query: Counter[str]) -> dict[str, float]:
    """Okapi BM25 of every document for the query's terms."""
    if not docs or not query:
        return {}
    lengths = {path: sum(doc.values()) for path, doc in docs.items()}
    average = sum(lengths.values()) / len(lengths) or 1.0
    df = {term: sum(1 for doc in docs.values() if term in doc) for term in query}
    n = len(docs)
    scores: dict[str, float] = {}
    for path, doc in docs.items():
        norm = _K1 * (1 - _B + _B * lengths[path] / average)
        score = 0.0
        for term, weight in query.items():
            tf = doc.get(term)
            if not tf:
                continue
            idf = math.log(1 + (n - df[term] + 0.5) / (df[term] + 0.5))
            score += weight * idf * tf * (_K1 + 1) / (tf + norm)
        if score:
            scores[path] = score
    return scores


def _definers(index: RepoIndex) -> dict[str, set[str]]:
    """The files defining each name (dunder names and names under three letters left out)."""
    definers: dict[str, set[str]] = defaultdict(set)
    for path, file in index.files.items():
        for definition in file.symbols.definitions:
            name = definition.name
            if len(name) > 2 and not (name.startswith("__") and name.endswith("__")):
                definers[name].add(path)
    return definers


def _edges(index: RepoIndex, mentioned: set[str]) -> dict[str, dict[str, float]]:
    """referencer -> definer -> weight, over names defined in few enough files."""
    definers = _definers(index)
    edges: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for path, file in index.files.items():
        for name, count in file.symbols.references.items():
            targets = definers.get(name)
            if not targets or len(targets) > _MAX_DEFINERS:
                continue
            weight = math.sqrt(max(count, 0)) / len(targets)
            if name in mentioned:
                weight *= 10
            if name.startswith("_"):
                weight *= 0.1
            for target in targets:
                if target != path:
                    edges[path][target] += weight
    return edges


def pagerank(
    nodes: list[str], edges: dict[str, dict[str, float]], personal: dict[str, float]
) -> dict[str, float]:
    """Personalised PageRank: random walks along references that restart at `personal`."""
    total = sum(personal.values())
    restart = (
        {node: personal.get(node, 0.0) / total for node in nodes}
        if total
        else {node: 1 / len(nodes) for node in nodes}
    )
    out_weight = {src: sum(targets.values()) for src, targets in edges.items()}
    rank = dict(restart)
    for _ in range(_ITERATIONS):
        nxt = {node: (1 - _DAMPING) * restart[node] for node in nodes}
        dangling = 0.0
        for node in nodes:
            mass = rank[node]
            if not mass:
                continue
            targets = edges.get(node)
            if not targets:
                dangling += mass
                continue
            share = _DAMPING * mass / out_weight[node]
            for target, weight in targets.items():
                nxt[target] += share * weight
        # A file that references nothing hands its walk back to the task's files.
        for node, value in restart.items():
            if value:
                nxt[node] += _DAMPING * dangling * value
        rank = nxt
    return rank


def _normalised(scores: dict[str, float]) -> dict[str, float]:
    top = max(scores.values(), default=0.0)
    return {k: v / top for k, v in scores.items()} if top else {}


def rank_files(index: RepoIndex, task: str) -> list[RankedFile]:
    """Every indexed file, most relevant to the task first."""
    files = list(index.files)
    if not files:
        return []
    names = code_names(task)
    lexical = _normalised(bm25(_documents(index), query_terms(task)))
    mentioned_paths = _mentioned_paths(task, files)
    personal = dict(lexical)
    definers = _definers(index)
    # A name many files define (`test`, `args`) points at none of them.
    telling = {name for name in names if 0 < len(definers.get(name, ())) <= _MAX_DEFINERS}
    for path in files:
        defined = {d.name for d in index.files[path].symbols.definitions}
        if path in mentioned_paths or defined & telling:
            personal[path] = personal.get(path, 0.0) + _MENTION_BOOST
    graph = _normalised(pagerank(files, _edges(index, names), personal))
    ranked = []
    for path in files:
        score = (1 - _GRAPH_SHARE) * personal.get(path, 0.0) + _GRAPH_SHARE * graph.get(path, 0.0)
        score *= _KIND_PRIOR.get(index.files[path].kind, 0.5)
        if _ASIDE_DIRS.intersection(path.split("/")[:-1]):
            score *= _ASIDE_PRIOR
        ranked.append(RankedFile(path, score))
    ranked.sort(key=lambda r: (-r.score, r.path))
    return ranked
