"""What ``benchmarks/docs_tables.py --check`` reads in the Markdown: the marked regions and the tables outside them.

A numeric table is a Markdown table (outside fenced code) whose body has a digit outside backticks in any column but
the first (an HTML comment line between its rows does not end it). Every numeric table must sit inside a render
marker ``<!-- table:NAME -->`` … ``<!-- /table:NAME -->``, or follow the line ``<!-- not-measured -->`` when its numbers are definitions (exit codes, defaults, sizes by
construction), not measurements. A hand copy of an earlier run that another change is about to regenerate may follow
``<!-- pending: NAME -->`` (NAME: the result that will replace it) with a visible sentence saying so; ``--check``
lists those tables instead of failing on them."""

from __future__ import annotations

import re
from dataclasses import dataclass

OPEN = re.compile(r"<!-- (table|figure):([\w.-]+) -->")
NOT_MEASURED = "<!-- not-measured -->"
PENDING = re.compile(r"<!-- pending: ([\w., -]+) -->")
_RULE = re.compile(r"^\|[\s:|-]+\|?\s*$")
_CODE = re.compile(r"`[^`]*`")
_COMMENT = re.compile(r"^<!--.*-->$")


@dataclass
class NumericTable:
    file: str
    line: int  # 1-based line of the table's header
    pending: str | None = None  # the result a pending hand copy waits for

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


def regions(text: str, kind: str) -> list[str]:
    """The names of the ``<!-- KIND:NAME -->`` markers in ``text``, in order (not those quoted in inline code)."""
    return [m.group(2) for m in OPEN.finditer(_CODE.sub("", text)) if m.group(1) == kind]


def _numeric(rows: list[str]) -> bool:
    for row in rows[2:]:
        cells = _CODE.sub("", row).strip().strip("|").split("|")
        if any(re.search(r"\d", c) for c in cells[1:]):
            return True
    return False


def unmarked_tables(file: str, text: str) -> list[NumericTable]:
    """The numeric tables of ``text`` outside every marked region and not declared ``<!-- not-measured -->``; those
    declared ``<!-- pending: NAME -->`` come with ``pending`` set."""
    found, fence, inside, table, start, previous = [], False, False, [], 0, ""
    for n, line in enumerate([*text.splitlines(), ""], 1):
        if line.startswith("```"):
            fence = not fence
        opening, closing = OPEN.match(line.strip()), line.strip().startswith(("<!-- /table:", "<!-- /figure:"))
        inside = (inside or bool(opening and opening.group(1) == "table")) and not closing
        if line.lstrip().startswith("|") and not fence:
            if not table:
                start, declared, marked = n, previous.strip() == NOT_MEASURED, inside
            table.append(line)
            continue
        if table and _COMMENT.match(line.strip()) and not OPEN.match(line.strip()) and not closing:
            continue  # a comment between rows (e.g. a run's note) does not end the table: its later rows count
        if table and len(table) > 2 and _RULE.match(table[1]) and not (declared or marked) and _numeric(table):
            pending = PENDING.match(previous.strip())
            found.append(NumericTable(file, start, pending.group(1) if pending else None))
        table, previous = [], line if line.strip() else previous
    return found


# A duration quoted in prose: "took 386 s", "# 100 s wall", "3.6 min". Settings and bars are not measurements, so a
# duration just after one of SETTING's words ("default 60 s", "≤ 5 min") or just before one of SETTING_AFTER's ("a
# 100 s budget") is left alone.
_DURATION = re.compile(r"(?<![\w.])(\d+(?:[.,]\d+)?)(?:[–-]\d+(?:[.,]\d+)?)?\s?(?:s|ms|µs|min|minutes|seconds|hours)\b")
SETTING = re.compile(r"(budget|default|≤|<=|≥|target|timeout|at most|limit|within|under|every|per)\W*(?:\w+\W*){0,2}$",
                     re.I)
SETTING_AFTER = re.compile(r"^\W*(budget|timeout|limit)", re.I)
# Pages whose hand timings are being replaced by rendered runs (issue 25): listed by --check, not failed.
DURATIONS_LISTED_ONLY = frozenset({"docs/performance.md"})
_FIGURE = re.compile(r"<!-- figure:([\w.-]+) -->.*?<!-- /figure:\1 -->")


def unmarked_durations(file: str, text: str) -> list[str]:
    """``file:line: …`` for each duration in prose or in a command's comment outside every marked table and figure
    (inline code, tables and HTML comments aside): a timing typed by hand, which nothing keeps true."""
    found, inside = [], False
    for n, line in enumerate(text.splitlines(), 1):
        opening, closing = OPEN.match(line.strip()), line.strip().startswith("<!-- /table:")
        inside = (inside or bool(opening and opening.group(1) == "table")) and not closing
        if inside or line.lstrip().startswith("|"):
            continue
        prose = re.sub(r"<!--.*?-->", "", _FIGURE.sub("", _CODE.sub("", line)))
        for m in _DURATION.finditer(prose):
            if not SETTING.search(prose[: m.start()]) and not SETTING_AFTER.match(prose[m.end():]):
                found.append(f"{file}:{n}: {m.group(0)!r} in {line.strip()[:100]!r}")
    return found


# A decimal typed in prose ("0.93", "−0.07", the mantissa of "1.2e-4"; not "1.9M parameters" nor "v0.4.1"): a measured
# figure, unless a setting's word or a threshold's sign comes just before it ("lr 0.005", "ε = 0.01", "≥ 0.9",
# "Python 3.10"). Inline code, rendered figures, tables, code blocks and HTML comments are not prose; a
# <!-- not-stored --> … <!-- /not-stored --> region holds figures of runs that are not stored, and its visible text must
# say so ("not stored").
_DECIMAL = re.compile(r"(?<![\w.])\d+\.\d+(?!\.?\d|[A-Za-df-z])")
SETTING_DECIMAL = re.compile(r"(=|[≤≥<>±]|\blr|ε|\bepsilon|Python|torch|version|default|threshold|tolerance|\bbar|"
                             r"at most|at least|up to|min\(|max\()\W*(?:\w+\W*){0,1}$", re.I)
NOT_STORED, NOT_STORED_END = "<!-- not-stored -->", "<!-- /not-stored -->"
# The pages whose prose --check reads for decimals (docs/performance.md is being rewritten from stored runs by
# issue 25), and the sections of them listed instead of failed: (page, heading word).
DECIMALS_CHECKED = frozenset({"README.md", "docs/diagnose.md", "docs/experiments.md", "docs/experiments_correction.md",
                              "docs/correct.md", "docs/fade.md", "docs/unrolled.md", "docs/models.md", "docs/errors.md",
                              "docs/evaluation.md"})
DECIMALS_LISTED_ONLY = frozenset({("docs/experiments.md", "tweets-gpt")})


def unmarked_decimals(file: str, text: str) -> list[tuple[str, bool]]:
    """``(file:line: …, listed_only)`` for each decimal typed in the prose of ``file`` outside every marker, and for
    each <!-- not-stored --> region whose text does not say its figures are not stored."""
    if file not in DECIMALS_CHECKED:
        return []
    found, fence, inside, region, heading = [], False, False, None, ""
    for n, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if s.startswith("```"):
            fence = not fence
        heading = s if s.startswith("#") and not fence else heading
        opening = OPEN.match(s)
        inside = (inside or bool(opening and opening.group(1) == "table")) and not s.startswith("<!-- /table:")
        if s == NOT_STORED:
            region = (n, "")
        elif s == NOT_STORED_END and region is not None:
            if "not stored" not in re.sub(r"<!--.*?-->", "", region[1]):
                found.append((f"{file}:{region[0]}: a <!-- not-stored --> region whose text does not say its figures "
                              "are not stored", False))
            region = None
        elif region is not None:
            region = (region[0], region[1] + " " + s)
        if fence or inside or region is not None or s.startswith("|"):
            continue
        prose = re.sub(r"<!--.*?-->", "", _FIGURE.sub("", _CODE.sub("", line)))
        listed = any(f == file and word in heading for f, word in DECIMALS_LISTED_ONLY)
        found += [(f"{file}:{n}: {m.group(0)!r} in {s[:100]!r}", listed) for m in _DECIMAL.finditer(prose)
                  if not SETTING_DECIMAL.search(prose[: m.start()])]
    return found
