"""Regenerate the bundled sample inbox from the plain-text sources in examples/sources.

The inbox exercises every ingestion path on content we wrote ourselves: a born-digital PDF with
a ruled table and a scanned second page (page-level OCR fallback), a scanned JPEG with slight
skew and noise, a DOCX with headings and a table, HTML with navigation chrome, an Arabic TXT in
Windows-1256, and a truncated PDF that must be quarantined. (inbox/drought-faq.html is authored
directly: HTML needs no generating.)  Run: python examples/make_samples.py
"""

from __future__ import annotations

import io
import random
import textwrap
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

HERE = Path(__file__).resolve().parent
SOURCES, INBOX = HERE / "sources", HERE / "inbox"
FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"

FINANCE_TABLE = [
    ["Item", "2023 ($ million)", "2024 ($ million)", "Change"],
    ["Operating revenue", "91.2", "96.4", "+5.7%"],
    ["Operating expenses", "78.5", "81.9", "+4.3%"],
    ["Capital expenditure", "39.8", "44.1", "+10.8%"],
    ["Debt service", "12.6", "13.0", "+3.2%"],
    ["Cash reserves", "54.3", "58.7", "+8.1%"],
]


def scan(text: str, width_px: int = 2480, skew_deg: float = 1.2, seed: int = 7) -> Image.Image:
    """Render text like a 300 dpi office scan: slight skew, speckle noise, grey paper."""
    font = ImageFont.truetype(FONT, 40)
    lines: list[str] = []
    for para in text.split("\n"):
        lines += textwrap.wrap(para, 90) or [""]
    height = 200 + 58 * len(lines)
    img = Image.new("L", (width_px, max(height, 800)), 238)
    draw = ImageDraw.Draw(img)
    for i, line in enumerate(lines):
        draw.text((160, 120 + 58 * i), line, font=font, fill=25)
    img = img.rotate(skew_deg, expand=True, fillcolor=238, resample=Image.BICUBIC)
    rng = np.random.default_rng(seed)
    arr = np.asarray(img, dtype=np.int16) + rng.normal(0, 6, img.size[::-1]).astype(np.int16)
    return Image.fromarray(arr.clip(0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(0.6))


def born_digital_pdf(source: str, scanned_page: Image.Image) -> bytes:
    """Text pages drawn with matplotlib (real, extractable text, TrueType fonts) + a ruled
    table, followed by one scanned page that has no text layer."""
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["pdf.fonttype"] = 42
    matplotlib.rcParams["text.parse_math"] = False  # "$48.6 million" is money, not math
    import matplotlib.pyplot as plt
    from matplotlib.backends.backend_pdf import PdfPages

    blocks = [b for b in source.strip().split("\n\n") if b.strip()]
    buf = io.BytesIO()
    with PdfPages(
        buf, metadata={"Title": "Northwind Regional Water Authority Annual Report 2024"}
    ) as pdf:
        fig, y = None, 0.0

        def new_page():
            nonlocal fig, y
            if fig is not None:
                pdf.savefig(fig)
                plt.close(fig)
            fig, y = plt.figure(figsize=(8.5, 11)), 0.94

        new_page()
        for block in blocks:
            heading = block.startswith("#")
            text = block.lstrip("# ").strip()
            wrapped = [text] if heading else textwrap.wrap(text, 95)
            needed = 0.03 * len(wrapped) + 0.02
            if y - needed < 0.06:
                new_page()
            for line in wrapped:
                fig.text(
                    0.08,
                    y,
                    line,
                    fontsize=14 if heading else 9.5,
                    weight="bold" if heading else "normal",
                    family="DejaVu Sans",
                )
                y -= 0.035 if heading else 0.022
            y -= 0.015
            if text.startswith("Operating revenue"):
                if y - 0.026 * len(FINANCE_TABLE) < 0.06:
                    new_page()
                y = _ruled_table(fig, y)
        pdf.savefig(fig)
        plt.close(fig)
        fig = plt.figure(figsize=(8.5, 11))
        ax = fig.add_axes((0, 0, 1, 1))
        ax.imshow(scanned_page, cmap="gray", vmin=0, vmax=255)
        ax.axis("off")
        pdf.savefig(fig, dpi=150)
        plt.close(fig)
    return buf.getvalue()


def _ruled_table(fig, top: float) -> float:
    xs = [0.08, 0.38, 0.56, 0.74, 0.90]
    row_h = 0.026
    for r, row in enumerate(FINANCE_TABLE):
        yy = top - r * row_h
        for c, cell in enumerate(row):
            fig.text(
                xs[c] + 0.01,
                yy - 0.018,
                cell,
                fontsize=9,
                family="DejaVu Sans",
                weight="bold" if r == 0 else "normal",
            )
    bottom = top - len(FINANCE_TABLE) * row_h
    for r in range(len(FINANCE_TABLE) + 1):
        fig.add_artist(_line([xs[0], xs[-1]], [top - r * row_h] * 2))
    for x in xs:
        fig.add_artist(_line([x, x], [top, bottom]))
    return bottom - 0.03


def _line(x, y):
    from matplotlib.lines import Line2D

    return Line2D(x, y, linewidth=0.8, color="black")


def charter_docx() -> bytes:
    import docx

    d = docx.Document()
    d.add_heading("Customer Charter", level=1)
    d.add_paragraph(
        "This charter sets out the service standards that the Northwind Regional Water "
        "Authority commits to for every household and business it supplies. If we miss a "
        "guaranteed standard, we credit your account automatically."
    )
    d.add_heading("Guaranteed service standards", level=2)
    table = d.add_table(rows=1, cols=3)
    for cell, text in zip(
        table.rows[0].cells, ["Service", "Standard", "Credit if missed"], strict=False
    ):
        cell.text = text
    for row in [
        ("Planned interruption notice", "48 hours in advance", "$20"),
        ("Restoring supply after a burst", "within 12 hours", "$40"),
        ("Answering a written complaint", "within 10 working days", "$20"),
        ("Keeping an appointment", "within a 2-hour slot", "$25"),
    ]:
        cells = table.add_row().cells
        for cell, text in zip(cells, row, strict=False):
            cell.text = text
    d.add_heading("Low pressure", level=2)
    d.add_paragraph(
        "Water pressure at the boundary of your property should be at least 15 metres head. "
        "If pressure falls below that level for more than one hour on two occasions within 28 "
        "days, we will investigate and pay a credit of $50."
    )
    d.add_heading("Contact us", level=2)
    d.add_paragraph(
        "Call 555-0100 any time, day or night, to report a leak or a loss of supply. For "
        "billing questions write to billing@northwind-water.example.org."
    )
    buf = io.BytesIO()
    d.save(buf)
    return buf.getvalue()


def main() -> None:
    random.seed(7)
    INBOX.mkdir(exist_ok=True)
    report = (SOURCES / "water-authority-annual-report.txt").read_text()
    minutes = (SOURCES / "board-minutes-2024-09.txt").read_text()
    note = (
        "Lakeside plant operations log, October 2024. Filter 3 was backwashed on October 7 "
        "after head loss reached 2.1 metres. Chlorine dose was raised from 1.2 to 1.4 mg/l on "
        "October 15 following the lake turnover. No sample exceeded the turbidity limit."
    )
    pdf = born_digital_pdf(report, scan(note, width_px=1700, skew_deg=0.8, seed=3))
    (INBOX / "water-authority-annual-report-2024.pdf").write_bytes(pdf)
    scan(minutes).save(INBOX / "board-minutes-2024-09-scan.jpg", dpi=(300, 300), quality=80)
    (INBOX / "customer-charter.docx").write_bytes(charter_docx())
    arabic = (SOURCES / "tariff-notice-ar.txt").read_text(encoding="utf-8")
    (INBOX / "tariff-notice-ar.txt").write_bytes(arabic.encode("cp1256"))
    # A truncated upload: must be quarantined with a clear reason, never stop the others.
    (INBOX / "truncated-upload.pdf").write_bytes(pdf[:700])
    for path in sorted(INBOX.iterdir()):
        print(f"{path.name}: {path.stat().st_size} bytes")


if __name__ == "__main__":
    main()
