"""OCR stage: speed (pages/s) and character error rate, plus the preprocessing ablation.

Two workloads, both with known text:
* Arabic: the 40 scanned printed lines in ../shared/corpus/arabic-ocr-lines (real print).
* English: synthetic "scans" rendered here (serif text, rotated 2.5 degrees, grain, specks,
  a lighting gradient) so that deskew/denoise/binarise have something to fix.

Every variant is run side by side with the default configuration in the same process and
reported as a CER difference and a speed ratio, so the defaults in ``llmops.ocr.OcrConfig`` are
justified by numbers measured on this machine, not by habit.

Selection that generalises (run first): the corpus lines are split in two by a fixed hash
(``llmops.ocr.split_lines``); preprocessing and page segmentation are chosen by coordinate
descent on the selection half only (``llmops.ocr.select_and_evaluate``), and the CER of plain
tesseract (no preprocessing, automatic layout), of the chosen settings and of the shipped
defaults is printed for both halves. The held-out half is never looked at while choosing.
Then the orientation check: the held-out lines and an English page, upright and turned by
90/180/270 degrees, read with the shipped defaults.

Print from other books (``--other-print DIR [DIR ...]``): folders of ``*.png`` + ``*.gt.txt`` lines
from printings the corpus does not hold (e.g. other books of OpenArabic/OCR_GS_Data). Plain
tesseract, the settings chosen on the corpus half and the shipped defaults are scored on each
folder; nothing is chosen there.
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
    select_and_evaluate,
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


# Plain tesseract: the page as scanned, automatic page segmentation, nothing else.
PLAIN: dict = {"preprocess": False, "psm": 3, "orientation": "none"}
# Search space of the selection, walked one setting at a time from a do-nothing pipeline.
START: dict = {"preprocess": True, "denoise": "none", "binarize": "none", "deskew": False,
               "min_line_px": 0, "pad_px": 0, "psm": 3, "orientation": "none"}  # fmt: skip
DIMENSIONS: list[tuple[str, list]] = [
    ("psm", [3, 6, 7, 13, None]),
    ("denoise", ["none", "median", "nlmeans"]),
    ("binarize", ["none", "otsu", "adaptive"]),
    ("deskew", [False, True]),
    ("min_line_px", [0, 20, 40]),
    ("pad_px", [0, 10]),
]


def line_cer(paths: list[Path], cfg: OcrConfig, languages: str = "ara", workers: int = 2) -> float:
    """Micro CER of ``cfg`` over ground-truth line images."""
    results = ocr_pages(paths, languages, cfg, workers=workers)
    edits = chars = 0
    for res, png in zip(results, paths, strict=True):
        truth = png.with_name(png.name[: -len(".png")] + ".gt.txt").read_text(encoding="utf-8")
        e, c = cer_counts(res.text, truth)
        edits, chars = edits + e, chars + c
    return edits / chars if chars else 0.0


def _scorer(workers: int):
    def score(paths, settings: dict) -> float:
        cer = line_cer(list(paths), with_overrides(OcrConfig(), **settings), workers=workers)
        print(f"  {len(paths):>2} lines {settings} -> {cer:.4f}", flush=True)
        return cer

    return score


def selection_report(workers: int, quick: bool) -> dict:
    """Choose on one half, report on the other; compare with plain tesseract and the defaults."""
    paths = sorted(ARABIC_LINES.glob("*.png"))
    paths = [p for p in paths if p.with_name(p.stem + ".gt.txt").is_file()]
    print(f"\nOCR selection on {len(paths)} corpus lines (half chosen on, half held out)")
    report = select_and_evaluate(
        paths,
        _scorer(workers),
        DIMENSIONS,
        START,
        baselines={"plain tesseract": PLAIN, "shipped defaults": {}},
        rounds=1 if quick else 2,
        limit=8 if quick else None,
    )
    print(
        f"chosen on {report['n_selection']} selection lines: {report['chosen']}\n"
        f"{'settings':<20}{'selection CER':>15}{'held-out CER':>14}"
        f"  ({report['n_held_out']} held-out lines)"
    )
    for name in ("plain tesseract", "chosen settings", "shipped defaults"):
        sel, held = report["selection_cer"][name], report["held_out_cer"][name]
        print(f"{name:<20}{sel:>15.4f}{held:>14.4f}")
    held = report["held_out_cer"]
    print(f"held-out CER chosen / plain: {held['chosen settings'] / held['plain tesseract']:.2f}")
    return report


def other_print_report(dirs: list[Path], chosen: dict, workers: int, limit: int | None) -> None:
    """CER on print the selection never saw: plain tesseract vs chosen vs shipped defaults."""
    candidates = {"plain tesseract": PLAIN, "chosen settings": chosen, "shipped defaults": {}}
    print(f"\nOther print (nothing chosen here), micro CER; chosen = {chosen}")
    print(f"{'folder':<28}{'lines':>6}" + "".join(f"{n:>18}" for n in candidates) + "  def/plain")
    totals = dict.fromkeys(candidates, 0.0)
    for folder in dirs:
        paths = sorted(p for p in folder.glob("*.png") if p.with_name(p.stem + ".gt.txt").is_file())
        paths = paths[:limit] if limit else paths
        if not paths:
            print(f"{folder.name:<28} no *.png + *.gt.txt pairs")
            continue
        cers = {n: line_cer(paths, with_overrides(OcrConfig(), **cfg), workers=workers)
                for n, cfg in candidates.items()}  # fmt: skip
        for n in candidates:
            totals[n] += cers[n] / len(dirs)
        ratio = cers["shipped defaults"] / cers["plain tesseract"]
        print(f"{folder.name[:27]:<28}{len(paths):>6}"
              + "".join(f"{cers[n]:>18.4f}" for n in candidates) + f"{ratio:>11.2f}")  # fmt: skip
    print(f"{'mean over folders':<34}" + "".join(f"{totals[n]:>18.4f}" for n in candidates))


def rotation_report(held_out: list[Path], workers: int) -> None:
    """CER of the shipped defaults on upright and quarter-turned copies of unseen print."""
    from llmops.ocr import ocr_image

    print(f"\nRotated scans (shipped defaults, OSD on): {len(held_out)} held-out lines + 1 page")
    page, page_truth = synthetic_scan(7, angle=0.0)
    print(f"{'turn':>6}{'lines CER':>11}{'page CER':>10}{'right angle':>13}")
    for quarter in (0, 90, 180, 270):
        edits = chars = right = 0
        for png in held_out:
            with Image.open(png) as img:
                img.load()
                res = ocr_image(img.rotate(quarter, expand=True, fillcolor=255), "ara")
            truth = png.with_name(png.stem + ".gt.txt").read_text(encoding="utf-8")
            e, c = cer_counts(res.text, truth)
            edits, chars, right = edits + e, chars + c, right + (res.rotation == quarter)
        res = ocr_image(page.rotate(quarter, expand=True, fillcolor=250), "eng")
        pe, pc = cer_counts(res.text, page_truth)
        right += res.rotation == quarter
        print(f"{quarter:>6}{edits / chars:>11.4f}{pe / pc:>10.4f}{right:>9}/{len(held_out) + 1}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer pages and variants")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--no-ablation", action="store_true", help="only selection and rotation")
    parser.add_argument("--no-rotation", action="store_true", help="skip the rotation check")
    parser.add_argument("--rotation-only", action="store_true", help="only the rotation check")
    parser.add_argument(
        "--other-print", nargs="+", type=Path, default=[], metavar="DIR",
        help="folders of *.png + *.gt.txt lines from other printings, scored with the choice",
    )  # fmt: skip
    args = parser.parse_args()
    print(f"tesseract {check_tesseract('eng+ara')}, workers={args.workers}")
    if ARABIC_LINES.is_dir() and args.rotation_only:
        from llmops.ocr import split_lines

        held_out = split_lines(sorted(ARABIC_LINES.glob("*.png")))[1]
        rotation_report(held_out[: 8 if args.quick else None], args.workers)
        return
    if ARABIC_LINES.is_dir():
        report = selection_report(args.workers, args.quick)
        if args.other_print:
            limit = 8 if args.quick else None
            other_print_report(args.other_print, report["chosen"], args.workers, limit)
        if not args.no_rotation:
            rotation_report(report["held_out_paths"][: 8 if args.quick else None], args.workers)
    else:
        print(f"\nselection/rotation: skipped, {ARABIC_LINES} not found")
    if args.no_ablation:
        return
    ablation(args)


def ablation(args: argparse.Namespace) -> None:
    """Each setting switched on its own against the defaults (all 40 lines: not a selection)."""
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
