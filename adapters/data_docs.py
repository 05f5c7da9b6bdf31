"""GX Data Docs that render without a network: offline, and inside MLflow's artifact viewer.

GX 1.x pages load Bootstrap, jQuery, bootstrap-table, Font Awesome and Vega from CDNs, and the
site's index builds its tables in JavaScript from those libraries: offline the index is empty.
MLflow's artifact viewer shows an HTML artifact alone (a blob URL in a sandboxed frame), so
relative stylesheets do not load there either. After GX has built a site, every page is rewritten
to stand alone: remote scripts, stylesheets and images removed, all scripts dropped (what they
drew is written out as HTML: the index's tables), and one small stylesheet inlined. Icons are
drawn by that stylesheet, so a page reads the same without Font Awesome.
"""

from __future__ import annotations

import ast
import html as html_lib
import re
from pathlib import Path
from typing import Any

STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;padding:0 16px 48px;
color:#212529;background:#fff;font-size:14px;line-height:1.45}
a{color:#0062cc}
.container,.container-fluid{max-width:1400px;margin:0 auto}
table{border-collapse:collapse;margin:8px 0 16px;width:100%}
th,td{border:1px solid #dee2e6;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f1f3f5}
.nav,.nav-tabs{list-style:none;padding:0;display:flex;gap:16px;font-weight:600}
.tab-pane,.collapse,.fade{display:block!important;opacity:1!important}
.card{border:1px solid #dee2e6;border-radius:6px;margin:12px 0;padding:8px 12px}
.card-header{font-weight:600;border-bottom:1px solid #dee2e6;margin:-8px -12px 8px;
padding:6px 12px;background:#f8f9fa}
.badge{display:inline-block;padding:1px 6px;border-radius:4px;background:#e9ecef}
.text-success{color:#198754}.text-danger{color:#dc3545}.text-warning{color:#b58100}
.cooltip .top{display:none}
.navbar,footer,#ge-cta-footer,.ge-footer,.btn{display:none!important}
.fas::before,.far::before{font-style:normal}
.fa-check-circle::before,.fa-check::before{content:"\\2714 "}
.fa-times-circle::before,.fa-times::before{content:"\\2718 "}
.fa-exclamation-triangle::before{content:"\\26A0 "}
.fa-info-circle::before,.fa-question-circle::before{content:"\\24D8 "}
"""

_SCRIPT = re.compile(r"<script\b[^>]*>.*?</script\s*>", re.S | re.I)
_REMOTE_LINK = re.compile(r"<link\b[^>]*\bhref=[\"']?https?://[^>]*>", re.I)
_REMOTE_IMG = re.compile(r"<img\b[^>]*\bsrc=[\"']?https?://[^>]*>", re.I)
_REMOTE_CSS_URL = re.compile(r"url\(\s*['\"]?https?://[^)]*\)", re.I)
# The index's tables: `$('#<id>').bootstrapTable(Object.assign({columns: [...], data: [...],`,
# both lists written by GX as Python literals.
_TABLE_SCRIPT = re.compile(
    r"\$\('#(?P<id>[\w-]+)'\)\.bootstrapTable\(\s*Object\.assign\(\s*\{\s*"
    r"columns:\s*(?P<columns>\[.*?\]),\s*data:\s*(?P<data>\[.*?\]),\s*toolbar:",
    re.S,
)


def static_table_rows(columns: list[dict[str, Any]], data: list[dict[str, Any]]) -> str:
    """The `<thead>`/`<tbody>` that bootstrap-table would draw from GX's columns and rows.

    Cell values are GX's own HTML (icons, links). A whole row is a link in GX (to its validation
    result or suite page): here the run time, or the first column, carries it. The status cell
    also says Success/Failed in words."""
    visible = [c for c in columns if str(c.get("visible", "true")).lower() != "false"]
    head = "".join(f"<th>{html_lib.escape(str(c.get('title', c['field'])))}</th>" for c in visible)
    fields = [c["field"] for c in visible]
    link_field = "run_time" if "run_time" in fields else (fields[0] if fields else None)
    rows = []
    for row in data:
        cells = []
        for col in visible:
            value = str(row.get(col["field"], ""))
            if col["field"] == link_field and row.get("_table_row_link_path"):
                value = f'<a href="{html_lib.escape(row["_table_row_link_path"])}">{value}</a>'
            if col["field"] == "validation_success" and row.get("_validation_success_text"):
                value += html_lib.escape(str(row["_validation_success_text"]))
            cells.append(f"<td>{value}</td>")
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody>"


def _fill_tables(page: str) -> str:
    for match in _TABLE_SCRIPT.finditer(page):
        try:
            columns = ast.literal_eval(match["columns"])
            data = ast.literal_eval(match["data"])
        except (SyntaxError, ValueError):
            continue  # a layout this code does not know: the page keeps its empty table
        table = re.search(rf"<table\b[^>]*\bid=\"{re.escape(match['id'])}\"[^>]*>\s*</table>", page)
        if table is not None:
            close = table.end() - len("</table>")
            page = page[:close] + static_table_rows(columns, data) + page[close:]
    return page


def offline_page(page: str, css: str = STYLE) -> str:
    """One Data Docs page that needs nothing but itself."""
    page = _fill_tables(page)  # before the scripts holding the tables' rows go
    page = _SCRIPT.sub("", page)
    page = _REMOTE_LINK.sub("", page)
    page = _REMOTE_IMG.sub("", page)
    page = _REMOTE_CSS_URL.sub("none", page)
    style = f"<style>{css}</style>"
    return page.replace("</head>", f"{style}</head>", 1) if "</head>" in page else style + page


def make_site_offline(site: Path) -> None:
    """Rewrite every page of a built Data Docs site in place (see the module docstring)."""
    for page in sorted(site.rglob("*.html")):
        page.write_text(offline_page(page.read_text(encoding="utf-8")), encoding="utf-8")
