"""Data Docs pages that stand alone (adapters/data_docs.py), on a site GX really builds."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from adapters.data_docs import make_site_offline, offline_page, static_table_rows


def test_a_real_site_needs_no_network_and_its_index_lists_the_validation(tmp_path: Path) -> None:
    from adapters.gx import build_suite, import_gx, run_suite

    gx = import_gx()
    suite = build_suite(
        "raw",
        [
            gx.expectations.ExpectColumnValuesToNotBeNull(column="Age"),
            gx.expectations.ExpectColumnValuesToBeBetween(column="Age", min_value=18),
        ],
    )
    frame = pd.DataFrame({"Age": [30, 12, 45]})
    run = run_suite(frame, suite, tmp_path / "site")
    assert not run.success
    index = (tmp_path / "site" / "index.html").read_text()
    assert "cdn" in index and "bootstrapTable" in index  # what GX writes

    make_site_offline(tmp_path / "site")
    for page in (tmp_path / "site").rglob("*.html"):
        text = page.read_text()
        assert "<script" not in text, page
        assert not re.search(r"(src|href)=[\"']?https?://[^\"'>]*\.(js|css|png)", text), page
        assert "<style>" in text
    index = (tmp_path / "site" / "index.html").read_text()
    rows = re.findall(r"<tr>(.*?)</tr>", index, re.S)
    validation = [r for r in rows if "Failed" in r]
    assert len(validation) == 1 and "raw" in validation[0]
    assert re.search(r'<a href="validations/raw/[^"]+\.html">', validation[0])


def test_static_rows_link_the_row_and_say_the_status_in_words() -> None:
    columns = [
        {"field": "validation_success", "title": "Status"},
        {"field": "run_time", "title": "Run Time"},
        {"field": "hidden", "title": "x", "visible": "false"},
    ]
    data = [
        {
            "validation_success": '<i class="fas fa-check-circle"></i>',
            "run_time": "2026-01-01 00:00:00 UTC",
            "_validation_success_text": "Success",
            "_table_row_link_path": "validations/a.html",
        }
    ]
    html = static_table_rows(columns, data)
    assert "<th>Status</th><th>Run Time</th></tr>" in html and "<th>x</th>" not in html
    assert '<a href="validations/a.html">2026-01-01 00:00:00 UTC</a>' in html
    assert "</i>Success</td>" in html


def test_a_page_this_code_does_not_know_keeps_its_content() -> None:
    page = (
        '<html><head><link rel="stylesheet" href="https://cdn.example/b.css">'
        '<script src="https://cdn.example/j.js"></script></head>'
        '<body><p style="background: url(https://x/y.png)">kept</p>'
        '<img src="https://x/logo.png"><script>$("#t").bootstrapTable({})</script></body></html>'
    )
    out = offline_page(page, css="p{}")
    assert out == (
        "<html><head><style>p{}</style></head>"
        '<body><p style="background: none">kept</p></body></html>'
    )
