"""OCR stage: speed (pages/s) and character error rate, plus the preprocessing ablation.

Two workloads, both with known text:
* Arabic: the 40 scanned printed lines in ../shared/corpus/arabic-ocr-lines (real print).
* English: synthetic "scans" rendered here (serif text, rotated 2.5 degrees, grain, specks,
  a lighting gradient) so that deskew/denoise/binarise have something to fix.

Every variant is run side by side with the default configuration in the same process and
reported as a CER difference and a speed ratio, so the defaults in ``llmops.ocr.OcrConfig`` are
justified by numbers measured on this machine, not by habit.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from llmops.ocr import (  # noqa: E402
    OcrConfig,
    cer_counts,
    check_tesseract,
    ocr_cer_dir,
    ocr_pages,
    with_overrides,
)

CORPUS = Path(os.environ.get("LLMOPS_SHARED_CORPUS", ROOT.parent / "shared" / "corpus"))
ARABIC_LINES = CORPUS / "arabic-ocr-lines"
FONT_CANDIDATES = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSerif.ttf",
    "/usr/share/fonts/truetype/noto/NotoSerif-Regular.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
]
PARAGRAPHS = [
    "The water authority reviewed the annual report on the third of September and approved "
    "the revised tariff for households that use less than twelve cubic metres per month.",
    "Maintenance crews replaced 47 valves in the northern district, which reduced leakage by "
    "about nine percent compared with the same quarter of the previous year.",
    "Customers may appeal a bill within thirty days by writing to the billing office, quoting "
    "their account number and the period in dispute.",
    "The board asked the operations team to publish drought guidance in both English and "
    "Arabic before the start of the summer season.",
]


def _font(size: int) -> ImageFont.ImageFont:
    for path in FONT_CANDIDATES:
        if Path(path).is_file():
            return ImageFont.truetype(path, size)
    return ImageFont.load_default(size=size)


def _wrap(text: str, font: ImageFont.ImageFont, width: int) -> list[str]:
    lines, current = [], ""
    for word in text.split():
        trial = f"{current} {word}".strip()
        if font.getlength(trial) <= width:
            current = trial
        else:
            lines.append(current)
            current = word
    return [*lines, current] if current else lines


def synthetic_scan(seed: int, angle: float = 2.5) -> tuple[Image.Image, str]:
    """A 150-dpi-like page with known text, degraded the way office scanners degrade it."""
    rng = np.random.default_rng(seed)
    font = _font(22)
    page = Image.new("L", (1240, 900), 250)
    draw = ImageDraw.Draw(page)
    y, lines = 60, []
    for k in range(len(PARAGRAPHS)):
        for line in _wrap(PARAGRAPHS[(seed + k) % len(PARAGRAPHS)], font, 1100):
            draw.text((70, y), line, fill=25, font=font)
            lines.append(line)
            y += 34
        y += 22
    page = page.rotate(angle, resample=Image.BICUBIC, expand=True, fillcolor=250)
    arr = np.asarray(page, dtype=np.float64)
    arr = arr + rng.normal(0, 18, arr.shape)  # sensor grain
    specks = rng.random(arr.shape)
    arr[specks < 0.004] = 0  # dust
    arr[specks > 0.996] = 255
    gradient = np.linspace(0, 40, arr.shape[1])[None, :]  # uneven lighting
    arr = np.clip(arr - gradient, 0, 255).astype(np.uint8)
    return Image.fromarray(arr), "\n".join(lines)


def _english_run(pages: list[tuple[Image.Image, str]], cfg: OcrConfig, workers: int) -> dict:
    start = time.perf_counter()
    results = ocr_pages([img for img, _ in pages], "eng", cfg, workers=workers)
    elapsed = time.perf_counter() - start
    edits = chars = 0
    for res, (_, truth) in zip(results, pages, strict=True):
        e, c = cer_counts(res.text, truth)
        edits, chars = edits + e, chars + c
    return {"micro_cer": edits / chars, "pages_per_s": len(pages) / elapsed}


def _arabic_run(cfg: OcrConfig, languages: str, workers: int, limit: int | None) -> dict:
    report = ocr_cer_dir(ARABIC_LINES, languages=languages, cfg=cfg, workers=workers, limit=limit)
    return {"micro_cer": report["micro_cer"], "pages_per_s": report["pages_per_s"]}


VARIANTS: list[tuple[str, dict]] = [
    ("default", {}),
    ("no preprocessing", {"preprocess": False}),
    ("no deskew", {"deskew": False}),
    ("no denoise", {"denoise": "none"}),
    ("denoise nlmeans", {"denoise": "nlmeans"}),
    ("no binarise", {"binarize": "none"}),
    ("binarise otsu", {"binarize": "otsu"}),
    ("no upscale", {"min_line_px": 0}),
    ("upscale lines to 40px", {"min_line_px": 40}),
    ("psm 6", {"psm": 6}),
    ("psm 7", {"psm": 7}),
    ("psm 13", {"psm": 13}),
]
QUICK = {"default", "no preprocessing", "no deskew", "no denoise", "no binarise", "psm 6"}


def _table(title: str, rows: list[tuple[str, dict]]) -> None:
    base = rows[0][1]
    print(f"\n{title}")
    print(f"{'variant':<22}{'micro CER':>10}{'dCER':>9}{'pages/s':>9}{'speed x':>9}")
    for name, r in rows:
        print(
            f"{name:<22}{r['micro_cer']:>10.4f}{r['micro_cer'] - base['micro_cer']:>+9.4f}"
            f"{r['pages_per_s']:>9.2f}{r['pages_per_s'] / base['pages_per_s']:>9.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer pages and variants")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    print(f"tesseract {check_tesseract('eng+ara')}, workers={args.workers}")
    variants = [v for v in VARIANTS if not args.quick or v[0] in QUICK]

    pages = [synthetic_scan(seed) for seed in range(1 if args.quick else 3)]
    english = [
        (name, _english_run(pages, with_overrides(OcrConfig(), **changes), args.workers))
        for name, changes in variants
    ]
    _table(f"English synthetic scans ({len(pages)} pages, eng)", english)

    if not ARABIC_LINES.is_dir():
        print(f"\nArabic: skipped, {ARABIC_LINES} not found")
        return
    limit = 12 if args.quick else None
    n = limit or len(list(ARABIC_LINES.glob("*.gt.txt")))
    arabic = [
        (name, _arabic_run(with_overrides(OcrConfig(), **changes), "ara", args.workers, limit))
        for name, changes in variants
    ]
    _table(f"Arabic scanned lines ({n} lines, ara)", arabic)

    mixed = [
        ("eng+ara, retry ara", _arabic_run(OcrConfig(), "eng+ara", args.workers, limit)),
        (
            "eng+ara, no retry",
            _arabic_run(OcrConfig(arabic_retry=False), "eng+ara", args.workers, limit),
        ),
    ]
    _table(f"Arabic lines with the pipeline's mixed models ({n} lines)", mixed)


if __name__ == "__main__":
    main()
