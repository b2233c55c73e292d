"""What a file is, decided from its bytes (magic numbers, zip members, charset detection).

Extensions lie (a scan saved as ``.pdf.txt``, HTML served as ``.txt``); content does not. The
extension only breaks ties for text files (``.html`` without any tag is plain text anyway).
"""

from __future__ import annotations

import hashlib
import io
import re
import unicodedata
import zipfile
from dataclasses import dataclass
from pathlib import PurePosixPath

from llmops.ingestion.errors import DocumentError

KINDS = ("pdf", "image", "docx", "txt", "html")
_SLUG_MAX = 48
_IMAGE_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"II*\x00", "image/tiff"),
    (b"MM\x00*", "image/tiff"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)
# Binary formats we recognise only to reject with a useful message.
_OTHER_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "a legacy MS Office (OLE2 .doc/.xls/.ppt) file"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"Rar!", "a RAR archive"),
    (b"{\\rtf", "an RTF document"),
    (b"\x7fELF", "an executable"),
    (b"ID3", "an MP3 file"),
    (b"OggS", "an Ogg media file"),
)
_HTML_RE = re.compile(rb"<\s*(!doctype\s+html|html[\s>]|head[\s>]|body[\s>])", re.IGNORECASE)
_HTML_TAGS_RE = re.compile(r"<\s*/?\s*(p|div|h[1-6]|table|ul|ol|li|br|span|a)\b", re.IGNORECASE)




def _is_bmp(data: bytes) -> bool:
    """"BM" is two bytes that plain text starts with ("BMW Group..."): confirm the header.

    A BMP file header declares the file size, has two reserved zero words, and points at pixel
    data past a DIB header whose size is one of the known versions (12..124 bytes).
    """
    if len(data) < 26 or not data.startswith(b"BM"):
        return False
    size = int.from_bytes(data[2:6], "little")
    reserved = data[6:10]
    offset = int.from_bytes(data[10:14], "little")
    dib = int.from_bytes(data[14:18], "little")
    return (
        reserved == b"\x00\x00\x00\x00"
        and dib in (12, 16, 40, 52, 56, 64, 108, 124)
        and 14 + dib <= offset <= len(data)
        and (size == 0 or abs(size - len(data)) <= 1024)
    )


def _is_mz(data: bytes) -> bool:
    """"MZ" opens text too ("MZ Holdings..."): a DOS/PE executable has e_lfanew -> "PE\\0\\0",
    or at least the binary zero bytes no text file has in its 64-byte DOS header."""
    if len(data) < 64 or not data.startswith(b"MZ"):
        return False
    e_lfanew = int.from_bytes(data[60:64], "little")
    if 64 <= e_lfanew <= len(data) - 4 and data[e_lfanew : e_lfanew + 4] == b"PE\x00\x00":
        return True
    return b"\x00" in data[2:64]


@dataclass(frozen=True)
class Detected:
    kind: str
    mime_type: str
    encoding: str | None = None  # text kinds only


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def slugify(name: str) -> str:
    """ASCII slug of a file stem: lower-case, [a-z0-9-], never empty."""
    stem = PurePosixPath(name.replace("\\", "/")).name
    for suffix in (".tar.gz", ".tar.bz2"):
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    else:
        stem = stem.rsplit(".", 1)[0] if "." in stem.lstrip(".") else stem
    ascii_stem = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_stem.lower()).strip("-")
    return slug[:_SLUG_MAX].rstrip("-") or "doc"


def document_id_from_hash(sha256: str, name: str) -> str:
    """Same as :func:`document_id` when the hash is already known (inbox scans cache it)."""
    return f"{slugify(name)}-{sha256[:12]}"


def document_id(data: bytes, name: str) -> str:
    """``<slug-of-stem>-<sha256[:12]>``: readable, content-addressed, a valid partition key."""
    return document_id_from_hash(sha256_hex(data), name)


def _zip_kind(data: bytes, name: str) -> Detected:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            names = set(zf.namelist())
    except (zipfile.BadZipFile, ValueError) as err:
        raise DocumentError(name, f"damaged ZIP/Office container ({err})", "malformed") from err
    if "word/document.xml" in names:
        return Detected(
            "docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
        )
    what = (
        "an Excel workbook"
        if "xl/workbook.xml" in names
        else "a PowerPoint deck"
        if "ppt/presentation.xml" in names
        else "an OpenDocument file"
        if "mimetype" in names
        else "a ZIP archive"
    )
    raise DocumentError(
        name,
        f"unsupported file type: {what} (expected PDF, DOCX, TXT, HTML or an image)",
        "unsupported",
    )


_XML_DECL_RE = re.compile(rb"^\s*<\?xml[^>]*?encoding\s*=\s*[\"']([A-Za-z0-9._:-]+)[\"']", re.I)


def declared_xml_encoding(data: bytes) -> str | None:
    """The ``encoding=`` of an ``<?xml ...?>`` declaration (XHTML), when it names a codec."""
    import codecs

    match = _XML_DECL_RE.match(data[:512])
    if not match:
        return None
    try:
        return codecs.lookup(match.group(1).decode("ascii")).name
    except LookupError:
        return None


def decode_text(data: bytes) -> tuple[str, str] | None:
    """(text, encoding) when the bytes are text in some charset, else None (binary).

    An XML declaration's encoding is taken at its word when the bytes decode with it.
    """
    from charset_normalizer import from_bytes

    declared = declared_xml_encoding(data)
    if declared:
        try:
            return data.decode(declared), declared
        except UnicodeDecodeError:
            pass

    for bom, enc in (
        (b"\xef\xbb\xbf", "utf-8-sig"),
        (b"\xff\xfe", "utf-16"),
        (b"\xfe\xff", "utf-16"),
    ):
        if data.startswith(bom):
            try:
                return data.decode(enc), enc
            except UnicodeDecodeError:
                break
    try:
        return data.decode("utf-8"), "utf-8"  # the common case; exact and fast
    except UnicodeDecodeError:
        pass
    if b"\x00" in data[:4096]:
        return None
    best = from_bytes(data).best()
    if best is None:
        return None
    text = str(best)
    # charset-normalizer will decode almost anything as *some* 8-bit codepage; control
    # characters other than whitespace are the tell-tale of binary data.
    controls = sum(
        1 for c in text[:20000] if unicodedata.category(c) == "Cc" and c not in "\t\n\r\f"
    )
    if controls > 0.01 * max(1, min(len(text), 20000)):
        return None
    return text, best.encoding


def detect_type(data: bytes, name: str) -> Detected:
    """Kind and MIME type from content; raises DocumentError(empty/unsupported/malformed)."""
    if not data:
        raise DocumentError(name, "file is empty (0 bytes)", "empty")
    head = data[:1024]
    if b"%PDF-" in head:
        return Detected("pdf", "application/pdf")
    for magic, mime in _IMAGE_MAGIC:
        if data.startswith(magic):
            return Detected("image", mime)
    if _is_bmp(data):
        return Detected("image", "image/bmp")
    if data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        return Detected("image", "image/webp")
    if data.startswith(b"PK\x03\x04"):
        return _zip_kind(data, name)
    for magic, what in _OTHER_MAGIC:
        if data.startswith(magic):
            raise DocumentError(
                name,
                f"unsupported file type: {what} (expected PDF, DOCX, TXT, HTML or an image)",
                "unsupported",
            )
    if _is_mz(data):
        raise DocumentError(
            name,
            "unsupported file type: a Windows executable (expected PDF, DOCX, TXT, HTML or an "
            "image)",
            "unsupported",
        )
    if _HTML_RE.search(data[:4096]):
        decoded = decode_text(data)
        return Detected("html", "text/html", decoded[1] if decoded else None)
    decoded = decode_text(data)
    if decoded is None:
        raise DocumentError(
            name,
            "unsupported file type: binary content that is neither PDF, DOCX, HTML, text "
            "nor a known image format",
            "unsupported",
        )
    text, encoding = decoded
    if not text.strip():
        raise DocumentError(name, "file contains only whitespace", "empty")
    suffix = PurePosixPath(name).suffix.lower()
    if suffix in (".html", ".htm", ".xhtml") and _HTML_TAGS_RE.search(text[:8192]):
        return Detected("html", "text/html", encoding)
    return Detected("txt", "text/plain", encoding)
