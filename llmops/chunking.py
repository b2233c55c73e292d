"""Structure-aware, token-bounded chunking with content-hashed ids.

Retrieval quality depends far more on *where* text is cut than on the embedder: a chunk that
straddles two sections, or half a table, embeds to a vector that answers neither question. So the
chunker works on document structure first (headings, paragraphs, tables, sentences) and only uses
the token budget to decide how many whole units fit. Budgets are measured with the *embedder's*
tokenizer (``count_tokens``), because the embedder silently truncates anything longer.

Ids are ``sha256(doc_id + "\\x00" + normalised text)[:16]`` so re-chunking an unchanged document
yields the same ids and the vector store upsert becomes a no-op for those rows.
"""

from __future__ import annotations

import hashlib
import re
import statistics
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from llmops.text import markdown_table, normalize_text

CountTokens = Callable[[str], int]

# --------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------


@dataclass
class Chunk:
    """One retrievable unit; plain data so it stores as Parquet/JSON and crosses process lines."""

    chunk_id: str
    doc_id: str
    ordinal: int
    text: str
    kind: str  # "text" | "table"
    heading: str | None
    page_start: int
    page_end: int
    language: str
    token_count: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Chunk:
        """Ignore unknown keys (e.g. an ``embedding`` column) so stored rows load back."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class _Unit:
    """A piece that is never cut further unless it alone exceeds the budget (a sentence)."""

    text: str
    page: int
    paragraph: int
    tokens: int = 0


@dataclass
class _Block:
    kind: str  # "heading" | "paragraph" | "table"
    text: str
    page: int
    level: int = 0
    rows: list[list[str]] | None = None


@dataclass
class _Section:
    heading: str | None
    blocks: list[_Block] = field(default_factory=list)
    heading_block: _Block | None = None


# --------------------------------------------------------------------------------------------
# Normalisation and ids
# --------------------------------------------------------------------------------------------


def chunk_id_for(doc_id: str, text: str, occurrence: int = 0) -> str:
    """Stable id; ``occurrence`` > 0 disambiguates identical text repeated in one document."""
    payload = f"{doc_id}\x00{normalize_text(text)}"
    if occurrence:
        payload += f"\x00{occurrence}"
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


# --------------------------------------------------------------------------------------------
# Sentence splitting (English + Arabic)
# --------------------------------------------------------------------------------------------

# Abbreviations by how a following word decides whether the period also ends the sentence.
# Titles never end one ("Dr. Smith", "Mt. Fuji", "12 Main St. Springfield").
_TITLE_ABBREVIATIONS = frozenset(
    """mr mrs ms dr prof sr st mt ft vs cf approx gen gov sen rep rev hon col lt capt sgt maj adm
    dept univ assn ave blvd rd ste viz ibid""".split()  # noqa: SIM905
)
# Reference words only before a number ("No. 5", "Fig. 3", "Docket No. FAA-2020-0686");
# "the answer was no. Then ..." ends a sentence.
_NUMBER_ABBREVIATIONS = frozenset(
    """no nos art vol p pp fig figs sec secs ch para op id est n°""".split()  # noqa: SIM905
)
# Dates: "Jan. 5", "Mar. 2025", but "closed on Sun. It reopens ..." ends a sentence.
_DATE_ABBREVIATIONS = frozenset(
    """jan feb mar apr jun jul aug sep sept oct nov dec mon tue tues wed thu thur thurs fri sat
    sun""".split()  # noqa: SIM905
)
# Company suffixes and "etc." end a sentence when a capitalised word follows.
_TRAILING_ABBREVIATIONS = frozenset(
    """etc inc corp ltd co llc bros esq jr al""".split()  # noqa: SIM905
)
# After a dotted acronym ("U.S.", "p.m.") only these words start a new sentence: "the U.S.
# Government" and "U.S. Steel" continue it.
_SENTENCE_STARTERS = frozenset(
    """the a an it its he she they we i you his her their our my your this that these those
    there here then how what when where why who which in on at for if but so as after before
    everyone all some many most no none one each both such""".split()  # noqa: SIM905
)
ABBREVIATIONS = (
    _TITLE_ABBREVIATIONS | _NUMBER_ABBREVIATIONS | _DATE_ABBREVIATIONS | _TRAILING_ABBREVIATIONS
)
_BOUNDARY_RE = re.compile(r"([.?!؟۔]+)([\"'”’»)\]]*)(\s+)")
_LAST_WORD_RE = re.compile(r"(\S+)$")
_NEXT_WORD_RE = re.compile(r"[\"'“‘«(\[]*(\S*)")
_DOTTED_ACRONYM_RE = re.compile(r"^(?:[^\W\d_]\.)+[^\W\d_]$")
_SINGLE_LETTER_RE = re.compile(r"^[^\W\d_]$")
_LIST_MARKER_RE = re.compile(r"^[•⁃◦▪‣-]?\s*\(?(?:\d{1,3}|[a-zA-Z]|[ivxIVX]{1,4})[.)]{1,2}$")


def _period_ends_sentence(before: str, after: str) -> bool:
    """Whether a period (after ``before``, followed by ``after``) ends a sentence."""
    m = _LAST_WORD_RE.search(before)
    word = m.group(1).lstrip("(\"'“‘«[") if m else ""
    nxt = _NEXT_WORD_RE.match(after)
    next_word = nxt.group(1) if nxt else ""
    first = next_word[:1]
    lower = word.lower()
    if _SINGLE_LETTER_RE.match(word):
        return False  # an initial: "J. R. Smith", "د. محمد", "١٩٥٠ م."
    if lower in _TITLE_ABBREVIATIONS:
        return False
    if lower in _NUMBER_ABBREVIATIONS or lower in _DATE_ABBREVIATIONS:
        if lower in _DATE_ABBREVIATIONS and next_word.rstrip(".,").lower() in _DATE_ABBREVIATIONS:
            return False  # "Sun. Jan. 5"
        return not any(c.isdigit() for c in next_word)
    if lower in _TRAILING_ABBREVIATIONS:
        return first.isupper()
    if _DOTTED_ACRONYM_RE.match(word):
        return next_word.strip(".,;:").lower() in _SENTENCE_STARTERS
    return True


def split_sentences(text: str) -> list[str]:
    """Split on ``. ? ! ؟ ۔`` followed by whitespace, and on newlines.

    A mark followed by a lower-case word never ends a sentence ("approx. five", "Yahoo! in");
    decimals ("3.5", "٤٫٥") never match because a boundary needs whitespace after the mark.
    After a period, abbreviations decide by the next word (see the ``_*_ABBREVIATIONS`` sets):
    "No. 5" continues but "said no. Then" ends, "Sun. Jan. 5" continues but "on Sun. It"
    ends. Arabic commas, semicolons and colons do not end sentences; a sentence longer than
    the token budget is cut by the packer. Chosen over pysbd and spaCy's sentencizer by the
    labelled comparison in ``bench/bench_sentences.py`` (accuracy and speed).
    """
    out: list[str] = []
    for line in text.split("\n"):
        line = line.strip()
        if not line:
            continue
        start = 0
        for m in _BOUNDARY_RE.finditer(line):
            marks = m.group(1)
            after = line[m.end() : m.end() + 40]
            if after[:1].islower():
                continue
            before = line[start : m.start()]
            if marks[0] == "." and (
                after[:1] == "." or before.endswith("[") or before.endswith((" .", " …"))
            ):
                continue  # a spaced ellipsis ". . ." or an editorial "[...]"
            # A period inside closing quotes/brackets ('great.” She') is not an abbreviation.
            if marks == "." and not m.group(2) and not _period_ends_sentence(before, after):
                continue
            piece = line[start : m.end(2)].strip()
            if _LIST_MARKER_RE.match(piece):
                continue  # "1." / "2.)" / "a." opening a list item belongs to the item
            if piece:
                out.append(piece)
            start = m.end()
        tail = line[start:].strip()
        if tail:
            out.append(tail)
    return out


# --------------------------------------------------------------------------------------------
# Page parsing: headings, paragraphs, tables
# --------------------------------------------------------------------------------------------

_MD_HEADING_RE = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_TABLE_LINE_RE = re.compile(r"^\s*\|.*\|\s*$")
_MD_SEP_RE = re.compile(r"^\s*\|?\s*:?-{2,}:?\s*(\|\s*:?-{2,}:?\s*)*\|?\s*$")
_NUMBERING_RE = re.compile(r"^(?:\d{1,3}(?:\.\d+)*\.?|[IVXLC]+\.|[A-Z]\.|§\s*\d+(?:\.\d+)*)\s+")
_NOT_HEADING_CHARS = frozenset("$%/=@|#*_<>")
_END_PUNCT = tuple(".,;:?!،؛؟")
_MINOR_WORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "as",
        "at",
        "but",
        "by",
        "for",
        "from",
        "in",
        "into",
        "nor",
        "of",
        "on",
        "or",
        "over",
        "per",
        "the",
        "to",
        "under",
        "upon",
        "via",
        "vs",
        "with",
    ]
)


def _page_dict(page: Any) -> dict[str, Any]:
    if isinstance(page, Mapping):
        return dict(page)
    if hasattr(page, "to_dict"):
        return dict(page.to_dict())
    raise TypeError(f"page must be a mapping or have to_dict(), got {type(page).__name__}")


def _table_parts(table: Any) -> tuple[list[list[str]], str]:
    data = _page_dict(table) if not isinstance(table, Mapping) else table
    rows = [[("" if c is None else str(c)) for c in row] for row in (data.get("rows") or [])]
    markdown = str(data.get("markdown") or "") or (markdown_table(rows) if rows else "")
    return rows, markdown


def _parse_md_table(lines: list[str]) -> list[list[str]]:
    rows = []
    for ln in lines:
        if _MD_SEP_RE.match(ln):
            continue
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", ln.strip().strip("|"))]
        rows.append(cells)
    return rows


def _looks_like_heading(line: str) -> bool:
    """PDF heading guess: short, unpunctuated, upper/title case, not a number-ish line."""
    s = line.strip()
    if not s or len(s) > 80 or s.endswith(_END_PUNCT):
        return False
    body = _NUMBERING_RE.sub("", s, count=1)
    words = body.split()
    if not 1 <= len(words) <= 12 or not any(ch.isalpha() for ch in body):
        return False
    if sum(ch.isdigit() for ch in body) > 0.15 * len(body):
        return False
    # Running heads ("Federal Register/Vol. 85, No. 152"), column headers and transcript lines
    # carry symbols, several commas or sentence-internal periods; real headings rarely do.
    if _NOT_HEADING_CHARS.intersection(body) or body.count(",") > 1 or ". " in body:
        return False
    letters = [ch for ch in body if ch.isalpha()]
    if not all(ch.isascii() or unicodedata.category(ch) in {"Lu", "Ll"} for ch in letters):
        return False  # caseless scripts (Arabic): no case signal, never guess
    if len(letters) >= 2 and all(ch.isupper() for ch in letters):
        return True
    alpha_words = [w for w in words if w[0].isalpha()]
    if not alpha_words or not alpha_words[0][0].isupper():
        return False
    return all(w[0].isupper() or w.lower() in _MINOR_WORDS for w in alpha_words)


_TABLE_SLOT_RE = re.compile("^\ue010(\\d+)\ue011$")


def _with_table_slots(text: str, tables: list[Any]) -> tuple[str, set[int]]:
    """Put a placeholder line for every table at its reading-order ``offset`` in ``text``.

    The PDF extraction records where each table stood; parsing the placeholder in line order
    gives the table the heading it sits under instead of whatever heading ends the page.
    Returns the text and the indices of the tables that got a slot (the others, without an
    offset, still follow the text).
    """
    placed: list[tuple[int, int]] = []
    for i, table in enumerate(tables):
        data = table if isinstance(table, Mapping) else _page_dict(table)
        offset = data.get("offset")
        if offset is not None and 0 <= int(offset) <= len(text):
            placed.append((int(offset), i))
    for offset, i in sorted(placed, reverse=True):
        text = f"{text[:offset]}\n\n\ue010{i}\ue011\n\n{text[offset:]}"
    return text, {i for _, i in placed}


def _page_blocks(page: dict[str, Any]) -> list[_Block]:
    """Blocks in reading order for one page; a table with an ``offset`` stands at its place,
    tables without one come after the text."""
    page_no = int(page.get("page_number") or 1)
    text = str(page.get("text") or "").replace("\r\n", "\n").replace("\r", "\n")
    tables = list(page.get("tables") or [])
    text, slotted = _with_table_slots(text, tables)
    raw_lines = text.split("\n")
    nonempty = [ln.strip() for ln in raw_lines if ln.strip() and not _TABLE_SLOT_RE.match(ln)]
    has_md_heading = any(_MD_HEADING_RE.match(ln) for ln in nonempty)
    # Word-processor text puts one paragraph per line; PDF text hard-wraps at ~80-100 chars.
    lines_are_paragraphs = has_md_heading or (
        bool(nonempty) and statistics.median(len(ln) for ln in nonempty) > 120
    )
    max_len = max((len(ln) for ln in nonempty), default=0)

    blocks: list[_Block] = []
    para: list[str] = []
    inline_tables: list[str] = []

    def flush() -> None:
        if para:
            blocks.append(_Block("paragraph", " ".join(para), page_no))
            para.clear()

    def add_table(table: Any) -> None:
        rows, md = _table_parts(table)
        if not md.strip() or normalize_text(md) in inline_tables:
            return
        blocks.append(_Block("table", md, page_no, rows=rows or _parse_md_table(md.split("\n"))))

    i = 0
    n = len(raw_lines)
    prev_ended_sentence = True
    while i < n:
        line = raw_lines[i].strip()
        if not line:
            flush()
            prev_ended_sentence = True
            i += 1
            continue
        slot = _TABLE_SLOT_RE.match(line)
        if slot:
            flush()
            add_table(tables[int(slot.group(1))])
            prev_ended_sentence = True
            i += 1
            continue
        if _TABLE_LINE_RE.match(line):
            flush()
            tbl = []
            while i < n and _TABLE_LINE_RE.match(raw_lines[i].strip() or "x"):
                tbl.append(raw_lines[i].strip())
                i += 1
            rows = _parse_md_table(tbl)
            md = "\n".join(tbl)
            inline_tables.append(normalize_text(md))
            blocks.append(_Block("table", md, page_no, rows=rows))
            prev_ended_sentence = True
            continue
        m = _MD_HEADING_RE.match(line)
        nxt = next((raw_lines[j].strip() for j in range(i + 1, n) if raw_lines[j].strip()), "")
        if m:
            flush()
            blocks.append(_Block("heading", m.group(2).strip(), page_no, level=len(m.group(1))))
        elif (
            not has_md_heading
            and prev_ended_sentence
            and nxt
            and not nxt[0].islower()
            and _looks_like_heading(line)
        ):
            flush()
            blocks.append(_Block("heading", line, page_no, level=0))
        else:
            para.append(line)
            if lines_are_paragraphs:
                flush()
            elif line.endswith((".", "?", "!", ":", "؟")) and len(line) < 0.75 * max_len:
                flush()  # a short line closing a sentence ends its paragraph
        prev_ended_sentence = not para or line.endswith((".", "?", "!", ":", "؟", "؛"))
        i += 1
    flush()

    for k, table in enumerate(tables):
        if k not in slotted:
            add_table(table)
    return blocks


def _sections(blocks: Iterable[_Block]) -> list[_Section]:
    """Group blocks under headings, carrying the heading path as section context.

    Markdown headings nest by level ("Part A > Section 1"); guessed PDF headings have no level,
    so consecutive ones with no body between them (title + subtitle) stack instead.
    """
    sections: list[_Section] = [_Section(None)]
    stack: list[_Block] = []
    pending: list[_Block] = []
    for b in blocks:
        if b.kind != "heading":
            sections[-1].blocks.append(b)
            continue
        if b.level:
            stack = [h for h in stack if h.level < b.level] + [b]
            path = stack
        else:
            if sections[-1].blocks:
                pending = []
            pending.append(b)
            path = pending
        sec = _Section(" > ".join(h.text for h in path[-4:]))
        sec.heading_block = b
        sections.append(sec)
    return sections


# --------------------------------------------------------------------------------------------
# Packing
# --------------------------------------------------------------------------------------------


def _hard_split(text: str, budget: int, count_tokens: CountTokens) -> list[str]:
    """Cut an over-long unit into pieces of <= budget tokens, at word boundaries if possible.

    Works with any ``count_tokens`` (no tokenizer internals needed): binary search on the
    longest word prefix that fits, then characters when a single "word" is too long.
    """
    words = text.split(" ")
    pieces: list[str] = []
    while words:
        lo, hi = 1, len(words)
        if count_tokens(words[0]) > budget:
            word = words.pop(0)
            while word:
                clo, chi = 1, len(word)
                while clo < chi:
                    mid = (clo + chi + 1) // 2
                    if count_tokens(word[:mid]) <= budget:
                        clo = mid
                    else:
                        chi = mid - 1
                pieces.append(word[:clo])
                word = word[clo:]
            continue
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if count_tokens(" ".join(words[:mid])) <= budget:
                lo = mid
            else:
                hi = mid - 1
        pieces.append(" ".join(words[:lo]))
        words = words[lo:]
    return [p for p in pieces if p.strip()]


def _join_units(units: Sequence[_Unit]) -> str:
    out = ""
    for k, u in enumerate(units):
        if k:
            out += " " if u.paragraph == units[k - 1].paragraph else "\n\n"
        out += u.text
    return out


def _with_heading(heading: str | None, body: str) -> str:
    return f"{heading}\n\n{body}" if heading else body


@dataclass
class _Draft:
    text: str
    kind: str
    heading: str | None
    pages: list[int]
    tokens: int


_CLAUSE_RE = re.compile(r"(?<=[,;:،؛])\s+")


def _split_long_sentence(text: str, budget: int, count_tokens: CountTokens) -> list[str]:
    """An over-budget sentence cut at clause marks (``, ; : ، ؛``) first, then at words.

    Arabic prose often runs many clauses between full stops; cutting at a comma keeps each
    piece readable where a word-level cut would not.
    """
    pieces: list[str] = []
    current = ""
    for clause in _CLAUSE_RE.split(text):
        joined = f"{current} {clause}" if current else clause
        if count_tokens(joined) <= budget:
            current = joined
            continue
        if current:
            pieces.append(current)
        if count_tokens(clause) <= budget:
            current = clause
        else:
            pieces += _hard_split(clause, budget, count_tokens)
            current = ""
    if current:
        pieces.append(current)
    return pieces


def _pack_text(
    units: list[_Unit],
    heading: str | None,
    count_tokens: CountTokens,
    max_tokens: int,
    overlap_tokens: int,
) -> list[_Draft]:
    """Greedy whole-sentence packing with a sentence-level overlap between neighbours."""
    budget = _body_budget(heading, count_tokens, max_tokens)
    if budget < max(8, max_tokens // 4):
        heading, budget = None, max_tokens  # a pathological heading would eat the whole budget
    expanded: list[_Unit] = []
    for u in units:
        u.tokens = count_tokens(u.text)
        if u.tokens <= budget:
            expanded.append(u)
            continue
        for piece in _split_long_sentence(u.text, budget, count_tokens):
            expanded.append(_Unit(piece, u.page, u.paragraph, count_tokens(piece)))

    drafts: list[_Draft] = []
    i = 0
    carry: list[_Unit] = []
    while i < len(expanded):
        current = list(carry)
        total = sum(u.tokens for u in current)
        # Room for the first new unit comes from dropping overlap, oldest first.
        while current and total + expanded[i].tokens > budget:
            total -= current.pop(0).tokens
        n_carry = len(current)
        current.append(expanded[i])
        total += expanded[i].tokens
        i += 1
        while i < len(expanded) and total + expanded[i].tokens <= budget:
            current.append(expanded[i])
            total += expanded[i].tokens
            i += 1
        text = _with_heading(heading, _join_units(current))
        actual = count_tokens(text)
        # The sum of parts is an estimate; the exact count of the joined text decides.
        while actual > max_tokens and len(current) - n_carry > 1:
            current.pop()
            i -= 1
            text = _with_heading(heading, _join_units(current))
            actual = count_tokens(text)
        while actual > max_tokens and n_carry:
            current.pop(0)
            n_carry -= 1
            text = _with_heading(heading, _join_units(current))
            actual = count_tokens(text)
        if actual > max_tokens:
            # A lone unit whose joined form still overflows (non-additive tokenizer): re-split it
            # tighter and retry from the same position.
            unit = current[-1]
            tighter = max(1, unit.tokens - (actual - max_tokens) - 1)
            pieces = _hard_split(unit.text, tighter, count_tokens)
            if len(pieces) < 2 and tighter >= unit.tokens:
                raise ValueError(f"cannot fit text into {max_tokens} tokens: {unit.text[:60]!r}")
            expanded[i - 1 : i] = [
                _Unit(p, unit.page, unit.paragraph, count_tokens(p)) for p in pieces
            ]
            i -= 1
            carry = current[:-1]
            continue
        drafts.append(_Draft(text, "text", heading, [u.page for u in current], actual))
        carry = []
        if overlap_tokens > 0 and i < len(expanded):
            acc = 0
            for u in reversed(current[1:]):  # never the whole previous chunk
                if acc + u.tokens > overlap_tokens:
                    break
                carry.insert(0, u)
                acc += u.tokens
    return drafts


def _pack_table(
    block: _Block,
    heading: str | None,
    count_tokens: CountTokens,
    max_tokens: int,
) -> list[_Draft]:
    """Whole table if it fits; otherwise row groups, each repeating the header row."""
    whole = _with_heading(heading, block.text)
    n = count_tokens(whole)
    if n <= max_tokens:
        return [_Draft(whole, "table", heading, [block.page], n)]
    rows = block.rows or []
    if len(rows) < 2:
        return [
            _Draft(
                _with_heading(heading, p),
                "table",
                heading,
                [block.page],
                count_tokens(_with_heading(heading, p)),
            )
            for p in _hard_split(
                block.text.replace("\n", " "),
                _body_budget(heading, count_tokens, max_tokens),
                count_tokens,
            )
        ]
    header, body = rows[0], rows[1:]
    drafts: list[_Draft] = []
    group: list[list[str]] = []

    def emit(g: list[list[str]]) -> None:
        text = _with_heading(heading, markdown_table([header, *g]))
        drafts.append(_Draft(text, "table", heading, [block.page], count_tokens(text)))

    for row in body:
        trial = _with_heading(heading, markdown_table([header, *group, row]))
        if count_tokens(trial) <= max_tokens:
            group.append(row)
            continue
        if group:
            emit(group)
            group = []
        single = _with_heading(heading, markdown_table([header, row]))
        if count_tokens(single) <= max_tokens:
            group = [row]
            continue
        # One row alone is too long: its cells are emitted as plain text pieces.
        line = " | ".join(f"{h}: {c}" for h, c in zip(header, row, strict=False))
        for piece in _hard_split(
            line, _body_budget(heading, count_tokens, max_tokens), count_tokens
        ):
            text = _with_heading(heading, piece)
            drafts.append(_Draft(text, "table", heading, [block.page], count_tokens(text)))
    if group:
        emit(group)
    return drafts


def _body_budget(heading: str | None, count_tokens: CountTokens, max_tokens: int) -> int:
    if not heading:
        return max_tokens
    return max(1, max_tokens - (count_tokens(_with_heading(heading, "x")) - count_tokens("x")))


def chunk_pages(
    pages: Sequence[Any],
    count_tokens: CountTokens,
    max_tokens: int = 256,
    overlap_tokens: int = 32,
) -> list[Chunk]:
    """Chunk the pages of one or more documents (grouped by ``doc_id``, order preserved).

    Guarantees: every chunk's ``count_tokens(text) <= max_tokens``; a chunk never spans a
    heading; tables are their own chunks; consecutive text chunks of a section share up to
    ``overlap_tokens`` of whole sentences; ids are stable for unchanged text.
    """
    if max_tokens < 1:
        raise ValueError("max_tokens must be >= 1")
    if overlap_tokens < 0 or overlap_tokens >= max_tokens:
        raise ValueError("overlap_tokens must be in [0, max_tokens)")
    by_doc: dict[str, list[dict[str, Any]]] = {}
    for p in pages:
        d = _page_dict(p)
        by_doc.setdefault(str(d.get("doc_id") or ""), []).append(d)

    chunks: list[Chunk] = []
    for doc_id, doc_pages in by_doc.items():
        doc_pages.sort(key=lambda d: int(d.get("page_number") or 1))
        page_lang = {
            int(d.get("page_number") or 1): str(d.get("language") or "und") for d in doc_pages
        }
        blocks = [b for d in doc_pages for b in _page_blocks(d)]
        drafts: list[_Draft] = []
        para_counter = 0
        sections = _sections(blocks)
        for idx, section in enumerate(sections):
            if not section.blocks:
                # A heading with no body of its own survives as context of the next section's
                # path; otherwise (e.g. a trailing title) it becomes a chunk so no text is lost.
                nxt = sections[idx + 1].heading if idx + 1 < len(sections) else None
                if section.heading and not (nxt and nxt.startswith(section.heading)):
                    page = section.heading_block.page if section.heading_block else 1
                    for piece in _hard_split(section.heading, max_tokens, count_tokens):
                        drafts.append(
                            _Draft(piece, "text", section.heading, [page], count_tokens(piece))
                        )
                continue
            run: list[_Unit] = []
            for b in section.blocks:
                if b.kind == "table":
                    if run:
                        drafts += _pack_text(
                            run, section.heading, count_tokens, max_tokens, overlap_tokens
                        )
                        run = []
                    drafts += _pack_table(b, section.heading, count_tokens, max_tokens)
                    continue
                para_counter += 1
                run += [_Unit(s, b.page, para_counter) for s in split_sentences(b.text)]
            if run:
                drafts += _pack_text(run, section.heading, count_tokens, max_tokens, overlap_tokens)

        seen: Counter[str] = Counter()
        for ordinal, dr in enumerate(drafts):
            key = normalize_text(dr.text)
            occurrence = seen[key]
            seen[key] += 1
            langs = Counter(page_lang.get(p, "und") for p in dr.pages)
            chunks.append(
                Chunk(
                    chunk_id=chunk_id_for(doc_id, dr.text, occurrence),
                    doc_id=doc_id,
                    ordinal=ordinal,
                    text=dr.text,
                    kind=dr.kind,
                    heading=dr.heading,
                    page_start=min(dr.pages),
                    page_end=max(dr.pages),
                    language=langs.most_common(1)[0][0],
                    token_count=dr.tokens,
                )
            )
    return chunks


# --------------------------------------------------------------------------------------------
# Document metadata for semantic indexing
# --------------------------------------------------------------------------------------------


def document_metadata(
    doc_id: str,
    pages: Sequence[Any],
    chunks: Sequence[Chunk | Mapping[str, Any]],
    entities: Sequence[Mapping[str, Sequence[str]]] | Mapping[str, Sequence[str]] | None = None,
) -> dict[str, Any]:
    """Per-document summary stored next to the chunks so search can filter/boost by it."""
    page_dicts = [_page_dict(p) for p in pages]
    chunk_objs = [c if isinstance(c, Chunk) else Chunk.from_dict(c) for c in chunks]
    title = None
    for c in chunk_objs:
        if c.heading:
            title = c.heading.split(" > ")[0]
            break
    if title is None:
        for d in page_dicts:
            first = next(
                (ln.strip() for ln in str(d.get("text") or "").split("\n") if ln.strip()), ""
            )
            if first:
                title = _MD_HEADING_RE.sub(r"\2", first)[:120]
                break
    weights: Counter[str] = Counter()
    for d in page_dicts:
        weights[str(d.get("language") or "und")] += int(
            d.get("char_count") or len(str(d.get("text") or ""))
        )
    languages = [lang for lang, w in weights.most_common() if w > 0]
    from llmops.entities import entity_counts  # local: entities is optional for chunking

    if entities is None:
        counts: dict[str, int] = {}
    elif isinstance(entities, Mapping):
        counts = entity_counts([entities])
    else:
        counts = entity_counts(list(entities))
    return {
        "doc_id": doc_id,
        "title": title or doc_id,
        "language": languages[0] if languages else "und",
        "languages": languages,
        "pages": len(page_dicts),
        "chunk_count": len(chunk_objs),
        "table_chunks": sum(c.kind == "table" for c in chunk_objs),
        "token_count": sum(c.token_count for c in chunk_objs),
        "headings": sorted({c.heading for c in chunk_objs if c.heading}),
        "entity_counts": counts,
    }
