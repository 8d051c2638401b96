"""One self-contained HTML page: figures embedded as base64 PNG (data: URIs), tables inline, inline CSS, no
scripts and no links to anything, so the file can be mailed or opened offline and still shows everything."""

from __future__ import annotations

import base64
import json
from datetime import datetime
from html import escape
from typing import Any

from lth.report.figures import FigureFile

CSS = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 1.5em auto; padding: 0 1em; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.2em; border-bottom: 1px solid #ccc; margin-top: 2em; }
figure { margin: 1.2em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 0.9em; color: #444; margin-top: 0.3em; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.8em 0; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.5em; text-align: right; }
th { background: #f3f3f3; } td.l, th.l { text-align: left; }
.notes { background: #fff6e0; border-left: 4px solid #e0a000; padding: 0.5em 1em; }
pre { font-size: 0.8em; background: #f7f7f7; padding: 0.6em; overflow-x: auto; }
code { font-size: 0.9em; }
"""


def figure(f: FigureFile) -> str:
    data = base64.b64encode(f.png.read_bytes()).decode()
    return (f'<figure id="{escape(f.name)}"><img alt="{escape(f.title)}" src="data:image/png;base64,{data}">'
            f"<figcaption><b>{escape(f.title)}.</b> {escape(f.caption)} "
            f"<i>(files: {escape(f.png.name)}, {escape(f.svg.name)})</i></figcaption></figure>")


def table(header: list[str], rows: list[list[str]], left: int = 0) -> str:
    """`left`: how many leading columns are text (left-aligned)."""
    def cls(i: int) -> str:
        return ' class="l"' if i < left else ""

    head = "".join(f"<th{cls(i)}>{escape(h)}</th>" for i, h in enumerate(header))
    body = "".join("<tr>" + "".join(f"<td{cls(i)}>{escape(c)}</td>" for i, c in enumerate(r)) + "</tr>"
                   for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def page(title: str, runs: list[Any], notes: list[str], sections: list[tuple[str, list[Any]]]) -> str:
    """`sections`: (heading, items), an item being a FigureFile or an HTML string."""
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{escape(title)}</title>"
             f"<style>{CSS}</style></head><body>", f"<h1>Lottery ticket report</h1><p>{escape(title)}</p>"]
    run_rows = [[r.label, r.name, str(len(r.summaries)), str(r.root)] for r in runs]
    parts.append(table(["label", "run folder", "finished trainings", "path"], run_rows, left=4))
    if notes:
        parts.append("<div class='notes'><b>Notes: what is missing or left out</b><ul>"
                     + "".join(f"<li>{escape(n)}</li>" for n in notes) + "</ul></div>")
    toc = "".join(f"<li>{escape(h)}</li>" for h, items in sections if items)
    parts.append(f"<ol>{toc}</ol>")
    for heading, items in sections:
        if not items:
            continue
        parts.append(f"<h2>{escape(heading)}</h2>")
        parts += [figure(i) if isinstance(i, FigureFile) else i for i in items]
    parts.append("<h2>Configurations</h2>")
    for r in runs:
        parts.append(f"<details><summary>{escape(r.label)} ({escape(r.name)})</summary>"
                     f"<pre>{escape(json.dumps(r.config, indent=1))}</pre></details>")
    parts.append(f"<p><small>Written by lth report, {datetime.now():%Y-%m-%d %H:%M}.</small></p></body></html>")
    return "\n".join(parts)
