"""Step 1 of the rules pipeline: turn a message's content into the features every later step reads.

Everything here is a pure function of the content. The cost is bounded whatever the message: only the first
:data:`SCAN_CHARS` characters are read, because a 256 KiB pasted log would otherwise dominate the batch, and
the act of a message is decided by its opening paragraphs anyway.
"""

from __future__ import annotations

import re
from itertools import filterfalse
from typing import NamedTuple

#: Only this many characters of a message are scanned for markers and novelty.
SCAN_CHARS = 16 * 1024

#: Words: runs of letters (any script), digits and underscores, joined by single inner apostrophes
#: ("don't", "i'd", "3d", "snake_case"); quotes around a word are not part of it. Matching whole tokens,
#: never substrings, is what keeps "ui" from matching inside "required".
_WORD_RE = re.compile(r"\w+(?:'\w+)*")
#: ASCII fast path (most messages), the same tokens as _WORD_RE without the regex engine: every byte that
#: cannot be in a word becomes a space, apostrophes next to a space are dropped, then str.split. It is
#: taken only when no two apostrophes touch (the one case where the two could differ); a test compares
#: both paths on every labelled message.
_ASCII_WORD_BYTES = bytes(
    c if chr(c).isascii() and (chr(c).isalnum() or chr(c) in "_'") else 32 for c in range(256)
)

#: Fenced code blocks; an unclosed fence runs to the end of the message.
_FENCE_RE = re.compile(r"```.*?(?:```|\Z)", re.DOTALL)
#: Lines quoting another message (markdown ``>``): their words are someone else's, so they do not count.
_QUOTE_RE = re.compile(r"^[ \t]*>.*$", re.MULTILINE)
#: List items: lines opening with "-", "*", "•" or "1." / "1)" (task lists, specs, step-by-step plans).
_LIST_RE = re.compile(r"^[ \t]*(?:[-*\u2022]|\d{1,2}[.)])[ \t]", re.MULTILINE)
#: Markdown table rows.
_TABLE_RE = re.compile(r"^[ \t]*\|.*\|[ \t]*$", re.MULTILINE)

#: Words too common to say anything about novelty.
STOPWORDS = frozenset(
    """
    the and for that this with are was were you your yours our ours they them their there then than what
    when where which who whom why how not but all any can could would should will shall may might must
    have has had having been being does did doing done from into onto over under about after before
    again once here just also only very too more most some such own same other each both few nor off out
    its it's i'm i'd i'll i've we're we'd we'll we've you're you'd you'll that's there's let's don't
    doesn't didn't isn't aren't wasn't won't can't couldn't shouldn't wouldn't one two get got make
    made use used using like well still even now yes okay think see way thing things lot much many
    am an as at be by do go he if in is it me my no of oh ok on or so to up us we
    """.split()
    # single letters: "it/s", "3e-4" and initials split into them
    + list("abcdefghijklmnopqrstuvwxyz")
)


_is_stopword = STOPWORDS.__contains__


class TextFeatures(NamedTuple):
    """What the later pipeline steps read about one message's text (a NamedTuple: cheap to build)."""

    tokens: list[str]  #: lower-cased word tokens of the prose (code and quoted lines removed)
    joined: str  #: " tok1 tok2 ... " so that phrases match on word boundaries with ``in``
    content_terms: frozenset[str]  #: tokens that are not stopwords (nor single letters)
    n_chars: int  #: length of the full content
    n_digits: int  #: digits in the prose: figures, versions, sizes, times
    n_questions: int  #: question marks in the prose
    code_share: float  #: share of scanned characters inside fenced code blocks
    table_rows: int  #: markdown table rows
    quoted_lines: int  #: lines quoting another message
    inline_code: int  #: `inline code` spans in the prose (identifiers, commands, queries)
    list_items: int  #: lines that are list items
    truncated: bool  #: content was longer than SCAN_CHARS


def extract(content: str) -> TextFeatures:
    """Normalise and tokenise ``content`` (any size, any script) into :class:`TextFeatures`."""
    text = content[:SCAN_CHARS]
    scanned = len(text)
    code_chars = 0
    if "```" in text:
        code_chars = sum(len(m) for m in _FENCE_RE.findall(text))
        text = _FENCE_RE.sub(" ", text)
    quoted = 0
    if ">" in text:
        quoted = len(_QUOTE_RE.findall(text))
        if quoted:
            text = _QUOTE_RE.sub(" ", text)
    table_rows = len(_TABLE_RE.findall(text)) if "|" in text else 0
    inline_code = text.count("`") // 2
    list_items = len(_LIST_RE.findall(text)) if "\n" in text else 0
    lower = text.lower()
    if lower.isascii() and "''" not in lower:
        tokens = ascii_words(lower)
    else:
        lower = lower.replace("\u2019", "'")
        tokens = _WORD_RE.findall(lower)
    # positional: a NamedTuple built from keywords pays for mapping them onto its fields
    return TextFeatures(
        tokens,
        " " + " ".join(tokens) + " ",  # joined
        # filtered in C before the set is built: a third cheaper than a set of all tokens minus STOPWORDS
        frozenset(filterfalse(_is_stopword, tokens)),  # content_terms
        len(content),  # n_chars
        _count_digits(lower),
        lower.count("?"),  # n_questions
        code_chars / scanned if scanned else 0.0,  # code_share
        table_rows,
        quoted,  # quoted_lines
        inline_code,
        list_items,
        len(content) > SCAN_CHARS,  # truncated
    )


#: ``bytes.translate`` deletes these; what it removes is the digit count.
_DIGITS = b"0123456789"


def _count_digits(text: str) -> int:
    """ASCII digits in ``text`` (what ``str.count`` of each digit adds up to).

    UTF-8 never uses an ASCII byte inside a multi-byte character, so counting digit bytes is exact for any
    script; "surrogatepass" keeps a lone surrogate (possible in a str) from raising. One encode and one
    C-level delete cost a fifth of ten ``str.count`` calls.
    """
    data = text.encode("utf-8", "surrogatepass")
    return len(data) - len(data.translate(None, _DIGITS))


def ascii_words(lower: str) -> list[str]:
    """:data:`_WORD_RE`'s tokens of lower-cased ASCII ``lower`` that has no ``''`` in it, at a third of
    the regex's cost: one C-level byte translation, two replaces and a split."""
    spaced = (" " + lower + " ").encode("ascii").translate(_ASCII_WORD_BYTES).decode("ascii")
    if "'" in spaced:
        spaced = spaced.replace(" '", " ").replace("' ", " ")
    return spaced.split()


def tokenize(text: str) -> tuple[str, ...]:
    """The same word tokens :func:`extract` produces, for marker phrases and tests."""
    return tuple(_WORD_RE.findall(text.lower().replace("\u2019", "'")))
