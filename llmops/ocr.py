"""OCR engine: image clean-up, tesseract (eng+ara) with timeouts, and the CER metric.

Only pages without a usable text layer come here, so this module optimises for scans: grey,
slightly rotated, noisy, sometimes single text lines cut out of a book. Every default below was
chosen by measurement (``bench/bench_ocr.py`` prints the ablation), not by habit.
"""

from __future__ import annotations

import functools
import hashlib
import multiprocessing
import os
import re
import shutil
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from llmops.arabic import ArabicConfig, arabic_ratio, detect_language, normalize_arabic
from llmops.ingestion.errors import OcrError
from llmops.text import collapse_whitespace

INSTALL_HINT = "apt-get install tesseract-ocr tesseract-ocr-ara"
# Tesseract traineddata codes whose script is Arabic: used to re-read Arabic-dominated text
# without the Latin model competing for the punctuation and the digits.
# Share of Arabic letters in the first (mixed-model) read that triggers the Arabic-only re-read.
# Mixed reads of the 40 purely Arabic corpus lines score 0.73-1.0 (the Latin model invents
# letters from punctuation), so 0.6 catches them while a page with 40% real Latin text stays.
ARABIC_REREAD_RATIO = 0.6
ARABIC_SCRIPT_LANGS = ("ara", "fas", "urd", "pus", "snd", "uig", "kur", "Arabic")


class OcrUnavailable(Exception):
    """tesseract or a requested language pack is missing; the message says how to install it."""


class OcrTimeout(Exception):
    """tesseract did not finish within ``OcrConfig.timeout_s`` (the process was killed)."""


__all__ = ["OcrConfig", "OcrError", "OcrResult", "OcrTimeout", "OcrUnavailable"]


@dataclass(frozen=True)
class OcrConfig:
    """How to clean an image and call tesseract.

    ``psm=None`` chooses per image: 13 (raw line) for a single cropped text line, 3 (automatic
    layout) otherwise. On the 40 scanned Arabic lines psm 13 measured CER 0.12 vs 0.15 for psm 7
    and 0.33 for psm 6; pages need real layout analysis.
    """

    languages: str = "eng+ara"
    psm: int | None = None
    oem: int = 1  # LSTM: the only engine the Debian "fast" models ship
    dpi: int = 300
    timeout_s: float = 120.0
    preprocess: bool = True
    deskew: bool = True
    max_skew_deg: float = 10.0
    denoise: str = "median"  # none | median | nlmeans
    # adaptive: measured CER vs Otsu 0.0017 vs 0.0039 (English scans, uneven light) and 0.1109 vs
    # 0.1114 (Arabic lines); "none" (tesseract's own global Otsu) ties but fails on shadows.
    binarize: str = "adaptive"  # none | otsu | adaptive
    min_line_px: int = 20  # upscale when text lines are lower than this (small print)
    max_upscale: float = 4.0
    pad_px: int = 0  # white margin added around the cleaned image (tight line crops)
    arabic_retry: bool = True  # re-read Arabic-dominated pages with the Arabic-only models
    # Quarter-turn correction: "osd" asks tesseract's orientation detector (checked against the
    # text-line axis from the ink profile), "none" trusts the scan to be upright.
    orientation: str = "osd"
    # Below this OSD confidence the two readings along the text-line axis (0/180 or 90/270) are
    # both OCR'd and the more confident one kept; measured on the corpus lines: wrong OSD
    # answers scored <= 0.33, right ones up to 2.4.
    osd_min_conf: float = 1.0
    arabic: ArabicConfig = field(default_factory=ArabicConfig)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | OcrConfig | None) -> OcrConfig:
        """Build from YAML/JSON config, ignoring unknown keys."""
        if data is None:
            return cls()
        if isinstance(data, OcrConfig):
            return data
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        if "arabic" in values:
            values["arabic"] = ArabicConfig.from_dict(values["arabic"])
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class OcrResult:
    """Text in logical order and normalised, mean word confidence (0-100), detected language."""

    text: str
    confidence: float
    language_hint: str = "und"
    languages: str = ""
    psm: int = 3
    word_count: int = 0
    rotation: int = 0  # degrees the page was turned clockwise before OCR (0/90/180/270)
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------- tesseract checks


def _package_for(lang: str) -> str:
    return "tesseract-ocr-" + lang.lower().replace("_", "-")


def _install_command(languages: Iterable[str]) -> str:
    packages = ["tesseract-ocr", *(_package_for(lang) for lang in languages if lang != "eng")]
    if "tesseract-ocr-ara" not in packages:
        packages.append("tesseract-ocr-ara")
    return "apt-get install " + " ".join(dict.fromkeys(packages))


def _split_languages(languages: str) -> list[str]:
    langs = [lang.strip() for lang in languages.split("+") if lang.strip()]
    if not langs:
        raise ValueError("no OCR language given (expected e.g. 'eng+ara')")
    return langs


@functools.lru_cache(maxsize=32)
def check_tesseract(languages: str = "eng+ara") -> str:
    """Return the tesseract version; raise OcrUnavailable (with the apt command) if anything is
    missing. Cached on success so per-page calls cost nothing."""
    import pytesseract

    langs = _split_languages(languages)
    if shutil.which(pytesseract.pytesseract.tesseract_cmd) is None:
        raise OcrUnavailable(
            f"tesseract binary not found ({pytesseract.pytesseract.tesseract_cmd!r} is not on "
            f"PATH). Install it with: {_install_command(langs)}"
        )
    try:
        version = str(pytesseract.get_tesseract_version())
        installed = set(pytesseract.get_languages(config=""))
    except (pytesseract.TesseractNotFoundError, pytesseract.TesseractError, OSError) as err:
        raise OcrUnavailable(
            f"tesseract is not usable ({err}). Install it with: {_install_command(langs)}"
        ) from err
    missing = [lang for lang in langs if lang not in installed]
    if missing:
        raise OcrUnavailable(
            f"tesseract language pack(s) missing: {', '.join(missing)} (installed: "
            f"{', '.join(sorted(installed)) or 'none'}). Install with: "
            f"apt-get install tesseract-ocr {' '.join(_package_for(m) for m in missing)}"
            + (f"  (the default eng+ara needs: {INSTALL_HINT})" if "ara" not in missing else "")
        )
    return version


# --------------------------------------------------------------------------- preprocessing


def to_gray(img: Image.Image) -> np.ndarray:
    """8-bit grey array; transparent areas become white paper, 16-bit scans are rescaled."""
    if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        paper = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(paper, rgba)
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        scaled = (arr - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(arr)
        return scaled.astype(np.uint8)
    return np.asarray(img.convert("L"), dtype=np.uint8).copy()


def _ink_mask(gray: np.ndarray) -> np.ndarray:
    """Boolean text mask by Otsu (dark ink on light paper; inverted pages are flipped first)."""
    _, binary = cv2.threshold(gray, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    ink = binary == 0
    if ink.mean() > 0.5:  # white text on dark background
        ink = ~ink
    return ink


def _profile_score(ys: np.ndarray, xs: np.ndarray, angle_deg: float) -> float:
    theta = np.deg2rad(angle_deg)
    rows = np.round(ys * np.cos(theta) + xs * np.sin(theta)).astype(np.int64)
    hist = np.bincount(rows - rows.min())
    return float(np.dot(hist, hist))


def estimate_skew(gray: np.ndarray, max_angle: float = 10.0) -> float:
    """Skew of the text lines in degrees (positive = rotated counter-clockwise on screen).

    Projection profile: project ink pixels onto the vertical axis at candidate angles; text
    lines give the sharpest histogram (largest sum of squares) when they are horizontal. It works
    on a single line as well as on a page, unlike minAreaRect which needs one text block.
    Coarse 0.5 degree grid, then 0.05 degree refinement; pixels are subsampled for speed.
    """
    ink = _ink_mask(gray)
    ys, xs = np.nonzero(ink)
    if ys.size < 50:
        return 0.0
    if ys.size > 150_000:
        pick = np.random.default_rng(0).choice(ys.size, 150_000, replace=False)
        ys, xs = ys[pick], xs[pick]
    ys = ys.astype(np.float64)
    xs = xs.astype(np.float64)

    def best(angles: np.ndarray) -> float:
        scores = [_profile_score(ys, xs, a) for a in angles]
        return float(angles[int(np.argmax(scores))])

    coarse = best(np.arange(-max_angle, max_angle + 1e-9, 0.5))
    fine = best(np.arange(coarse - 0.5, coarse + 0.5 + 1e-9, 0.05))
    # rows = y*cos + x*sin flattens lines rotated counter-clockwise by +angle (y axis down).
    return round(fine, 2) + 0.0  # no "-0.0"


def rotate(gray: np.ndarray, angle_deg: float) -> np.ndarray:
    """Rotate counter-clockwise by ``angle_deg`` on an enlarged canvas (nothing clipped).

    The new corners get the paper's own grey (the median pixel): pure white corners next to grey
    paper would become the "background" class of every later global threshold.
    """
    h, w = gray.shape
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), angle_deg, 1.0)
    cos, sin = abs(matrix[0, 0]), abs(matrix[0, 1])
    new_w, new_h = int(h * sin + w * cos + 0.5), int(h * cos + w * sin + 0.5)
    matrix[0, 2] += new_w / 2 - w / 2
    matrix[1, 2] += new_h / 2 - h / 2
    return cv2.warpAffine(
        gray, matrix, (new_w, new_h), flags=cv2.INTER_CUBIC, borderValue=int(np.median(gray))
    )


def binarize(gray: np.ndarray, method: str = "otsu") -> np.ndarray:
    """0/255 image. Otsu for evenly lit scans; adaptive (local Gaussian) for shadows/gradients."""
    if method == "none":
        return gray
    if method == "otsu":
        _, out = cv2.threshold(gray, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    elif method == "adaptive":
        # window of a few line heights: local enough for shadows, wide enough to see paper
        block = max(31, (min(gray.shape) // 8) | 1)
        out = cv2.adaptiveThreshold(
            gray, 255, cv2.ADAPTIVE_THRESH_GAUSSIAN_C, cv2.THRESH_BINARY, block, 25
        )
    else:
        raise ValueError(f"binarize must be none, otsu or adaptive, got {method!r}")
    if (out == 0).mean() > 0.5:  # keep dark text on white paper, which tesseract expects
        out = 255 - out
    return out


def denoise(gray: np.ndarray, method: str = "median") -> np.ndarray:
    """Remove salt-and-pepper specks (median) or grain (non-local means, ~10x slower)."""
    if method == "none":
        return gray
    if method == "median":
        return cv2.medianBlur(gray, 3)
    if method == "nlmeans":
        return cv2.fastNlMeansDenoising(gray, None, h=15, templateWindowSize=7, searchWindowSize=21)
    raise ValueError(f"denoise must be none, median or nlmeans, got {method!r}")


def preprocess(img: Image.Image, cfg: OcrConfig | None = None) -> Image.Image:
    """Grey -> denoise -> deskew -> upscale small print -> binarise, each switchable in cfg.

    Denoising comes first so specks do not vote in the skew estimate; the upscale decision uses
    the line height, which is only measurable once lines are horizontal; binarisation comes last
    so rotation and scaling interpolate grey levels rather than jagged black/white edges.
    """
    cfg = cfg or OcrConfig()
    gray = to_gray(img)
    gray = denoise(gray, cfg.denoise)
    if cfg.deskew:
        angle = estimate_skew(gray, cfg.max_skew_deg)
        if abs(angle) >= 0.5:  # smaller tilts: tesseract copes; resampling would blur
            gray = rotate(gray, -angle)
    if cfg.min_line_px > 0:
        _, line_height = count_text_lines(gray)
        if 0 < line_height < cfg.min_line_px:
            factor = min(cfg.max_upscale, cfg.min_line_px / line_height)
            gray = cv2.resize(gray, None, fx=factor, fy=factor, interpolation=cv2.INTER_CUBIC)
    gray = binarize(gray, cfg.binarize)
    if cfg.pad_px > 0:
        paper = int(np.median(gray))
        gray = cv2.copyMakeBorder(gray, *[cfg.pad_px] * 4, cv2.BORDER_CONSTANT, value=paper)
    return Image.fromarray(gray)


def count_text_lines(gray: np.ndarray) -> tuple[int, int]:
    """(number of text lines, median line height in px) from the horizontal ink profile.

    A 5x5 median first, so scanner grain does not fill every row. Bands closer than half the
    tallest band are merged (Arabic dots and Latin ascenders form thin bands just above the
    core of their line); bands thinner than a third of the tallest are rules or specks.
    """
    ink = _ink_mask(cv2.medianBlur(gray, 5) if min(gray.shape) > 10 else gray)
    rows = ink.sum(axis=1)
    if rows.max(initial=0) == 0:
        return 0, 0
    on = np.concatenate([[False], rows > max(1, 0.1 * rows.max()), [False]])
    edges = np.flatnonzero(np.diff(on.astype(np.int8)))
    spans = [[int(s), int(e)] for s, e in zip(edges[::2], edges[1::2], strict=True)]
    tallest = max(e - s for s, e in spans)
    merged = [spans[0]]
    for start, end in spans[1:]:
        if start - merged[-1][1] < tallest / 2:
            merged[-1][1] = end
        else:
            merged.append([start, end])
    heights = [e - s for s, e in merged]
    lines = [h for h in heights if h >= max(heights) / 3]
    return len(lines), int(np.median(lines))


def choose_psm(gray: np.ndarray) -> int:
    """13 (raw line) for a cropped single text line, 3 (full layout analysis) otherwise.

    A crop is a "line" when it holds one band of text and is at least twice as wide as high:
    no page is, so a one-line page (a title) still gets layout analysis.
    """
    lines, _ = count_text_lines(gray)
    h, w = gray.shape
    return 13 if lines == 1 and w >= 2 * h else 3


# --------------------------------------------------------------------------- OCR


def _tesseract_failure(err: BaseException, what: str, image: Image.Image) -> OcrError:
    """A domain error naming what tesseract was asked and what went wrong, in one line."""
    detail = " ".join(str(err).split())[:300] or type(err).__name__
    return OcrError(
        None, f"tesseract {what} failed on a {image.width}x{image.height} image: {detail}"
    )


def _run_tesseract(image: Image.Image, languages: str, psm: int, cfg: OcrConfig) -> dict:
    import pytesseract

    config = f"--oem {cfg.oem} --psm {psm} --dpi {cfg.dpi} -c preserve_interword_spaces=0"
    try:
        return pytesseract.image_to_data(
            image,
            lang=languages,
            config=config,
            output_type=pytesseract.Output.DICT,
            timeout=cfg.timeout_s,
        )
    except RuntimeError as err:
        if "timeout" in str(err).lower():
            raise OcrTimeout(
                f"tesseract ({languages}, psm {psm}) did not finish within {cfg.timeout_s:g} s "
                f"on a {image.width}x{image.height} image; raise ocr_timeout_s or lower ocr_dpi"
            ) from err
        raise _tesseract_failure(err, f"({languages}, psm {psm})", image) from err
    except (pytesseract.TesseractError, OSError, ValueError, KeyError) as err:
        # Error exit, crash (negative status), a traineddata that vanished, unreadable output:
        # the page's document is quarantined with this reason; the run goes on.
        raise _tesseract_failure(err, f"({languages}, psm {psm})", image) from err


# --------------------------------------------------------------------------- orientation


def text_axis(gray: np.ndarray) -> str:
    """Return "h" when the ink forms horizontal lines (upright or upside down), "v" when vertical.

    The row profile of horizontal text alternates lines and gaps, so its sum of squares (per
    unit of ink) beats the column profile's; a quarter-turned page is the other way round.
    """
    ink = _ink_mask(gray)
    ys, xs = np.nonzero(ink)
    if ys.size < 50:
        return "h"
    rows = float(np.dot(*(2 * [np.bincount(ys).astype(np.float64)])))
    cols = float(np.dot(*(2 * [np.bincount(xs).astype(np.float64)])))
    return "h" if rows >= cols else "v"


def detect_orientation(gray: np.ndarray, cfg: OcrConfig | None = None) -> tuple[list[int], float]:
    """Candidate clockwise turns (best first) that make the page upright, and OSD's confidence.

    One candidate when tesseract's OSD answer agrees with the text-line axis and is confident;
    otherwise the two turns along that axis, for the caller to read both and keep the more
    confident reading. OSD needs a few dozen characters: on a single line or a sparse page it
    fails or guesses, so it is never trusted alone.
    """
    import pytesseract

    cfg = cfg or OcrConfig()
    axis = text_axis(gray)
    pair = [0, 180] if axis == "h" else [90, 270]
    clean = binarize(gray, "otsu")
    padded = cv2.copyMakeBorder(clean, 50, 50, 50, 50, cv2.BORDER_CONSTANT, value=255)
    try:
        osd = pytesseract.image_to_osd(
            Image.fromarray(padded),
            config="--psm 0 -c min_characters_to_try=5",
            output_type=pytesseract.Output.DICT,
            timeout=min(cfg.timeout_s, 30.0),
        )
        angle, conf = int(osd["rotate"]) % 360, float(osd["orientation_conf"])
    except (pytesseract.TesseractError, RuntimeError, OSError, ValueError, KeyError):
        return pair, 0.0  # too few characters, or no OSD data: decide by reading
    if angle in pair:
        first = [angle, *(a for a in pair if a != angle)]
        return (first[:1] if conf >= cfg.osd_min_conf else first), conf
    return pair, conf


def turn(gray: np.ndarray, clockwise: int) -> np.ndarray:
    """Rotate by a multiple of 90 degrees clockwise (lossless)."""
    k = (clockwise // 90) % 4
    return np.ascontiguousarray(np.rot90(gray, -k)) if k else gray


def _assemble(data: dict) -> tuple[str, float, int]:
    """Text (lines by block/paragraph) and mean confidence of recognised words."""
    lines: dict[tuple[int, int, int], list[str]] = {}
    paragraphs: dict[tuple[int, int], list[tuple[int, int, int]]] = {}
    confs: list[float] = []
    for i, word in enumerate(data["text"]):
        word = (word or "").strip()
        conf = float(data["conf"][i])
        if not word or conf < 0:
            continue
        key = (data["block_num"][i], data["par_num"][i], data["line_num"][i])
        if key not in lines:
            lines[key] = []
            paragraphs.setdefault(key[:2], []).append(key)
        lines[key].append(word)
        confs.append(conf)
    text = "\n\n".join(
        "\n".join(" ".join(lines[key]) for key in keys) for keys in paragraphs.values()
    )
    return text, (float(np.mean(confs)) if confs else 0.0), len(confs)


_LATIN_RE = re.compile(r"[A-Za-z]")
_ARABIC_RE = re.compile("[\u0600-\u06ff\ufb50-\ufdff\ufe70-\ufefc]")
_DATA_KEYS = ("text", "conf", "block_num", "par_num", "line_num", "left", "top", "width", "height")


def _is_latin_word(word: str, conf: float) -> bool:
    """A confidently read Latin word (not a Latin look-alike of Arabic punctuation or dots)."""
    return conf >= 60 and len(_LATIN_RE.findall(word)) >= 2 and not _ARABIC_RE.search(word)


def keep_latin_runs(arabic: dict, mixed: dict) -> dict:
    """The Arabic-only reading with the Latin words of the mixed (eng+ara) reading put back.

    The Arabic models read an English word as Arabic-looking noise. Each run of consecutive,
    confident Latin words in one line of the mixed reading replaces the Arabic-only words whose
    boxes it overlaps, at their place in the line; when the Arabic reading had nothing there the
    run is inserted by position (right to left: the page is Arabic-majority). Returns data in
    ``image_to_data`` form, so ``_assemble`` applies unchanged.
    """
    rows = [
        dict(zip(_DATA_KEYS, vals, strict=True))
        for vals in zip(*(arabic[k] for k in _DATA_KEYS), strict=True)
    ]
    rows = [r for r in rows if str(r["text"] or "").strip() and float(r["conf"]) >= 0]
    runs: list[dict] = []
    last_key = None
    for vals in zip(*(mixed[k] for k in _DATA_KEYS), strict=True):
        w = dict(zip(_DATA_KEYS, vals, strict=True))
        word, conf = str(w["text"] or "").strip(), float(w["conf"])
        key = (w["block_num"], w["par_num"], w["line_num"])
        if not word or conf < 0:
            continue
        if not _is_latin_word(word, conf):
            last_key = None
            continue
        box = (w["left"], w["top"], w["left"] + w["width"], w["top"] + w["height"])
        if runs and last_key == key:
            r = runs[-1]
            r["words"].append(word)
            r["box"] = (min(r["box"][0], box[0]), min(r["box"][1], box[1]),
                        max(r["box"][2], box[2]), max(r["box"][3], box[3]))  # fmt: skip
        else:
            runs.append({"words": [word], "box": box, "conf": conf})
        last_key = key
    for run in runs:
        x0, y0, x1, y1 = run["box"]

        def overlap(r: dict, x0: int = x0, y0: int = y0, x1: int = x1, y1: int = y1) -> float:
            ix = min(x1, r["left"] + r["width"]) - max(x0, r["left"])
            iy = min(y1, r["top"] + r["height"]) - max(y0, r["top"])
            if ix <= 0 or iy <= 0:
                return 0.0
            return ix * iy / max(1, min(r["width"] * r["height"], (x1 - x0) * (y1 - y0)))

        hits = [i for i, r in enumerate(rows) if overlap(r) > 0.3]
        new = {"text": " ".join(run["words"]), "conf": run["conf"], "left": x0, "top": y0,
               "width": x1 - x0, "height": y1 - y0}  # fmt: skip
        if hits:
            anchor = rows[hits[0]]
            new.update({k: anchor[k] for k in ("block_num", "par_num", "line_num")})
            rows = [r for i, r in enumerate(rows) if i not in hits[1:]]
            rows[hits[0]] = new
            continue
        cy = (y0 + y1) / 2
        same_line = [i for i, r in enumerate(rows) if r["top"] <= cy <= r["top"] + r["height"]]
        if same_line:
            anchor = rows[same_line[0]]
            new.update({k: anchor[k] for k in ("block_num", "par_num", "line_num")})
            cx = (x0 + x1) / 2
            at = next(
                (i for i in same_line if rows[i]["left"] + rows[i]["width"] / 2 < cx),
                same_line[-1] + 1,
            )
            rows.insert(at, new)
        else:  # a line of its own, after the lines above it
            new.update({"block_num": 10_000 + len(rows), "par_num": 1, "line_num": 1})
            at = next((i for i, r in enumerate(rows) if r["top"] > y1), len(rows))
            rows.insert(at, new)
    return {k: [r[k] for r in rows] for k in _DATA_KEYS}


def _arabic_only(languages: str) -> str | None:
    langs = _split_languages(languages)
    arabic = [lang for lang in langs if lang in ARABIC_SCRIPT_LANGS]
    if arabic and len(arabic) < len(langs):
        return "+".join(arabic)
    return None


def _read(gray: np.ndarray, languages: str, cfg: OcrConfig) -> tuple[str, float, int, str, int]:
    """One reading of an upright grey page: preprocess, psm, mixed read, Arabic re-read."""
    image = preprocess(Image.fromarray(gray), cfg) if cfg.preprocess else Image.fromarray(gray)
    psm = cfg.psm if cfg.psm is not None else choose_psm(np.asarray(image))
    mixed = _run_tesseract(image, languages, psm, cfg)
    text, conf, words = _assemble(mixed)
    used = languages
    arabic_langs = _arabic_only(languages) if cfg.arabic_retry else None
    if arabic_langs and words and arabic_ratio(text) >= ARABIC_REREAD_RATIO:
        data = _run_tesseract(image, arabic_langs, psm, cfg)
        text, conf, words = _assemble(keep_latin_runs(data, mixed))
        used = arabic_langs
    return text, conf, words, used, psm


def ocr_image(
    img: Image.Image, languages: str | None = None, cfg: OcrConfig | None = None
) -> OcrResult:
    """OCR one image: turn upright, preprocess, choose psm, read, and normalise Arabic.

    With mixed models (eng+ara) tesseract turns Arabic punctuation and digits into Latin look-
    alikes; when the first read is almost all Arabic the page is read again with the Arabic-only
    models and that read is kept. Measured on the 40 Arabic corpus lines: mixed 0.165 micro CER,
    Arabic re-read 0.111, best-of-both oracle 0.110. Picking by tesseract's mean confidence
    did worse (0.132): confidences of the two reads differ by noise, not by accuracy.
    Orientation is the exception: an upside-down reading has near-zero confidence, so when OSD
    is unsure the two readings along the text axis are compared by confidence.
    """
    cfg = cfg or OcrConfig()
    languages = languages or cfg.languages
    check_tesseract(languages)
    start = time.perf_counter()
    gray = to_gray(img)
    candidates: list[int] = [0]
    if cfg.orientation == "osd":
        candidates, _ = detect_orientation(gray, cfg)
    elif cfg.orientation != "none":
        raise ValueError(f"orientation must be osd or none, got {cfg.orientation!r}")
    best: tuple[str, float, int, str, int] | None = None
    rotation = 0
    for angle in candidates:
        reading = _read(turn(gray, angle), languages, cfg)
        if best is None or reading[1] > best[1]:
            best, rotation = reading, angle
    assert best is not None
    text, conf, words, used, psm = best
    warnings: list[str] = []
    if rotation:
        warnings.append(f"page turned {rotation} degrees clockwise before OCR")
    if not text.strip():
        warnings.append("no text recognised")
    text = normalize_arabic(text, cfg.arabic)
    return OcrResult(
        text=text,
        confidence=round(conf, 2),
        language_hint=detect_language(text),
        languages=used,
        psm=psm,
        word_count=words,
        rotation=rotation,
        seconds=round(time.perf_counter() - start, 3),
        warnings=warnings,
    )


def _worker_init() -> None:
    # One tesseract per process: OpenMP threads inside each would oversubscribe the cores.
    os.environ["OMP_THREAD_LIMIT"] = "1"


def can_start_workers() -> bool:
    """False inside a daemonic process (a Dask worker, a multiprocessing.Pool worker), which
    may not start children: page fan-out then stays in this process instead of failing."""
    return not multiprocessing.current_process().daemon


def ocr_process_pool(workers: int) -> ProcessPoolExecutor:
    """The one way OCR fans out: ``workers`` spawned processes, one tesseract thread each.

    Spawn (not fork) is safe inside threaded hosts such as Dagster; the thread limit keeps
    ``workers`` tesseracts from oversubscribing the cores.
    """
    ctx = multiprocessing.get_context("spawn")
    return ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_init)


def _ocr_one(args: tuple[Image.Image | str | Path, str | None, OcrConfig]) -> OcrResult:
    img, languages, cfg = args
    if isinstance(img, (str, Path)):
        with Image.open(img) as opened:
            opened.load()
            return ocr_image(opened, languages, cfg)
    return ocr_image(img, languages, cfg)


def ocr_pages(
    images: Sequence[Image.Image | str | Path],
    languages: str | None = None,
    cfg: OcrConfig | None = None,
    workers: int = 1,
) -> list[OcrResult]:
    """OCR many pages (images or image paths), in page order, over ``workers`` processes.

    Processes rather than threads: preprocessing is CPU-bound Python/NumPy and each page's
    tesseract run is independent. ``spawn`` keeps the pool safe inside a threaded host (Dagster).
    """
    cfg = cfg or OcrConfig()
    check_tesseract(languages or cfg.languages)
    jobs = [(img, languages, cfg) for img in images]
    workers = max(1, min(workers, len(jobs))) if can_start_workers() else 1
    if workers == 1:
        return [_ocr_one(job) for job in jobs]
    with ocr_process_pool(workers) as pool:
        return list(pool.map(_ocr_one, jobs))


# --------------------------------------------------------------------------- CER


def normalize_for_cer(text: str, arabic: ArabicConfig | None = None) -> str:
    """The pipeline's normalisation plus whitespace collapsing: layout is not a character error."""
    return collapse_whitespace(normalize_arabic(text, arabic))


def cer_counts(
    hypothesis: str, reference: str, arabic: ArabicConfig | None = None
) -> tuple[int, int]:
    """(Levenshtein edits, reference length) after normalisation: summable for micro CER."""
    from rapidfuzz.distance import Levenshtein

    hyp = normalize_for_cer(hypothesis, arabic)
    ref = normalize_for_cer(reference, arabic)
    return Levenshtein.distance(hyp, ref), len(ref)


def cer(hypothesis: str, reference: str, arabic: ArabicConfig | None = None) -> float:
    """Character error rate = edits / reference characters (can exceed 1 for garbage output)."""
    edits, length = cer_counts(hypothesis, reference, arabic)
    if length == 0:
        return 0.0 if edits == 0 else 1.0
    return edits / length


def ocr_cer_dir(
    path: str | Path,
    languages: str = "ara",
    cfg: OcrConfig | None = None,
    workers: int = 2,
    limit: int | None = None,
) -> dict[str, Any]:
    """OCR every ``X.png`` that has an ``X.gt.txt`` and report per-file and aggregate CER.

    ``micro_cer`` (total edits / total reference chars) is the headline: the mean of per-file
    CERs over-weights short lines. Ground truth goes through the same normalisation as the OCR.
    """
    cfg = cfg or OcrConfig()
    directory = Path(path)
    pairs = [
        (png, png.with_name(png.name[: -len(".png")] + ".gt.txt"))
        for png in sorted(directory.glob("*.png"))
    ]
    pairs = [(png, gt) for png, gt in pairs if gt.is_file()]
    if limit is not None:
        pairs = pairs[:limit]
    report: dict[str, Any] = {
        "directory": str(directory),
        "languages": languages,
        "pages": len(pairs),
        "files": [],
    }
    if not pairs:
        return report
    start = time.perf_counter()
    results = ocr_pages([png for png, _ in pairs], languages, cfg, workers=workers)
    elapsed = time.perf_counter() - start
    total_edits = total_chars = 0
    rows = []
    for (png, gt), res in zip(pairs, results, strict=True):
        edits, chars = cer_counts(res.text, gt.read_text(encoding="utf-8"), cfg.arabic)
        total_edits += edits
        total_chars += chars
        rows.append(
            {
                "file": png.name,
                "cer": round(edits / chars, 4) if chars else float(edits > 0),
                "edits": edits,
                "ref_chars": chars,
                "confidence": res.confidence,
                "psm": res.psm,
                "seconds": res.seconds,
            }
        )
    report.update(
        files=rows,
        micro_cer=round(total_edits / total_chars, 4) if total_chars else 0.0,
        mean_cer=round(float(np.mean([r["cer"] for r in rows])), 4),
        median_cer=round(float(np.median([r["cer"] for r in rows])), 4),
        edits=total_edits,
        ref_chars=total_chars,
        seconds=round(elapsed, 2),
        pages_per_s=round(len(rows) / elapsed, 3) if elapsed > 0 else None,
        workers=workers,
        config={k: v for k, v in cfg.to_dict().items() if k not in ("arabic", "languages")},
    )
    return report


def split_lines(paths: Sequence[Path], seed: int = 13) -> tuple[list[Path], list[Path]]:
    """A fixed half/half split of ground-truth files: (selection, held-out), each sorted.

    Files are ranked by a hash of ``seed`` and their *name* (not their folder, not their
    position in the list), so the split is the same wherever the corpus is mounted and in
    whatever order the files are listed, and a line added later moves at most one other line.
    Settings are chosen on the first half only and reported on the second.
    """
    names = [Path(p).name for p in paths]
    if len(set(names)) != len(names):
        raise ValueError("split_lines needs distinct file names")
    ranked = sorted(
        paths, key=lambda p: hashlib.sha256(f"{seed}:{Path(p).name}".encode()).hexdigest()
    )
    half = len(ranked) // 2
    return sorted(ranked[:half]), sorted(ranked[half:])


Scorer = Callable[[Sequence[Path], dict[str, Any]], float]


def _key(settings: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted(settings.items(), key=lambda kv: kv[0]))


def select_settings(
    selection: Sequence[Path],
    scorer: Scorer,
    dimensions: Sequence[tuple[str, Sequence[Any]]],
    start: dict[str, Any],
    rounds: int = 2,
    min_gain: float = 0.001,
) -> tuple[dict[str, Any], float]:
    """Coordinate descent over ``dimensions`` scored on ``selection`` only: (settings, CER).

    Each round tries every value of every setting with the others fixed and keeps a change only
    when it lowers the score by more than ``min_gain``, so ties keep the earlier, simpler value
    and noise of one line does not pick a setting. ``scorer(paths, settings)`` returns the CER of
    the OcrConfig overrides ``settings`` on ``paths``; it is never shown any other paths.
    """
    cache: dict[tuple[tuple[str, Any], ...], float] = {}
    paths = list(selection)

    def score(settings: dict[str, Any]) -> float:
        key = _key(settings)
        if key not in cache:
            cache[key] = scorer(paths, dict(settings))
        return cache[key]

    best = dict(start)
    best_cer = score(best)
    for _ in range(rounds):
        improved = False
        for name, values in dimensions:
            for value in values:
                trial = {**best, name: value}
                cer = score(trial)
                if cer < best_cer - min_gain:
                    best, best_cer, improved = trial, cer, True
        if not improved:
            break
    return best, best_cer


def select_and_evaluate(
    paths: Sequence[Path],
    scorer: Scorer,
    dimensions: Sequence[tuple[str, Sequence[Any]]],
    start: dict[str, Any],
    baselines: dict[str, dict[str, Any]],
    rounds: int = 2,
    seed: int = 13,
    limit: int | None = None,
) -> dict[str, Any]:
    """Choose settings on one half of ``paths`` and report every candidate on the other half.

    The held-out half reaches ``scorer`` only after the choice is made, and only with the chosen
    settings and the fixed ``baselines`` (e.g. plain tesseract, shipped defaults): the reported
    held-out CER is what print the choice never saw gets. ``limit`` caps each half (quick runs).
    """
    selection, held_out = split_lines(paths, seed=seed)
    if limit is not None:
        selection, held_out = selection[:limit], held_out[:limit]
    if not selection or not held_out:
        raise ValueError(f"need at least 2 ground-truth lines to split, got {len(paths)}")
    chosen, chosen_cer = select_settings(selection, scorer, dimensions, start, rounds=rounds)
    candidates = {**baselines, "chosen settings": chosen}
    return {
        "chosen": chosen,
        "n_selection": len(selection),
        "n_held_out": len(held_out),
        "held_out_paths": held_out,
        "selection_cer": {
            name: chosen_cer if name == "chosen settings" else scorer(selection, dict(cfg))
            for name, cfg in candidates.items()
        },
        "held_out_cer": {name: scorer(held_out, dict(cfg)) for name, cfg in candidates.items()},
    }


def with_overrides(cfg: OcrConfig | None = None, **changes: Any) -> OcrConfig:
    """Copy of ``cfg`` with some fields changed (used by the ablation benchmark)."""
    return replace(cfg or OcrConfig(), **changes)
