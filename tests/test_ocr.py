"""OCR stage: preprocessing maths, tesseract wrapper errors, and CER on real Arabic print."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from llmops import ocr
from llmops.ocr import (
    OcrConfig,
    OcrTimeout,
    OcrUnavailable,
    binarize,
    cer,
    check_tesseract,
    choose_psm,
    estimate_skew,
    ocr_cer_dir,
    ocr_image,
    ocr_pages,
    preprocess,
    to_gray,
)

FONTS = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSerif.ttf",
    "/usr/share/fonts/truetype/noto/NotoSerif-Regular.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
]
LINES = [
    "Quarterly water usage fell by nine percent.",
    "The board approved 47 new meters in March.",
    "Appeals must be filed within thirty days.",
]


def _font(size: int) -> ImageFont.ImageFont:
    for path in FONTS:
        if Path(path).is_file():
            return ImageFont.truetype(path, size)
    return ImageFont.load_default(size=size)


def _page(lines: list[str] = LINES, size: int = 28) -> Image.Image:
    font = _font(size)
    img = Image.new("L", (1000, 80 + 55 * len(lines)), 255)
    draw = ImageDraw.Draw(img)
    for i, line in enumerate(lines):
        draw.text((40, 40 + 55 * i), line, fill=0, font=font)
    return img


@pytest.fixture(scope="module")
def tesseract() -> str:
    try:
        return check_tesseract("eng+ara")
    except OcrUnavailable as err:
        pytest.skip(str(err))


# --------------------------------------------------------------------------- preprocessing


@pytest.mark.parametrize("angle", [-6.0, -2.5, 1.5, 4.0])
def test_deskew_recovers_known_rotation(angle: float) -> None:
    rotated = _page().rotate(angle, resample=Image.BICUBIC, expand=True, fillcolor=255)
    assert estimate_skew(to_gray(rotated)) == pytest.approx(angle, abs=1.0)


def test_preprocess_straightens_the_page() -> None:
    rotated = _page().rotate(5, resample=Image.BICUBIC, expand=True, fillcolor=255)
    cleaned = preprocess(rotated, OcrConfig(min_line_px=0))
    assert abs(estimate_skew(np.asarray(cleaned))) < 1.0


def test_binarisation_yields_two_values() -> None:
    rng = np.random.default_rng(1)
    gray = np.asarray(_page(), dtype=np.float64)
    gray = gray * 0.6 + 60 + rng.normal(0, 12, gray.shape)  # grey paper, grain
    gray = np.clip(gray, 0, 255).astype(np.uint8)
    for method in ("otsu", "adaptive"):
        out = binarize(gray, method)
        assert set(np.unique(out)) == {0, 255}
        assert (out == 0).mean() < 0.2  # dark text on white paper, not inverted
    out = np.asarray(preprocess(Image.fromarray(gray)))
    assert set(np.unique(out)) <= {0, 255}


def test_to_gray_handles_alpha_and_16_bit() -> None:
    rgba = Image.new("RGBA", (20, 20), (0, 0, 0, 0))  # fully transparent -> white paper
    assert to_gray(rgba).min() == 255
    deep = Image.fromarray(np.array([[0, 1000], [2000, 4000]], dtype=np.uint16))
    assert to_gray(deep).tolist() == [[0, 63], [127, 255]]


def test_psm_choice_line_vs_page() -> None:
    assert choose_psm(to_gray(_page(LINES[:1]).crop((0, 20, 1000, 95)))) == 13
    assert choose_psm(to_gray(_page())) == 3


def test_config_from_dict() -> None:
    cfg = OcrConfig.from_dict({"psm": 6, "arabic": {"remove_diacritics": True}, "extra": 1})
    assert cfg.psm == 6 and cfg.arabic.remove_diacritics
    assert OcrConfig.from_dict(cfg.to_dict()) == cfg


# --------------------------------------------------------------------------- CER


def test_cer_uses_pipeline_normalisation() -> None:
    assert cer("hello  world\n", "hello world") == 0.0
    assert cer("hallo world", "hello world") == pytest.approx(1 / 11)
    assert cer("ﺳﻼﻡ", "سلام") == 0.0  # presentation forms are not errors
    assert cer("سـلام", "سلام") == 0.0  # neither is tatweel
    assert cer("", "") == 0.0
    assert cer("x", "") == 1.0
    assert cer("", "abcd") == 1.0


# --------------------------------------------------------------------------- tesseract


def test_check_tesseract_missing_language(tesseract: str) -> None:
    assert tesseract[0].isdigit()
    with pytest.raises(OcrUnavailable) as info:
        check_tesseract("eng+xyz")
    message = str(info.value)
    assert "xyz" in message
    assert "apt-get install tesseract-ocr tesseract-ocr-xyz" in message


def test_check_tesseract_missing_binary(monkeypatch: pytest.MonkeyPatch) -> None:
    import pytesseract

    monkeypatch.setattr(pytesseract.pytesseract, "tesseract_cmd", "/nonexistent/tesseract")
    check_tesseract.cache_clear()
    try:
        with pytest.raises(OcrUnavailable, match="apt-get install tesseract-ocr tesseract-ocr-ara"):
            check_tesseract("eng+ara")
    finally:
        check_tesseract.cache_clear()


def test_ocr_reads_synthetic_english(tesseract: str) -> None:
    img = _page().rotate(3, resample=Image.BICUBIC, expand=True, fillcolor=255)
    result = ocr_image(img, "eng")
    assert cer(result.text, "\n".join(LINES)) < 0.05
    assert result.confidence > 70
    assert result.language_hint == "en"
    assert result.psm == 3


def test_timeout_becomes_ocr_timeout(tesseract: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import pytesseract

    calls: list[float] = []

    def slow(*args, timeout: float = 0, **kwargs):
        calls.append(timeout)
        raise RuntimeError("Tesseract process timeout")  # what pytesseract raises

    monkeypatch.setattr(pytesseract, "image_to_data", slow)
    with pytest.raises(OcrTimeout, match="did not finish within 7 s"):
        ocr_image(_page(), "eng", OcrConfig(timeout_s=7))
    assert calls == [7]


def test_real_timeout_kills_tesseract(tesseract: str) -> None:
    big = _page(LINES * 12, size=40).resize((4000, 6000))
    with pytest.raises(OcrTimeout):
        ocr_image(big, "eng+ara", OcrConfig(timeout_s=0.05, preprocess=False))


def test_other_tesseract_errors_are_not_timeouts(monkeypatch: pytest.MonkeyPatch) -> None:
    import pytesseract

    def broken(*args, **kwargs):
        raise RuntimeError("something else")

    monkeypatch.setattr(pytesseract, "image_to_data", broken)
    with pytest.raises(ocr.OcrError, match="something else") as err:
        ocr._run_tesseract(_page(), "eng", 3, OcrConfig())
    assert err.value.code == "ocr_failed"


# --------------------------------------------------------------------------- real Arabic print


@pytest.mark.slow
def test_arabic_lines_cer(corpus_dir: Path, tesseract: str) -> None:
    report = ocr_cer_dir(corpus_dir / "arabic-ocr-lines", languages="ara", workers=2)
    assert report["pages"] == 40 and len(report["files"]) == 40
    assert all(row["psm"] == 13 for row in report["files"])  # every crop is seen as one line
    # Measured with the default OcrConfig on tesseract 5.3.0 + Debian's ara model: micro CER
    # 0.1109 (bench/bench_ocr.py). Most residual errors are « / ( and ، / . confusions. The bar
    # leaves ~2 points of slack for other tesseract/model builds while still failing if a
    # preprocessing or psm change costs accuracy (psm 7: 0.146, psm 6: 0.307, eng+ara without
    # the Arabic re-read: 0.164).
    assert report["micro_cer"] < 0.13, report["micro_cer"]
    assert report["pages_per_s"] > 0
    assert 0 <= report["mean_cer"] <= 1


@pytest.mark.slow
def test_mixed_models_reread_arabic(corpus_dir: Path, tesseract: str) -> None:
    images = sorted((corpus_dir / "arabic-ocr-lines").glob("*.png"))[:6]
    results = ocr_pages(images, "eng+ara", OcrConfig(), workers=2)
    assert [r.languages for r in results] == ["ara"] * 6
    assert all(r.language_hint == "ar" for r in results)
    truths = [p.with_name(p.stem + ".gt.txt").read_text(encoding="utf-8") for p in images]
    edits = sum(cer(r.text, t) * len(t) for r, t in zip(results, truths, strict=True))
    assert edits / sum(len(t) for t in truths) < 0.2
