"""The one renderer: a document is a title and a list of blocks, written as Markdown and HTML.

    doc = Document("Verification", [Heading("Numbers"), Paragraph("**PASSED**"),
                                     Table(["probe", "exact match"], [["output", "100.00 %"]]),
                                     Image("energy.png", "Energy per inference")])
    to_markdown(doc)             # images stay beside it as files
    to_html(doc, directory)      # one self-contained page: every image inline as base64

Every report (verify, energy, the demo's) is a function record -> Document
(`cf2neuro.report.documents`), so the two formats cannot drift apart. Inline
markup in text and cells: ``**bold**`` and ```code```.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence, Union


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2  # the document's title is the only level 1


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class Bullets:
    items: Sequence[str]


@dataclass(frozen=True)
class Table:
    header: Sequence[str]
    rows: Sequence[Sequence[str]]
    align: str = ""  # one letter per column, "l" or "r"; missing letters read "l"

    def __post_init__(self):
        for row in self.rows:
            if len(row) != len(self.header):
                raise ValueError(f"table row {list(row)} has {len(row)} cells for "
                                 f"{len(self.header)} columns {list(self.header)}")

    def alignment(self, column: int) -> str:
        return "right" if self.align[column:column + 1] == "r" else "left"


@dataclass(frozen=True)
class Image:
    file: str  # relative to the document's directory
    caption: str


Block = Union[Heading, Paragraph, Bullets, Table, Image]


@dataclass
class Document:
    title: str
    blocks: list[Block] = field(default_factory=list)

    def images(self) -> list[str]:
        return [b.file for b in self.blocks if isinstance(b, Image)]


# ---- Markdown ---------------------------------------------------------------------------

def _md_cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def to_markdown(doc: Document) -> str:
    lines = [f"# {doc.title}", ""]
    for b in doc.blocks:
        if isinstance(b, Heading):
            lines += [f"{'#' * max(2, b.level)} {b.text}", ""]
        elif isinstance(b, Paragraph):
            lines += [b.text, ""]
        elif isinstance(b, Bullets):
            lines += [*[f"- {item}" for item in b.items], ""]
        elif isinstance(b, Table):
            rule = "".join("---:|" if b.alignment(i) == "right" else "---|"
                           for i in range(len(b.header)))
            lines += ["| " + " | ".join(_md_cell(c) for c in b.header) + " |", "|" + rule,
                      *["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in b.rows],
                      ""]
        elif isinstance(b, Image):
            lines += [f"![{b.caption}]({b.file})", "", f"*{b.caption}*", ""]
        else:
            raise TypeError(f"not a document block: {b!r}")
    return "\n".join(lines)


# ---- HTML -------------------------------------------------------------------------------

def inline_html(text) -> str:
    """Escape, then `code` -> <code>, **bold** -> <strong> (outside code)."""
    out = []
    for i, part in enumerate(str(text).split("`")):
        if i % 2:
            out.append(f"<code>{html.escape(part)}</code>")
        else:
            bold = html.escape(part).split("**")
            out.append("".join(f"<strong>{s}</strong>" if j % 2 else s
                               for j, s in enumerate(bold)))
    return "".join(out)


_STYLE = """
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; max-width: 960px;
       margin: 2em auto; padding: 0 1em; color: #222; line-height: 1.45; }
table { border-collapse: collapse; margin: 0.5em 0 1em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.7em; }
th { background: #f3f3f3; }
td.r, th.r { text-align: right; font-variant-numeric: tabular-nums; }
code { background: #f3f3f3; padding: 0 0.2em; }
figure { margin: 0.5em 0 1.5em; }
figure img { max-width: 100%; }
figcaption { color: #555; font-size: 0.9em; }
"""


def _html_table(b: Table) -> str:
    def cls(i):
        return ' class="r"' if b.alignment(i) == "right" else ""

    head = "".join(f"<th{cls(i)}>{inline_html(c)}</th>" for i, c in enumerate(b.header))
    rows = "".join("<tr>" + "".join(f"<td{cls(i)}>{inline_html(c)}</td>"
                                    for i, c in enumerate(row)) + "</tr>" for row in b.rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def to_html(doc: Document, directory=None) -> str:
    """One self-contained page; images are read from `directory` and inlined as base64."""
    body = [f"<h1>{inline_html(doc.title)}</h1>"]
    for b in doc.blocks:
        if isinstance(b, Heading):
            level = min(max(2, b.level), 6)
            body.append(f"<h{level}>{inline_html(b.text)}</h{level}>")
        elif isinstance(b, Paragraph):
            body.append(f"<p>{inline_html(b.text)}</p>")
        elif isinstance(b, Bullets):
            body.append("<ul>" + "".join(f"<li>{inline_html(i)}</li>" for i in b.items)
                        + "</ul>")
        elif isinstance(b, Table):
            body.append(_html_table(b))
        elif isinstance(b, Image):
            data = base64.b64encode((Path(directory or ".") / b.file).read_bytes())
            body.append(f'<figure><img alt="{html.escape(b.caption)}" '
                        f'src="data:image/png;base64,{data.decode("ascii")}"><figcaption>'
                        f"{inline_html(b.caption)}</figcaption></figure>")
        else:
            raise TypeError(f"not a document block: {b!r}")
    title = html.escape(doc.title.replace("**", "").replace("`", ""))
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{title}</title><style>{_STYLE}</style></head>\n<body>\n"
            + "\n".join(body) + "\n</body></html>\n")


__all__ = ["Heading", "Paragraph", "Bullets", "Table", "Image", "Block", "Document",
           "to_markdown", "to_html", "inline_html"]
