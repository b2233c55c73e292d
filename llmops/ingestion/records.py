"""Records that cross the ingestion boundary; plain dataclasses so they store as JSON/Parquet."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from llmops.text import markdown_table


@dataclass
class TableRecord:
    """A table kept as structured rows plus a markdown rendering for the chunker."""

    rows: list[list[str]]
    markdown: str = ""
    bbox: tuple[float, float, float, float] | None = None
    # Character offset in the page text where the table stands in reading order (None when
    # unknown), so a consumer can put a PDF table back between the paragraphs around it.
    offset: int | None = None

    def __post_init__(self) -> None:
        self.rows = [["" if c is None else str(c) for c in row] for row in self.rows]
        if not self.markdown:
            self.markdown = markdown_table(self.rows)  # first row = header (no flag is extracted)
        if self.bbox is not None:
            self.bbox = tuple(round(float(v), 2) for v in self.bbox)  # type: ignore[assignment]

    @property
    def n_rows(self) -> int:
        return len(self.rows)

    @property
    def n_cols(self) -> int:
        return max((len(r) for r in self.rows), default=0)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["bbox"] = list(self.bbox) if self.bbox is not None else None
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TableRecord:
        bbox = data.get("bbox")
        return cls(
            rows=[list(r) for r in data.get("rows") or []],
            markdown=data.get("markdown") or "",
            bbox=tuple(bbox) if bbox is not None else None,  # type: ignore[arg-type]
            offset=None if data.get("offset") is None else int(data["offset"]),
        )


@dataclass
class PageRecord:
    """One page of one document: what downstream stages read."""

    doc_id: str
    page_number: int
    text: str
    tables: list[TableRecord] = field(default_factory=list)
    method: str = "text"  # "text" | "ocr"
    ocr_confidence: float | None = None
    language: str = "und"
    char_count: int = 0
    warnings: list[str] = field(default_factory=list)
    rotation: int = 0  # clockwise degrees an OCR'd page was turned to be upright (0/90/180/270)

    def __post_init__(self) -> None:
        if self.rotation not in (0, 90, 180, 270):
            raise ValueError(f"PageRecord.rotation must be 0/90/180/270, got {self.rotation!r}")
        if self.method not in ("text", "ocr"):
            raise ValueError(f"PageRecord.method must be 'text' or 'ocr', got {self.method!r}")
        if not self.char_count:
            self.char_count = len(self.text)

    def to_dict(self) -> dict[str, Any]:
        return {
            "doc_id": self.doc_id,
            "page_number": self.page_number,
            "text": self.text,
            "tables": [t.to_dict() for t in self.tables],
            "method": self.method,
            "ocr_confidence": self.ocr_confidence,
            "language": self.language,
            "char_count": self.char_count,
            "warnings": list(self.warnings),
            "rotation": self.rotation,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PageRecord:
        tables = [
            t if isinstance(t, TableRecord) else TableRecord.from_dict(dict(t))
            for t in (data.get("tables") if data.get("tables") is not None else [])
        ]
        conf = data.get("ocr_confidence")
        rot = data.get("rotation")
        return cls(
            doc_id=str(data["doc_id"]),
            page_number=int(data["page_number"]),
            text=str(data.get("text") or ""),
            tables=tables,
            method=str(data.get("method") or "text"),
            ocr_confidence=None if conf is None or conf != conf else float(conf),  # NaN->None
            language=str(data.get("language") or "und"),
            char_count=int(data.get("char_count") or 0),
            warnings=[
                str(w) for w in (data.get("warnings") if data.get("warnings") is not None else [])
            ],
            rotation=0 if rot is None or rot != rot else int(rot),  # absent or NaN: upright
        )


@dataclass(frozen=True)
class DocumentInfo:
    """What a document is, decided from its bytes before any expensive extraction."""

    doc_id: str
    name: str
    sha256: str
    size_bytes: int
    mime_type: str
    kind: str  # pdf | image | docx | txt | html
    page_count: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DocumentInfo:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__})
