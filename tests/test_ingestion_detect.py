"""Type detection from bytes: two-byte magics need their structure, XHTML keeps its encoding."""

from __future__ import annotations

import io

import pytest

from llmops.ingestion import DocumentError
from llmops.ingestion.detect import declared_xml_encoding, detect_type
from llmops.ingestion.office import extract_html


@pytest.mark.parametrize(
    "text",
    [
        "BMW Group annual report 2024\nRevenue grew by 4 percent.\n",
        "MZ Holdings Ltd\nBoard minutes, 3 March 2025\nPresent: the chair and four members.\n",
    ],
)
def test_text_that_starts_with_a_two_byte_magic_is_text(text):
    detected = detect_type(text.encode(), "report.txt")
    assert detected.kind == "txt"


def test_a_real_bmp_is_still_an_image():
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (32, 16), "white").save(buf, format="BMP")
    assert detect_type(buf.getvalue(), "scan.bmp").mime_type == "image/bmp"


def test_a_pe_executable_is_rejected_as_one():
    header = bytearray(256)
    header[:2] = b"MZ"
    header[60:64] = (128).to_bytes(4, "little")
    header[128:132] = b"PE\x00\x00"
    with pytest.raises(DocumentError, match="Windows executable"):
        detect_type(bytes(header), "setup.exe")


XHTML = """<?xml version="1.0" encoding="{enc}"?>
<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Strict//EN"
  "http://www.w3.org/TR/xhtml1/DTD/xhtml1-strict.dtd">
<html xmlns="http://www.w3.org/1999/xhtml"><head><title>Tarifs</title></head>
<body><h1>Tarifs de l'eau</h1><p>Le prix du mètre cube passe à 2,15 EUR au 1er janvier.</p>
<p>Les ménages à faible revenu bénéficient d'une réduction de 30 %.</p></body></html>
"""


@pytest.mark.parametrize("encoding", ["utf-8", "ISO-8859-1"])
def test_xhtml_with_an_xml_declaration_is_parsed_in_its_declared_encoding(encoding):
    data = XHTML.format(enc=encoding).encode(encoding)
    detected = detect_type(data, "tarifs.xhtml")
    assert detected.kind == "html"
    assert declared_xml_encoding(data) in ("utf-8", "iso8859-1")
    text = extract_html(data, "tarifs.xhtml")[0].text
    assert "mètre cube passe à 2,15 EUR" in text
    assert "réduction de 30 %" in text
