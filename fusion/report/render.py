"""One document, two renderings: a self-contained HTML page (inline CSS, every image a base64 data URI, no
external URL) and Markdown (images linked relatively). The document is a list of blocks; text in blocks may hold
`code` spans in backticks, which both renderings keep."""

from __future__ import annotations

import base64
import html
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence, Union

CODE = re.compile(r"`([^`]+)`")
NOTE, NUM = ' class="note"', ' class="num"'


@dataclass
class Heading:
    level: int  # 1 = the page title
    text: str
    anchor: str = ""  # an id for the HTML table of contents


@dataclass
class Paragraph:
    text: str
    note: bool = False  # a remark in a muted box (e.g. "none logged")


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]
    numeric: set[str] = field(default_factory=set)  # headers of right-aligned columns
    best_first: bool = False  # highlight the first row


@dataclass
class Figure:
    path: Path
    caption: str


@dataclass
class Gallery:
    """Figures side by side under one caption (the attention figures of one sample)."""

    caption: str
    figures: list[Figure]


Block = Union[Heading, Paragraph, Table, Figure, Gallery]

CSS = """
body { font-family: -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; margin: 0; color: #1f2328;
       background: #f6f8fa; line-height: 1.45; }
main { max-width: 1440px; margin: 0 auto; padding: 24px 32px 64px; background: #fff; }
h1 { font-size: 1.9em; border-bottom: 2px solid #d0d7de; padding-bottom: .3em; }
h2 { font-size: 1.5em; margin-top: 2em; border-bottom: 1px solid #d0d7de; padding-bottom: .2em; }
h3 { font-size: 1.2em; margin-top: 1.6em; }
h4 { font-size: 1.05em; margin-top: 1.2em; color: #444; }
code { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: .88em;
       background: #eff1f3; padding: .1em .35em; border-radius: 4px; }
p.note { background: #fff8e5; border-left: 4px solid #d4a72c; padding: .5em .9em; color: #57430e; }
nav.toc { background: #f6f8fa; border: 1px solid #d0d7de; border-radius: 6px; padding: .6em 1.2em; }
nav.toc a { color: #0969da; text-decoration: none; }
nav.toc ul { margin: .2em 0; padding-left: 1.2em; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; margin: .8em 0; font-size: .86em; }
th, td { border: 1px solid #d0d7de; padding: 4px 8px; }
td { white-space: nowrap; }
th { background: #eaeef2; text-align: left; vertical-align: bottom; min-width: 3.5em; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tbody tr:nth-child(even) { background: #f6f8fa; }
tbody tr.best { background: #dafbe1; font-weight: 600; }
figure { margin: 1em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #d0d7de; border-radius: 4px; background: #fff; }
figcaption { color: #57606a; font-size: .9em; margin-top: .3em; }
.gallery { display: flex; flex-wrap: wrap; gap: 12px; align-items: flex-start; }
.gallery figure { margin: 0; flex: 0 1 auto; max-width: 100%; }
"""


def inline(text: str) -> str:
    """Escaped HTML of a block's text, with `code` spans."""
    parts = CODE.split(text)
    return "".join(
        f"<code>{html.escape(part)}</code>" if odd else html.escape(part)
        for odd, part in ((i % 2 == 1, p) for i, p in enumerate(parts))
    )


def data_uri(path: Path) -> str:
    """The PNG's bytes as a data: URI, so the page needs no file next to it."""
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def to_html(blocks: Sequence[Block], title: str) -> str:
    """The page: the title, a table of contents from the anchored headings, then every block."""
    toc = [b for b in blocks if isinstance(b, Heading) and b.anchor and b.level in (2, 3)]
    body = []
    for block in blocks:
        body.append(_html_block(block))
        if isinstance(block, Heading) and block.level == 1 and toc:
            body.append(_toc(toc))
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">\n<title>{html.escape(title)}'
        f"</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n" + "\n".join(body) + "\n</main>\n</body>\n</html>\n"
    )


def _toc(headings: Sequence[Heading]) -> str:
    items, open_sub = [], False
    for heading in headings:
        link = f'<a href="#{heading.anchor}">{inline(heading.text)}</a>'
        if heading.level == 3:
            items.append(("" if open_sub else "<ul>") + f"<li>{link}</li>")
            open_sub = True
        else:
            items.append(("</ul>" if open_sub else "") + f"<li>{link}</li>")
            open_sub = False
    return (
        '<nav class="toc"><strong>Contents</strong><ul>'
        + "".join(items)
        + ("</ul>" if open_sub else "")
        + "</ul></nav>"
    )


def _html_block(block: Block) -> str:
    if isinstance(block, Heading):
        anchor = f' id="{html.escape(block.anchor)}"' if block.anchor else ""
        return f"<h{block.level}{anchor}>{inline(block.text)}</h{block.level}>"
    if isinstance(block, Paragraph):
        return f"<p{NOTE if block.note else ''}>{inline(block.text)}</p>"
    if isinstance(block, Table):
        head = "".join(f"<th{NUM if h in block.numeric else ''}>{inline(h)}</th>" for h in block.header)
        rows = []
        for index, row in enumerate(block.rows):
            best = ' class="best"' if block.best_first and index == 0 else ""
            cells = "".join(
                f"<td{NUM if h in block.numeric else ''}>{inline(c)}</td>"
                for h, c in zip(block.header, row, strict=False)
            )
            rows.append(f"<tr{best}>{cells}</tr>")
        return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table></div>'
    if isinstance(block, Figure):
        return _html_figure(block)
    return (
        f'<h4>{inline(block.caption)}</h4>\n<div class="gallery">'
        + "".join(_html_figure(f) for f in block.figures)
        + "</div>"
    )


def _html_figure(figure: Figure) -> str:
    alt = html.escape(CODE.sub(r"\1", figure.caption), quote=True)
    return (
        f'<figure><img src="{data_uri(figure.path)}" alt="{alt}">'
        f"<figcaption>{inline(figure.caption)}</figcaption></figure>"
    )


def to_markdown(blocks: Sequence[Block], markdown_dir: Path) -> str:
    """The same blocks as Markdown; images as links relative to the folder of the Markdown file."""
    out = []
    for block in blocks:
        if isinstance(block, Heading):
            out.append("#" * block.level + " " + block.text)
        elif isinstance(block, Paragraph):
            out.append(("> " if block.note else "") + block.text)
        elif isinstance(block, Table):
            out.append(
                "\n".join(
                    [
                        "| " + " | ".join(block.header) + " |",
                        "|" + "|".join(" ---: " if h in block.numeric else " --- " for h in block.header) + "|",
                        *("| " + " | ".join(_md_cell(c) for c in row) + " |" for row in block.rows),
                    ]
                )
            )
        elif isinstance(block, Figure):
            out.append(_md_figure(block, markdown_dir))
        else:
            out.append(f"**{block.caption}**\n\n" + "\n".join(_md_figure(f, markdown_dir) for f in block.figures))
    return "\n\n".join(out) + "\n"


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|")


def _md_figure(figure: Figure, markdown_dir: Path) -> str:
    link = Path(os.path.relpath(Path(figure.path).resolve(), Path(markdown_dir).resolve())).as_posix()
    alt = CODE.sub(r"\1", figure.caption).replace("[", "(").replace("]", ")")
    return f"![{alt}]({link.replace(' ', '%20')})  \n*{figure.caption}*"
