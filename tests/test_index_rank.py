"""Ranking a repository's files for a task, and the repo map within its token budget."""

from __future__ import annotations

import itertools
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.index.build import RepoIndex, index_tree
from bot.index.files import parse_ls_tree
from bot.index.rank import RankedFile, bm25, code_names, pagerank, query_terms, rank_files, terms_of
from bot.index.repomap import estimate_tokens, render_map
from tests.conftest import git, new_repository

SHOP = {
    "shop/__init__.py": "",
    "shop/payments.py": '''"""Charging cards through the payment gateway."""

from shop.taxes import compute_tax


class PaymentGateway:
    def __init__(self, client):
        self.client = client

    def charge(self, card, amount):
        total = amount + compute_tax(amount)
        return self.client.post("/charges", card=card, amount=total)


def refund_payment(gateway, charge_id):
    return gateway.client.post(f"/charges/{charge_id}/refund")
''',
    "shop/taxes.py": """RATES = {"EU": 0.2, "US": 0.07}


def compute_tax(amount, region="EU"):
    return round(amount * RATES[region], 2)
""",
    "shop/inventory.py": """class Warehouse:
    def __init__(self):
        self.stock = {}

    def reserve_stock(self, sku, quantity):
        available = self.stock.get(sku, 0)
        if available < quantity:
            raise ValueError(sku)
        self.stock[sku] = available - quantity
""",
    "shop/emails.py": """def send_receipt(mailer, order):
    body = render_receipt(order)
    mailer.send(order.customer_email, "Your receipt", body)


def render_receipt(order):
    return "\\n".join(f"{line.name}: {line.price}" for line in order.lines)
""",
    "shop/search.py": """def search_products(catalog, query):
    words = query.lower().split()
    return [p for p in catalog if all(w in p.title.lower() for w in words)]
""",
    "tests/test_payments.py": """from shop.payments import PaymentGateway, refund_payment


def test_refund_payment_posts_a_refund():
    assert refund_payment(PaymentGateway(None), "ch_1")
""",
    "README.md": "# Shop\n\nA small shop: payments, inventory, receipts and search.\n",
}


def indexed(work: Path, files: dict[str, str]) -> RepoIndex:
    """Commit `files` in a new repository at `work` and index it (no cache)."""
    new_repository(work, files)
    tracked = parse_ls_tree(git("ls-tree", "-r", "-z", "HEAD", cwd=work))
    head = git("rev-parse", "HEAD", cwd=work)
    return index_tree(work, head, tracked, set(), None, parallel=False)


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> RepoIndex:
    return indexed(tmp_path_factory.mktemp("shop"), SHOP)


def order_for(index: RepoIndex, task: str) -> list[str]:
    return [r.path for r in rank_files(index, task)]


@pytest.mark.parametrize(
    ("task", "first"),
    [
        ("refund_payment() posts to the wrong URL", "shop/payments.py"),
        ("Make `Warehouse` thread-safe", "shop/inventory.py"),
        ("PaymentGateway retries forever", "shop/payments.py"),
        ("compute_tax rounds half down", "shop/taxes.py"),
        ("Fix the typo in shop/emails.py", "shop/emails.py"),
    ],
)
def test_the_file_defining_or_named_by_the_task_ranks_first(shop, task, first):
    assert order_for(shop, task)[0] == first


@pytest.mark.parametrize(
    ("task", "first"),
    [
        ("Customers get charged twice by the payment gateway", "shop/payments.py"),
        ("The stock can go negative when two orders come in together", "shop/inventory.py"),
        ("Receipts show the wrong price for each line", "shop/emails.py"),
        ("Searching products ignores upper case letters", "shop/search.py"),
    ],
)
def test_a_task_in_plain_words_puts_the_file_with_those_names_first(shop, task, first):
    assert not code_names(task)
    assert order_for(shop, task)[0] == first


def test_the_file_defining_a_named_function_beats_one_that_only_calls_it(shop):
    # payments.py calls compute_tax and holds most of the task's words; taxes.py defines it.
    task = "compute_tax() is off by a cent when the payment gateway charges a card amount"
    assert order_for(shop, task)[:2] == ["shop/taxes.py", "shop/payments.py"]


def test_a_file_the_relevant_one_calls_ranks_above_unrelated_files(shop):
    order = order_for(shop, "refund_payment() posts to the wrong URL")
    # taxes.py shares no word with the task: only the reference from payments.py lifts it.
    assert not set(query_terms("refund_payment() posts to the wrong URL")) & {"tax", "rates"}
    for unrelated in ("shop/emails.py", "shop/inventory.py", "shop/search.py"):
        assert order.index("shop/taxes.py") < order.index(unrelated), order


def test_tests_rank_below_the_source_they_test(shop):
    order = order_for(shop, "refund_payment() posts to the wrong URL")
    assert order.index("shop/payments.py") < order.index("tests/test_payments.py")


def test_a_test_file_ranks_below_a_source_file_with_the_same_text(tmp_path):
    text = "def apply_discount(order, code):\n    return order.total * DISCOUNTS[code]\n"
    # spec/ sorts before src/: only the kind of file can put the source first.
    index = indexed(tmp_path / "repo", {"spec/discounts.py": text, "src/discounts.py": text})
    ranked = rank_files(index, "discount codes apply to the order total twice")
    assert [r.path for r in ranked] == ["src/discounts.py", "spec/discounts.py"]
    assert ranked[1].score < ranked[0].score


def test_every_file_is_ranked_once_best_first(shop):
    ranked = rank_files(shop, "Receipts show the wrong price")
    assert sorted(r.path for r in ranked) == sorted(shop.files)
    assert [r.score for r in ranked] == sorted((r.score for r in ranked), reverse=True)


@pytest.mark.parametrize("task", ["", "the and of", "   \n", "???", "ñandú ☃"])
def test_a_task_without_search_terms_still_ranks_every_file(shop, task):
    ranked = rank_files(shop, task)
    assert sorted(r.path for r in ranked) == sorted(shop.files)
    assert all(r.score >= 0 for r in ranked)


def test_an_empty_index_ranks_and_maps_nothing():
    empty = RepoIndex("0" * 40, {})
    assert rank_files(empty, "refund_payment() fails") == []
    assert render_map(empty, [], "refund_payment() fails", 1_000) == ""


def test_terms_split_identifiers_into_their_words():
    assert terms_of("parseHTTPResponse") == ("parse", "http", "response", "parsehttpresponse")
    assert terms_of("refund_payment") == ("refund", "payment", "refund_payment")
    assert terms_of("__init__") == ("init", "__init__")
    assert terms_of("the") == ()
    assert query_terms("The refund_payment fails") == Counter(
        {"refund": 1, "payment": 1, "refund_payment": 1, "fails": 1}
    )


def test_code_names_are_what_the_task_writes_as_code():
    task = "`Cart.total` is wrong after apply_discount() on a PaymentGateway, see max_retries"
    assert code_names(task) == {"Cart", "total", "apply_discount", "PaymentGateway", "max_retries"}
    assert code_names("Customers are charged twice") == set()


def test_bm25_weighs_a_rare_term_above_a_common_one():
    docs = {
        "a.py": Counter(refund=1, order=1),
        "b.py": Counter(order=1, cart=1),
        "c.py": Counter(order=1, user=1),
    }
    scores = bm25(docs, Counter(refund=1, order=1))
    assert max(scores, key=scores.get) == "a.py"
    assert scores["b.py"] == scores["c.py"] < scores["a.py"]
    assert bm25(docs, Counter()) == {} and bm25({}, Counter(refund=1)) == {}


def test_pagerank_walks_from_the_task_files_along_references():
    nodes = ["main.py", "config.py", "loader.py", "unrelated.py"]
    edges = {"main.py": {"config.py": 1.0}, "config.py": {"loader.py": 1.0}}
    rank = pagerank(nodes, edges, {"main.py": 1.0})
    assert rank["main.py"] > rank["config.py"] > rank["loader.py"] > 0
    assert rank["unrelated.py"] == 0
    assert sum(rank.values()) == pytest.approx(1.0)
    uniform = pagerank(nodes, {}, {})
    assert list(uniform.values()) == pytest.approx([0.25] * 4)


@pytest.mark.parametrize("budget", [0, 1, 5, 8, 12, 20, 40, 80, 160, 2_048])
def test_the_map_never_exceeds_its_budget(shop, budget):
    task = "refund_payment() posts to the wrong URL"
    repo_map = render_map(shop, rank_files(shop, task), task, budget)
    assert estimate_tokens(repo_map) <= budget


@settings(max_examples=100, deadline=None)
@given(
    budget=st.integers(min_value=-10, max_value=400),
    task=st.sampled_from(["", "refund_payment() fails", "Receipts show the wrong price"]),
)
def test_the_map_fits_any_budget_and_lists_files_in_rank_order(shop, budget, task):
    ranked = rank_files(shop, task)
    repo_map = render_map(shop, ranked, task, budget)
    assert estimate_tokens(repo_map) <= max(budget, 0)
    listed = [line[:-1] for line in repo_map.splitlines() if not line.startswith("  ")]
    # Files that neither match the task nor define anything are not worth a line.
    worth = [r.path for r in ranked if r.score > 0 or shop.files[r.path].symbols.definitions]
    assert listed == worth[: len(listed)]


def test_the_map_starts_with_the_top_file_and_its_definitions_lines(shop):
    task = "refund_payment() posts to the wrong URL"
    repo_map = render_map(shop, rank_files(shop, task), task, 2_048)
    assert repo_map.startswith(
        "shop/payments.py:\n"
        "  6: class PaymentGateway:\n"
        "      7: def __init__(self, client):\n"
        "      10: def charge(self, card, amount):\n"
        "  15: def refund_payment(gateway, charge_id):\n"
    )
    # A module-level constant the task does not name is not worth a line.
    assert "RATES = " not in repo_map
    named = render_map(shop, rank_files(shop, "`RATES`"), "`RATES`", 2_048)
    assert "  1: RATES = " in named


def test_a_larger_budget_shows_at_least_as_much(shop):
    task = "Receipts show the wrong price"
    ranked = rank_files(shop, task)
    maps = [render_map(shop, ranked, task, budget) for budget in (10, 30, 60, 120, 500)]
    for smaller, larger in itertools.pairwise(maps):
        assert len(smaller) <= len(larger)
        assert smaller.split("\n")[0] == larger.split("\n")[0] or not smaller


HANDLERS = "".join(f"def handler_{i:02}(event):\n    return event\n\n\n" for i in range(1, 21))


@pytest.fixture(scope="module")
def handlers(tmp_path_factory: pytest.TempPathFactory) -> RepoIndex:
    app = "from api.handlers import handler_18, handler_19\n\nROUTES = [handler_18, handler_19]\n"
    cli = "from api.handlers import handler_19\n\nMAIN = handler_19\n"
    files = {"api/handlers.py": HANDLERS, "api/app.py": app, "api/cli.py": cli}
    return indexed(tmp_path_factory.mktemp("handlers"), files)


def shown(repo_map: str, path: str) -> list[str]:
    """The names whose signatures the map shows under `path`."""
    section = repo_map.split(f"{path}:\n", 1)[1].split("\n")
    names = []
    for line in section:
        if not line.startswith("  "):
            break
        names.append(line.split("def ", 1)[1].split("(", 1)[0])
    return names


def test_a_file_shows_the_named_then_the_most_used_definitions(handlers):
    task = "handler_20() drops events"
    repo_map = render_map(handlers, rank_files(handlers, task), task, 2_048)
    assert repo_map.startswith("api/handlers.py:\n  1: def handler_01(event):\n")
    # At most twelve: the one the task names, those other files use, then the first ones.
    assert shown(repo_map, "api/handlers.py") == [
        *(f"handler_{i:02}" for i in range(1, 10)),
        "handler_18",
        "handler_19",
        "handler_20",
    ]


def test_a_tight_budget_cuts_a_files_list_before_dropping_the_file(handlers):
    task = "handler_20() drops events"
    repo_map = render_map(handlers, rank_files(handlers, task), task, 40)
    assert estimate_tokens(repo_map) <= 40
    assert 0 < len(shown(repo_map, "api/handlers.py")) < 12


def test_a_tight_budget_keeps_the_definition_the_task_names(handlers):
    task = "handler_20() drops events"
    repo_map = render_map(handlers, rank_files(handlers, task), task, 40)
    assert "handler_20" in shown(repo_map, "api/handlers.py")


def test_a_budget_below_the_top_files_name_gives_an_empty_map(handlers):
    task = "handler_20() drops events"
    assert render_map(handlers, rank_files(handlers, task), task, 3) == ""


def test_ranked_paths_missing_from_the_index_are_passed_over(handlers):
    ranked = [RankedFile("api/deleted.py", 1.0), *rank_files(handlers, "handler_19")]
    repo_map = render_map(handlers, ranked, "handler_19", 2_048)
    assert "api/deleted.py" not in repo_map
    assert repo_map.startswith("api/handlers.py:\n")


def test_a_name_many_files_define_boosts_none_of_them(tmp_path):
    files = {f"src/plugins/p{i}.py": "def handle(event):\n    pass\n" for i in range(12)}
    files["src/report.py"] = "def render_report(rows):\n    return rows\n"
    index = indexed(tmp_path / "many", files)
    ranked = rank_files(index, "The report is wrong when `handle()` runs")
    assert ranked[0].path == "src/report.py"
