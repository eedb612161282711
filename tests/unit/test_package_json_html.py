"""A JSON file's page fragment, written straight to HTML: every key, column and value is text
(escaped, bidi controls shown), and every cap says what it left out."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from dsr_export.rendering import json_html
from dsr_export.rendering.json_html import MAX_DEPTH, MAX_ITEMS, MAX_ROWS, MAX_VALUES


def _more(what: json_html.More, count: int) -> str:
    return f"{count} more {what} not shown"


def render(value: object) -> str:
    return str(json_html.json_html(value, _more))


def test_hostile_keys_columns_and_values_are_text():
    value = {
        "<script>document.title='owned'</script>": [
            {"<img src=x onerror=alert(1)>": "javascript:alert(1)", "b": '"><svg onload=x>'}
        ],
        "name\u202egnp.exe": "a\u2066b",
    }
    page = render(value)
    assert "<script" not in page
    assert "<img" not in page
    assert "<svg" not in page
    assert "&lt;script&gt;document.title=&#x27;owned&#x27;&lt;/script&gt;" in page
    assert '<th scope="col">&lt;img src=x onerror=alert(1)&gt;</th>' in page
    assert '<span class="kind-string">javascript:alert(1)</span>' in page  # text, not a link
    assert "&quot;&gt;&lt;svg onload=x&gt;" in page
    assert "\u202e" not in page
    assert "\u2066" not in page
    assert "name[U+202E]gnp.exe" in page
    assert "a[U+2066]b" in page


def test_scalars_keep_their_kind():
    page = render([{"a": None, "b": True, "c": 3, "d": 1.5, "e": "x"}, {"a": 1}])
    assert '<td><span class="kind-null null">null</span></td>' in page
    assert '<td><span class="kind-bool">true</span></td>' in page
    assert '<td><span class="kind-number">3</span></td>' in page
    assert '<td><span class="kind-number">1.5</span></td>' in page
    assert page.count('<td><span class="kind-string"></span></td>') == 4, "missing cells"


def test_rows_items_and_fields_past_their_caps_are_counted():
    rows = render([{"n": n} for n in range(MAX_ROWS + 7)])
    assert rows.count("<tr>") == MAX_ROWS + 1  # the header row and the rows shown
    assert "7 more rows not shown" in rows
    items = render(list(range(MAX_ITEMS + 3)))
    assert items.count("<li>") == MAX_ITEMS
    assert "3 more items not shown" in items
    fields = render({f"k{n}": n for n in range(MAX_ITEMS + 2)})
    assert "2 more fields not shown" in fields


def test_a_page_stops_at_its_value_budget_and_says_where():
    wide = [[{"a": n, "b": n, "c": n} for n in range(MAX_ROWS)] for _ in range(MAX_ITEMS)]
    page = render(wide)
    assert page.count("<span ") <= MAX_VALUES + 2
    assert re.search(r"\d+ more rows not shown", page)
    assert re.search(r"\d+ more items not shown", page)


def test_values_deeper_than_the_cap_are_shown_as_their_json_text():
    deep: object = "bottom"
    for _ in range(MAX_DEPTH + 3):
        deep = [deep, "<x>"]
    page = render(deep)
    assert page.count('<ul class="tree">') == MAX_DEPTH
    assert "[&quot;bottom&quot;, &quot;&lt;x&gt;&quot;]" in page


@settings(max_examples=150, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
        lambda children: (
            st.lists(children, max_size=4)
            | st.dictionaries(st.text(max_size=8), children, max_size=4)
        ),
        max_leaves=30,
    )
)
def test_no_value_of_the_export_becomes_markup(value: object):
    page = render(value)
    tags = set(re.findall(r"</?([a-zA-Z][a-zA-Z0-9]*)", page))
    assert tags <= {"table", "tbody", "thead", "tr", "th", "td", "span", "ul", "li", "p"}
    assert not re.search(r"[\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c]", page)
