"""When is a PDF text layer usable? A measurable rule, so OCR runs only where it must.

Scanned PDFs come with no text layer, with an invisible OCR layer of a few stray tokens, or with
fonts whose glyphs map to nothing (``(cid:N)``), to U+FFFD, or to private-use code points. The
rule looks at the characters themselves, not at the producer or the file name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_CID_RE = re.compile(r"\(cid:\d+\)")


@dataclass(frozen=True)
class TextLayerStats:
    chars: int  # non-space characters (a (cid:N) glyph counts as one)
    bad: int  # undecodable glyphs: (cid:N), U+FFFD, private use, control characters
    alnum: int  # letters and digits (any script)

    @property
    def bad_ratio(self) -> float:
        return self.bad / self.chars if self.chars else 0.0

    @property
    def alnum_ratio(self) -> float:
        return self.alnum / self.chars if self.chars else 0.0


_BAD_RE = re.compile("[\ufffd\ue000-\uf8ff\x00-\x08\x0b\x0e-\x1f\x7f-\x9f]")
_ALNUM_RE = re.compile(r"[^\W_]")
_SPACE_RE = re.compile(r"\s")


def text_layer_stats(text: str) -> TextLayerStats:
    """Counts by compiled regexes: this runs on every page, so it must cost ~nothing."""
    cids = len(_CID_RE.findall(text))
    rest = _CID_RE.sub("", text) if cids else text
    chars = len(rest) - len(_SPACE_RE.findall(rest))
    bad = len(_BAD_RE.findall(rest))
    alnum = len(_ALNUM_RE.findall(rest))
    return TextLayerStats(chars=chars + cids, bad=bad + cids, alnum=alnum)


def text_layer_problem(
    text: str, min_chars: int, max_bad_ratio: float, min_alnum_ratio: float
) -> str | None:
    """Why this text layer should not be trusted, or None when it is fine."""
    stats = text_layer_stats(text)
    if stats.chars == 0:
        return "no text layer"
    if stats.chars < min_chars:
        return f"text layer too short ({stats.chars} characters < {min_chars})"
    if stats.bad_ratio > max_bad_ratio:
        return (
            f"text layer is garbage: {stats.bad_ratio:.0%} undecodable glyphs "
            f"(> {max_bad_ratio:.0%})"
        )
    if stats.alnum_ratio < min_alnum_ratio:
        return (
            f"text layer is garbage: only {stats.alnum_ratio:.0%} letters/digits "
            f"(< {min_alnum_ratio:.0%})"
        )
    return None
