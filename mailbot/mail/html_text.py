"""HTML body text to plain text (`html_to_text`), by a linear scanner: Python 3.11's
`html.parser` is quadratic or worse on unclosed constructs (100 KB of `<a ` cost 96 s)."""

from __future__ import annotations

import html
import re

_SPACES = re.compile(r"\s+")
_BLOCK_TAGS = frozenset("""p div br tr li h1 h2 h3 h4 h5 h6 table ul ol blockquote hr pre
    section article header footer dd dt title""".split())
_SKIP_TAGS = frozenset({"script", "style", "head", "xml"})
_TAG_START = re.compile(r"</?([A-Za-z][A-Za-z0-9:-]*)")
_SKIP_END = {t: re.compile(rf"</{t}\s*>", re.I) for t in _SKIP_TAGS}


def html_to_text(source: str) -> str:
    """Crude and linear: tags dropped (block tags become line breaks), script/style/head
    skipped, comments dropped, entities decoded. Unclosed constructs end the text."""
    out: list[str] = []
    i, n = 0, len(source)
    while i < n:
        lt = source.find("<", i)
        if lt == -1:
            out.append(source[i:])
            break
        out.append(source[i:lt])
        if source.startswith("<!--", lt):
            end = source.find("-->", lt + 4)
            i = n if end == -1 else end + 3
            continue
        m = _TAG_START.match(source, lt)
        if not m and not source.startswith(("<!", "<?"), lt):
            out.append("<")  # a lone '<' is text
            i = lt + 1
            continue
        gt = source.find(">", lt + 1)
        if gt == -1:
            break
        name = m.group(1).lower() if m else ""
        closing = source.startswith("</", lt)
        if name in _SKIP_TAGS and not closing and not source.startswith("/>", gt - 1):
            end_m = _SKIP_END[name].search(source, gt + 1)
            i = n if end_m is None else end_m.end()
            continue
        if name in _BLOCK_TAGS:
            out.append("\n")
        elif name == "td":
            out.append(" ")
        i = gt + 1
    text = html.unescape("".join(out)).replace("\xa0", " ")
    lines = (_SPACES.sub(" ", line).strip() for line in text.splitlines())
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
