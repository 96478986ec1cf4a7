"""``{{ text|paragraphs }}``: an experiment file's consent and instruction texts as HTML paragraphs.

Experiment files are written with hard line breaks (YAML block scalars, a text editor's wrapping), which
Django's ``linebreaks`` would keep as ``<br>`` in the middle of sentences. Here a blank line separates
paragraphs and a single newline inside a paragraph is a space, as in Markdown or LaTeX.
"""

from __future__ import annotations

import re

from django import template
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

register = template.Library()

_BLANK_LINE = re.compile(r"\n[ \t]*\n\s*")


def paragraph_texts(text: str) -> list[str]:
    """The paragraphs of ``text``: split at blank lines, each one's lines joined by single spaces."""
    text = (text or "").replace("\r\n", "\n").replace("\r", "\n").strip()
    paras = (" ".join(line.strip() for line in block.split("\n") if line.strip())
             for block in _BLANK_LINE.split(text))
    return [p for p in paras if p]


@register.filter
def paragraphs(text: str) -> SafeString:
    """``text`` as ``<p>`` elements (``paragraph_texts``), every paragraph HTML-escaped."""
    return mark_safe("\n".join(f"<p>{escape(p)}</p>" for p in paragraph_texts(text)))
