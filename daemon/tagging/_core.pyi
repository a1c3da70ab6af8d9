"""Types of the compiled tagger core (``_core.pyx``), for mypy."""

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

FAMILY_SLOTS: tuple[str, ...]
FLAG_ASKING: int
FLAG_PROPOSING: int
FLAG_APPROVED: int
FLAG_STRONG: int
FLAG_EXPLICIT: int
SHAPE_NAMES: tuple[str, ...]
TIER_NAMES: tuple[str, ...]

def round2(x: float) -> float: ...
def json_float(x: float) -> str | None: ...

class Features:
    tokens: list[str]
    joined: str
    terms: frozenset[str]
    n_chars: int
    n_digits: int
    n_questions: int
    table_rows: int
    quoted: int
    inline_code: int
    list_items: int
    code_share: float
    truncated: bool
    ntok: int
    has_not: bool
    has_or: bool

class Core:
    def __init__(
        self,
        *,
        extract: Callable[[str], Any],
        not_figure_search: Callable[[str], object],
        not_figure: str,
        stopwords: frozenset[str],
        agent_names: frozenset[str],
        scan_chars: int,
        patterns: Sequence[tuple[tuple[str, ...], tuple[int, ...]]],
        ranked: Sequence[tuple[str, str]],
        flags: Sequence[int],
        model_version: str | None,
        tables: Mapping[str, Any] | None,
    ) -> None: ...
    def extract(self, content: str) -> Features: ...
    def tag_rows(
        self,
        rows: Iterable[tuple[str, str, str, str | None, str]],
        cache: Any,
        version: str,
        dumps: Callable[[Any], bytes],
        past_message: type,
    ) -> list[Any]: ...
    def tag(
        self,
        content: str,
        message_id: str,
        agent: str,
        reply_to: str | None,
        hist: Any,
        as_json: bool = False,
    ) -> tuple[Any, str, float, tuple[int, int, int, int, int, int], int, int, Any, frozenset[str]]: ...
