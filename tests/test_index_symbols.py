"""A file's symbols: definitions per language, names used in code, the plain fallback."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.index.languages import PARSED, language_of
from bot.index.symbols import Definition, FileSymbols, extract


@dataclass(frozen=True)
class Sample:
    """A small source file, what it defines, the names its code uses, and names it only quotes."""

    language: str
    source: str
    definitions: list[tuple[str, str, int, str]]
    used: set[str]
    not_code: set[str]


PYTHON = Sample(
    "python",
    '''"""Payments: charge_in_docstring is mentioned here."""
import json

RETRY_LIMIT = 3


@dataclass
class Invoice:
    """One invoice."""

    def total(self, tax):
        # rounded like round_in_comment
        return sum_lines(self.lines) + tax


@app.route("/pay")
async def charge(invoice):
    log("name_in_string")
    return Invoice(json.dumps(invoice))
''',
    [
        ("RETRY_LIMIT", "constant", 4, "RETRY_LIMIT = 3"),
        ("Invoice", "class", 8, "class Invoice:"),
        ("total", "function", 11, "def total(self, tax):"),
        ("charge", "function", 17, "async def charge(invoice):"),
    ],
    {"sum_lines", "dataclass", "app", "route", "log", "json", "dumps", "Invoice", "tax"},
    {"charge_in_docstring", "round_in_comment", "name_in_string"},
)

JAVASCRIPT = Sample(
    "javascript",
    """// cart.js, see old_cart_in_comment
import { formatPrice } from "./format.js";

export class Cart {
  constructor(items) {
    this.items = items;
  }

  total() {
    return this.items.reduce((sum, item) => sum + priceOf(item), 0);
  }
}

export function checkout(cart) {
  console.log("name_in_string", 'single_quoted_name');
  return formatPrice(cart.total());
}

const applyDiscount = (cart, rate) => cart.total() * (1 - rate);

function* pages() {
  yield `name_in_template`;
}
""",
    [
        ("Cart", "class", 4, "export class Cart {"),
        ("constructor", "method", 5, "constructor(items) {"),
        ("total", "method", 9, "total() {"),
        ("checkout", "function", 14, "export function checkout(cart) {"),
        (
            "applyDiscount",
            "function",
            19,
            "const applyDiscount = (cart, rate) => cart.total() * (1 - rate);",
        ),
        ("pages", "function", 21, "function* pages() {"),
    ],
    {"formatPrice", "priceOf", "reduce", "console", "items", "total"},
    {"old_cart_in_comment", "name_in_string", "single_quoted_name", "name_in_template"},
)

TYPESCRIPT = Sample(
    "typescript",
    """export interface Shape {
  area(): number;
}

export type Point = { x: number; y: number };

export enum Color { Red, Green }

export abstract class Base {}

/* block comment naming block_comment_name */
export class Circle extends Base implements Shape {
  constructor(private radius: number) { super(); }
  area(): number {
    return Math.PI * square(this.radius); // line_comment_name
  }
}

export function square(n: number): number {
  return n * n;
}

export const describe = (s: Shape): string => "name_in_string";
""",
    [
        ("Shape", "interface", 1, "export interface Shape {"),
        ("area", "method", 2, "area(): number;"),
        ("Point", "type", 5, "export type Point = { x: number; y: number };"),
        ("Color", "type", 7, "export enum Color { Red, Green }"),
        ("Base", "class", 9, "export abstract class Base {}"),
        ("Circle", "class", 12, "export class Circle extends Base implements Shape {"),
        ("constructor", "method", 13, "constructor(private radius: number) { super(); }"),
        ("area", "method", 14, "area(): number {"),
        ("square", "function", 19, "export function square(n: number): number {"),
        (
            "describe",
            "function",
            23,
            'export const describe = (s: Shape): string => "name_in_string";',
        ),
    ],
    {"Math", "square", "radius", "Shape", "Base"},
    {"block_comment_name", "line_comment_name", "name_in_string"},
)

TSX = Sample(
    "tsx",
    """import React from "react";

// Greets the user_in_comment.
export function Greeting({ name }: { name: string }) {
  return <div className="class_in_string">{formatName(name)}</div>;
}

export const Button = (): JSX.Element => <button onClick={handleClick}>Go</button>;
""",
    [
        ("Greeting", "function", 4, "export function Greeting({ name }: { name: string }) {"),
        (
            "Button",
            "function",
            8,
            "export const Button = (): JSX.Element => <button onClick={handleClick}>Go</button>;",
        ),
    ],
    {"React", "formatName", "handleClick", "className", "name"},
    {"user_in_comment", "class_in_string"},
)

GO = Sample(
    "go",
    """// Package shop sells things; see comment_only_name.
package shop

import "fmt"

type Order struct {
	Items []Item
}

type Pricer interface {
	Price() int
}

func (o *Order) Total() int {
	return sumItems(o.Items)
}

func NewOrder() *Order {
	fmt.Println("name_in_string", `raw_string_name`)
	return &Order{}
}
""",
    [
        ("Order", "type", 6, "type Order struct {"),
        ("Pricer", "type", 10, "type Pricer interface {"),
        ("Total", "method", 14, "func (o *Order) Total() int {"),
        ("NewOrder", "function", 18, "func NewOrder() *Order {"),
    ],
    {"sumItems", "Println", "fmt", "Items", "Item", "Order"},
    {"comment_only_name", "name_in_string", "raw_string_name"},
)

RUST = Sample(
    "rust",
    """/// An account; see doc_comment_name.
#[derive(Debug)]
pub struct Account {
    balance: i64,
}

pub enum Kind { Savings, Checking }

pub trait Ledger {
    fn post(&mut self, amount: i64);
}

type Money = i64;

mod audit {}

macro_rules! cents { ($x:expr) => { $x * 100 }; }

impl Account {
    /* block_comment_name */
    pub fn deposit(&mut self, amount: Money) {
        self.balance += apply_fee(amount);
        println!("name_in_string {}", r#"raw_string_name"#);
    }
}
""",
    [
        ("Account", "class", 3, "pub struct Account {"),
        ("Kind", "class", 7, "pub enum Kind { Savings, Checking }"),
        ("Ledger", "interface", 9, "pub trait Ledger {"),
        ("post", "function", 10, "fn post(&mut self, amount: i64);"),
        ("Money", "type", 13, "type Money = i64;"),
        ("audit", "module", 15, "mod audit {}"),
        ("cents", "macro", 17, "macro_rules! cents { ($x:expr) => { $x * 100 }; }"),
        ("deposit", "function", 21, "pub fn deposit(&mut self, amount: Money) {"),
    ],
    {"apply_fee", "balance", "Money", "Debug", "println"},
    {"doc_comment_name", "block_comment_name", "name_in_string", "raw_string_name"},
)

JAVA = Sample(
    "java",
    """package shop;

/** The cart; see javadoc_name. */
public class Cart {
    private final List<Item> items;

    public Cart(List<Item> items) {
        this.items = items;
    }

    public int total() {
        return Prices.sum(items); // line_comment_name
    }

    String label() {
        return "name_in_string" + \"\"\"
            text_block_name
            \"\"\";
    }
}

interface Priced { int price(); }

enum Size { SMALL, LARGE }

record Item(String name, int price) {}
""",
    [
        ("Cart", "class", 4, "public class Cart {"),
        ("Cart", "method", 7, "public Cart(List<Item> items) {"),
        ("total", "method", 11, "public int total() {"),
        ("label", "method", 15, "String label() {"),
        ("Priced", "interface", 22, "interface Priced { int price(); }"),
        ("price", "method", 22, "interface Priced { int price(); }"),
        ("Size", "class", 24, "enum Size { SMALL, LARGE }"),
        ("Item", "class", 26, "record Item(String name, int price) {}"),
    ],
    {"Prices", "sum", "items", "List", "Item", "String"},
    {"javadoc_name", "line_comment_name", "name_in_string", "text_block_name"},
)

SAMPLES = [PYTHON, JAVASCRIPT, TYPESCRIPT, TSX, GO, RUST, JAVA]
BY_LANGUAGE = pytest.mark.parametrize("sample", SAMPLES, ids=[s.language for s in SAMPLES])


def symbols_of(sample: Sample) -> FileSymbols:
    return extract(sample.language, sample.source.encode())


def test_every_sample_language_has_a_grammar():
    assert {s.language for s in SAMPLES} == PARSED


@BY_LANGUAGE
def test_definitions_have_their_kind_line_and_first_line(sample: Sample):
    symbols = symbols_of(sample)
    assert symbols.parsed is True
    assert [(d.name, d.kind, d.line, d.signature) for d in symbols.definitions] == (
        sample.definitions
    )


@BY_LANGUAGE
def test_names_used_in_code_are_references(sample: Sample):
    symbols = symbols_of(sample)
    assert sample.used <= set(symbols.references)
    # A definition's own name is in the code too.
    assert {name for name, *_ in sample.definitions if len(name) > 2} <= set(symbols.references)


@BY_LANGUAGE
def test_names_only_in_comments_or_strings_are_words_not_references(sample: Sample):
    symbols = symbols_of(sample)
    assert sample.not_code <= set(symbols.words)
    assert not sample.not_code & set(symbols.references)


def test_a_name_in_both_code_and_a_comment_counts_only_its_uses_in_code():
    source = b"# retry() is called twice\ndef run():\n    retry()\n    retry()\n"
    symbols = extract("python", source)
    assert symbols.references["retry"] == 2
    assert symbols.words["retry"] == 3


def test_short_names_are_neither_words_nor_references():
    symbols = extract("python", b"def go(a, xy):\n    return a + xy\n")
    assert [d.name for d in symbols.definitions] == ["go"]
    assert "go" not in symbols.words and "xy" not in symbols.references


def test_python_decorators_leave_the_definition_on_its_def_line():
    source = b"class Shop:\n    @staticmethod\n    @cached(ttl=5)\n    def open():\n        pass\n"
    assert extract("python", source).definitions == [
        Definition("Shop", "class", 1, "class Shop:"),
        Definition("open", "function", 4, "def open():", parent="Shop"),
    ]


def test_rust_attributes_leave_the_item_on_its_own_line():
    source = b"#[derive(Debug)]\npub struct Point;\n\n#[test]\nfn adds() {}\n"
    assert extract("rust", source).definitions == [
        Definition("Point", "class", 2, "pub struct Point;"),
        Definition("adds", "function", 5, "fn adds() {}"),
    ]


def test_an_exported_decorated_typescript_class_is_shown_by_its_export_line():
    source = b'@Component({ selector: "app" })\nexport class Widget {}\n'
    assert extract("typescript", source).definitions == [
        Definition("Widget", "class", 2, "export class Widget {}")
    ]


# A map line such as `7: @Override` says nothing of the method: the declaration should be shown.
@pytest.mark.parametrize(
    ("language", "source", "expected"),
    [
        pytest.param(
            "java",
            b"class Cart {\n    @Override\n    public int total() { return 0; }\n}\n",
            Definition("total", "method", 3, "public int total() { return 0; }", "Cart"),
            id="java-method",
        ),
        pytest.param(
            "java",
            b"@Entity\npublic class User {}\n",
            Definition("User", "class", 2, "public class User {}"),
            id="java-class",
        ),
        pytest.param(
            "typescript",
            b"@Component({})\nclass Widget {}\n",
            Definition("Widget", "class", 2, "class Widget {}"),
            id="typescript-class",
        ),
    ],
)
def test_a_decorated_definition_is_shown_by_its_declaration_line(language, source, expected):
    assert extract(language, source).definitions[-1] == expected


@pytest.mark.parametrize(
    ("language", "source"),
    [
        pytest.param(
            "python",
            b'def show(order):\n    return f"total: {format_total(order)}"\n',
            id="python-f-string",
        ),
        pytest.param(
            "javascript",
            b"function show(order) {\n  return `total: ${format_total(order)}`;\n}\n",
            id="javascript-template",
        ),
    ],
)
def test_a_call_inside_an_interpolated_string_is_a_reference(language, source):
    assert "format_total" in extract(language, source).references


def test_jsx_text_is_not_a_reference():
    source = b"export const Pay = () => <button>Checkout now</button>;\n"
    symbols = extract("tsx", source)
    assert "Checkout" in symbols.words
    assert "Checkout" not in symbols.references


def test_a_long_first_line_is_cut():
    params = ", ".join(f"argument_{i}" for i in range(40))
    symbols = extract("python", f"def wide({params}):\n    pass\n".encode())
    signature = symbols.definitions[0].signature
    assert signature.startswith("def wide(argument_0, ")
    assert len(signature) == 160


def test_a_definition_on_the_last_line_without_a_newline_has_its_signature():
    symbols = extract("go", b"package p\n\nfunc Last() {}")
    assert symbols.definitions == [Definition("Last", "function", 3, "func Last() {}")]


def test_bytes_that_are_not_utf8_do_not_hide_the_definitions():
    source = b'# caf\xe9\nNAME = "\xff\xfe"\n\ndef after():\n    return NAME\n'
    symbols = extract("python", source)
    assert [(d.name, d.line) for d in symbols.definitions] == [("NAME", 2), ("after", 4)]
    assert symbols.references["NAME"] == 2


def test_the_plain_fallback_finds_keyword_definitions_in_ruby():
    source = b"""# Shop: comment_name
module Shop
  class Cart
    def total
      items.sum
    end
  end
end
"""
    symbols = extract("ruby", source)
    assert symbols.parsed is False
    assert symbols.definitions == [
        Definition("Shop", "module", 2, "module Shop"),
        Definition("Cart", "class", 3, "class Cart"),
        Definition("total", "function", 4, "def total"),
    ]
    # Without a grammar there is no telling comments from code: every identifier is a reference.
    assert {"items", "sum", "comment_name"} <= set(symbols.references)
    assert symbols.references == symbols.words


def test_the_plain_fallback_reads_c_structs_and_unknown_files():
    symbols = extract("c", b"struct point { int x; };\nint add(int a, int b) { return a + b; }\n")
    assert symbols.definitions == [Definition("point", "class", 1, "struct point { int x; };")]
    assert {"add", "point", "int"} <= set(symbols.references)
    unknown = extract(None, b"  export interface Config\nfunc  helper\n")
    assert [(d.name, d.kind, d.line) for d in unknown.definitions] == [
        ("Config", "interface", 1),
        ("helper", "function", 2),
    ]


@pytest.mark.parametrize(
    ("path", "language"),
    [
        ("src/app.py", "python"),
        ("stubs/app.pyi", "python"),
        ("web/App.JSX", "javascript"),
        ("web/server.mjs", "javascript"),
        ("web/api.ts", "typescript"),
        ("web/App.tsx", "tsx"),
        ("cmd/main.go", "go"),
        ("src/lib.rs", "rust"),
        ("src/Main.java", "java"),
        ("lib/shop.rb", "ruby"),
        ("include/x.h", "c"),
        ("Makefile", "make"),
        ("docker/Dockerfile", "dockerfile"),
        ("LICENSE", None),
        ("data.unknownext", None),
    ],
)
def test_language_of_a_path(path: str, language: str | None):
    assert language_of(path) == language


def test_empty_files_have_no_symbols():
    for language in [*sorted(PARSED), "ruby", None]:
        symbols = extract(language, b"")
        assert symbols.definitions == [] and not symbols.references and not symbols.words


@settings(max_examples=150, deadline=None)
@given(
    language=st.sampled_from([*sorted(PARSED), "ruby", None]),
    source=st.binary(max_size=600) | st.text(max_size=400).map(str.encode),
)
def test_any_bytes_give_consistent_symbols_in_any_language(language, source):
    """Arbitrary input never raises, and what comes out survives the cache's JSON."""
    symbols = extract(language, source)
    assert set(symbols.references) <= set(symbols.words)
    assert all(symbols.references[n] <= symbols.words[n] for n in symbols.references)
    assert all(1 <= d.line <= source.count(b"\n") + 1 for d in symbols.definitions)
    assert FileSymbols.from_json(json.loads(json.dumps(symbols.to_json()))) == symbols


@settings(max_examples=100, deadline=None)
@given(
    language=st.sampled_from(sorted(PARSED)),
    noise=st.lists(st.sampled_from(["{", "}", "(", ")", '"', "'", "`", "/*", "#", "\n", ";"])),
)
def test_a_broken_file_still_yields_symbols(language, noise):
    """Half-written code (unbalanced brackets, open strings) after a sample never raises."""
    sample = next(s for s in SAMPLES if s.language == language)
    symbols = extract(language, (sample.source + "".join(noise)).encode())
    assert symbols.parsed is True


@pytest.mark.parametrize("language", ["javascript", "python", "java"])
def test_a_string_escape_cutting_a_word_never_makes_a_negative_reference(language):
    source = b'label = "\\u00cdndexs \\nfoo"\nother = label\n'
    if language == "java":
        source = b'class A { String label = "\\u00cdndexs \\nfoo"; String other = label; }\n'
    symbols = extract(language, source)
    assert all(count > 0 for count in symbols.references.values()), symbols.references
    assert symbols.references["label"] >= 1
