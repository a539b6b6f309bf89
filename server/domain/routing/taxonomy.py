"""The Indian PSP / UPI error taxonomy: (psp, code or status) → retry category.

The data lives in `error_taxonomy.csv` beside this module (versioned by its `# version: N`
first line) so payments people can read and review it without reading code. Lookup falls back
from the exact code to the NPCI code table (UPI codes the PSPs pass through), to the PSP's
default, to a global default by connector error class; an error of class UnknownOutcome is
always `unknown_outcome` whatever its code, so no table row can turn a possible charge into a
retry.
"""

from __future__ import annotations

import csv
import functools
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources

from server.domain.routing.retry import ErrorCategory
from server.errors import ConfigurationError

__all__ = [
    "Classification",
    "ErrorTaxonomy",
    "TaxonomyEntry",
    "default_taxonomy",
    "parse_taxonomy",
]

_COLUMNS = ["psp", "code", "category", "description", "note"]
_UPI = "upi"
_ANY = "*"
ERROR_CLASSES = frozenset(
    {"Declined", "TransientError", "RateLimited", "UnknownOutcome", "Misconfigured"}
)


@dataclass(frozen=True, slots=True)
class TaxonomyEntry:
    psp: str
    code: str
    category: ErrorCategory
    description: str
    note: str = ""


@dataclass(frozen=True, slots=True)
class Classification:
    category: ErrorCategory
    description: str
    matched: str  # "razorpay:insufficient_funds", "upi:Z9", "*:*:Declined", "builtin"
    note: str = ""


_BUILTIN = Classification(
    ErrorCategory.UNKNOWN_OUTCOME, "no taxonomy entry: resolve by status sync first", "builtin",
)


class ErrorTaxonomy:
    """An immutable, validated table with the fallback lookup."""

    def __init__(self, version: int, entries: Sequence[TaxonomyEntry]) -> None:
        self.version = version
        self.entries = tuple(entries)
        self._index: Mapping[tuple[str, str], TaxonomyEntry] = {
            (e.psp.casefold(), e.code.casefold()): e for e in self.entries
        }

    def classify(
        self,
        psp: str,
        codes: str | Sequence[str] = (),
        *,
        error_class: str = "",
        http_status: int | None = None,
    ) -> Classification:
        """Category for an error from `psp` carrying `codes` (most specific first)."""
        if error_class == "UnknownOutcome":
            entry = self._index.get((_ANY, "*:unknownoutcome"))
            description = entry.description if entry else _BUILTIN.description
            return Classification(ErrorCategory.UNKNOWN_OUTCOME, description,
                                  "*:*:UnknownOutcome")
        wanted = [codes] if isinstance(codes, str) else list(codes)
        if http_status is not None:
            wanted.append(f"HTTP_{http_status}")
        psp_key = psp.casefold()
        keys: list[tuple[str, str]] = []
        for code in wanted:
            if code:
                keys += [(psp_key, code.casefold()), (_UPI, code.casefold()),
                         (_ANY, code.casefold())]
        if error_class:
            keys.append((psp_key, f"*:{error_class}".casefold()))
        keys.append((psp_key, _ANY))
        if error_class:
            keys.append((_ANY, f"*:{error_class}".casefold()))
        keys.append((_ANY, _ANY))
        for key in keys:
            entry = self._index.get(key)
            if entry is not None:
                return Classification(entry.category, entry.description,
                                      f"{entry.psp}:{entry.code}", entry.note)
        return _BUILTIN


def parse_taxonomy(text: str, source: str = "error_taxonomy.csv") -> ErrorTaxonomy:
    """Parse and validate the CSV; raises ConfigurationError naming the line."""
    lines = text.splitlines()
    if not lines or not lines[0].startswith("# version:"):
        raise ConfigurationError(f"{source} line 1: expected '# version: N'")
    try:
        version = int(lines[0].split(":", 1)[1].strip())
    except ValueError as exc:
        raise ConfigurationError(f"{source} line 1: version must be an integer") from exc
    body = [(number, line) for number, line in enumerate(lines, start=1)
            if line.strip() and not line.lstrip().startswith("#")]
    if not body:
        raise ConfigurationError(f"{source}: no header row")
    reader = csv.reader(io.StringIO("\n".join(line for _, line in body)))
    rows = list(reader)
    if [c.strip() for c in rows[0]] != _COLUMNS:
        raise ConfigurationError(f"{source} line {body[0][0]}: header must be {','.join(_COLUMNS)}")
    entries: list[TaxonomyEntry] = []
    seen: set[tuple[str, str]] = set()
    categories = {c.value for c in ErrorCategory}
    for (number, _), row in zip(body[1:], rows[1:], strict=True):
        where = f"{source} line {number}"
        if len(row) != len(_COLUMNS):
            raise ConfigurationError(f"{where}: expected {len(_COLUMNS)} columns, got {len(row)}")
        psp, code, category, description, note = (cell.strip() for cell in row)
        if not psp or not code:
            raise ConfigurationError(f"{where}: psp and code are required")
        if category not in categories:
            raise ConfigurationError(f"{where}: unknown category {category!r}")
        if not description:
            raise ConfigurationError(f"{where}: description is required")
        if code.startswith("*:") and code[2:] not in ERROR_CLASSES:
            raise ConfigurationError(f"{where}: unknown error class {code[2:]!r}")
        key = (psp.casefold(), code.casefold())
        if key in seen:
            raise ConfigurationError(f"{where}: duplicate entry {psp},{code}")
        seen.add(key)
        entries.append(TaxonomyEntry(psp, code, ErrorCategory(category), description, note))
    return ErrorTaxonomy(version, entries)


@functools.cache
def default_taxonomy() -> ErrorTaxonomy:
    """The taxonomy shipped with the package (loaded once)."""
    text = (resources.files("server.domain.routing") / "error_taxonomy.csv").read_text("utf-8")
    return parse_taxonomy(text)
