"""The pictures a person is handed: the one drawing helper (tags inside the image, readable text, lines that
grow with the picture), batch mosaics drawn through it, and results.png's fixed panels."""

from __future__ import annotations

import csv

import cv2
import numpy as np
import pytest
import torch

from yolo.utils.draw import (
    PALETTE,
    class_color,
    draw_boxes,
    draw_detections,
    line_width,
    text_color,
)
from yolo.utils.plots import plot_results, results_figure, save_batch_image

GREY = (128, 128, 128)
WHITE, BLACK = (255, 255, 255), (0, 0, 0)


def text_pixels(img, fg, tag) -> np.ndarray:
    """``[H, W]`` bool: pixels nearer the text colour ``fg`` than the tag colour (anti-aliased strokes included)."""
    px = img.astype(float)
    return np.abs(px - fg).sum(-1) < np.abs(px - tag).sum(-1)


def wcag_contrast(a, b) -> float:
    """Contrast ratio of two sRGB colours (BGR 0..255), as WCAG 2.1 defines it (www.w3.org/TR/WCAG21)."""
    def lum(bgr):
        lin = [(c / 255 / 12.92) if c / 255 <= 0.04045 else ((c / 255 + 0.055) / 1.055) ** 2.4 for c in bgr[::-1]]
        return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]

    hi, lo = sorted((lum(a), lum(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def test_text_contrast_rule():
    grid = [(b, g, r) for b in (0, 90, 180, 255) for g in (0, 90, 180, 255) for r in (0, 90, 180, 255)]
    for bg in PALETTE + grid:
        fg = text_color(bg)
        other = BLACK if fg == WHITE else WHITE
        assert wcag_contrast(fg, bg) >= max(wcag_contrast(other, bg), 4.5), bg  # WCAG AA for normal text
    assert text_color((0, 255, 255)) == BLACK and text_color((130, 0, 0)) == WHITE  # yellow, navy
    light, dark = 12, 8  # PALETTE[12] (49, 210, 207) is light, PALETTE[8] (133, 0, 82) dark
    for cls, fg, absent in ((light, BLACK, WHITE), (dark, WHITE, BLACK)):
        out = draw_detections(np.full((120, 200, 3), GREY, np.uint8), [[50, 60, 150, 110, 0.9, cls]], ["person"])
        tag = class_color(cls)
        assert text_pixels(out, fg, tag).sum() > 20 and not text_pixels(out, absent, tag)[:60].any()


def _white_text_pixels(box, shape=(300, 400), name="person"):
    img = np.full((*shape, 3), GREY, np.uint8)
    out = draw_detections(img, [[*box, 0.93, 8]], [name])
    return int(text_pixels(out, WHITE, class_color(8)).sum())  # dark tag: white text


def test_labels_stay_inside_the_image():
    """A tag at the border is drawn in full: as many text pixels as the same tag in the middle of the image."""
    full = _white_text_pixels((150, 100, 220, 160))
    assert full > 50
    for box in ((360, 100, 400, 150),  # at the right border: the tag would run off the right edge
                (100, 0, 160, 50),  # at the top: no room above
                (370, 0, 400, 40),  # top-right corner
                (380, 280, 400, 300),  # bottom-right corner
                (-10, -10, 410, 310)):  # larger than the image
        assert _white_text_pixels(box) == full, box
    narrow = _white_text_pixels((2, 10, 30, 40), shape=(60, 40), name="a-rather-long-class-name")
    assert narrow > 10  # shrunk to the image width, still drawn


def _edge_thickness(size: int) -> int:
    img = np.zeros((size, size, 3), np.uint8)
    out = draw_boxes(img, [[size * 0.25, size * 0.25, size * 0.75, size * 0.75]], [0], labels=False)
    return int((out[size // 2] == class_color(0)).all(-1).sum() // 2)  # a row through both vertical edges


def test_line_width_grows_with_the_image():
    t = [_edge_thickness(s) for s in (256, 640, 1024, 2048)]
    assert t[0] >= 1 and t[0] < t[1] < t[2] < t[3], t
    assert line_width((1080, 1920)) > line_width((480, 640)) > line_width((128, 128)) >= 1


def test_batch_mosaic_draws_through_the_helper(tmp_path):
    images = torch.full((16, 3, 256, 256), 128, dtype=torch.uint8)
    targets = torch.tensor([[0, 8, 0.5, 0.5, 0.5, 0.5], [2, 8, 0.95, 0.5, 0.1, 0.2]])  # tile 2: at its right edge
    save_batch_image(images, targets, tmp_path / "b.png", ["person"] * 9)
    canvas = cv2.imread(str(tmp_path / "b.png"))
    gap = (canvas.shape[1] - 4 * 256) // 3
    assert canvas.shape[:2] == (4 * 256 + 3 * gap,) * 2 and (canvas[:, 256:256 + gap] == WHITE).all()  # separators
    tile = [canvas[:256, k * (256 + gap):k * (256 + gap) + 256] for k in range(4)]  # the first row of tiles
    assert (tile[0][128] == class_color(8)).all(-1).sum() // 2 == 2 > line_width((256, 256))  # for 1024 px, not 256
    white = lambda img: int(text_pixels(img, WHITE, class_color(8)).sum())  # the tags' text
    assert white(tile[0]) > 50
    assert (tile[3] == GREY).all()  # no box: the tag of tile 2's border box did not spill into it
    assert white(tile[2]) == white(tile[0])  # its tag is whole inside its own tile
    preds = torch.tensor([[0, 8, 0.5, 0.5, 0.5, 0.5, 0.87]])  # [M, 7]: a score last
    save_batch_image(images, preds, tmp_path / "p.png", ["person"] * 9)
    assert white(cv2.imread(str(tmp_path / "p.png"))[:256, :256]) > white(tile[0])  # "person 0.87" > "person"


def test_boxes_that_overflowed_are_drawn_clipped_or_skipped(tmp_path):
    """An untrained model's exp(tw) overflows: a box with infinite sides is the image's border, one with a NaN
    corner is left out (the validation picture of a short run crashed on int(nan), losing the epoch)."""
    img = np.full((64, 80, 3), 128, np.uint8)
    inf, nan = float("inf"), float("nan")
    out = draw_boxes(img, np.array([[-inf, 10, inf, 30], [nan, 5, 20, 20]]), np.array([0, 1]), labels=False, lw=1)
    c0, c1 = class_color(0), class_color(1)
    assert (out[10, :] == c0).all() and (out[30, :] == c0).all()  # edges across the whole width
    assert not (out == c1).all(-1).any()  # the NaN box: not drawn
    preds = torch.tensor([[0, 1, 0.5, 0.5, inf, 0.2, 0.9], [0, 2, nan, 0.5, 0.1, 0.1, 0.8]])  # [M, 7]
    save_batch_image(torch.full((1, 3, 64, 64), 128, dtype=torch.uint8), preds, tmp_path / "p.jpg", ["a", "b", "c"])
    assert cv2.imread(str(tmp_path / "p.jpg")).shape == (64, 64, 3)


COLUMNS = ["epoch", "train/box", "train/obj", "train/cls", "train/loss", "map50", "map", "precision", "recall",
           "f1", "conf_best", "fitness", "images", "lr", "time", "time/data", "time/forward", "time/backward",
           "time/optim"]
EXPECTED = ["box loss", "objectness loss", "class loss", "total loss", "learning rate",
            "precision", "recall", "mAP@0.5", "mAP@0.5:0.95", "fitness (best.pt)"]


def _write_csv(path, columns, n=4):
    rng = np.random.default_rng(0)
    rows = [{c: (e if c == "epoch" else float(rng.random())) for c in columns} for e in range(n)]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns)
        w.writeheader()
        w.writerows(rows)
    return rows


def test_results_png_draws_the_expected_panels(tmp_path):
    plt = pytest.importorskip("matplotlib.pyplot")
    rows = _write_csv(tmp_path / "results.csv", COLUMNS + ["val/box"])
    with open(tmp_path / "results.csv", newline="") as f:
        fig = results_figure(list(csv.DictReader(f)), plt)
    drawn = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in drawn] == EXPECTED  # not images, f1, conf_best or the timings
    column = dict(zip(EXPECTED, ["train/box", "train/obj", "train/cls", "train/loss", "lr", "precision", "recall",
                                 "map50", "map", "fitness"]))
    for ax in drawn:
        lines = ax.get_lines()
        np.testing.assert_allclose(lines[0].get_ydata(), [r[column[ax.get_title()]] for r in rows], rtol=1e-6)
        np.testing.assert_array_equal(lines[0].get_xdata(), [1, 2, 3, 4])  # epochs counted from 1
    star = drawn[-1].get_lines()[1]  # the epoch best.pt comes from
    assert list(star.get_xdata()) == [1 + int(np.argmax([r["fitness"] for r in rows]))]
    box = drawn[0].get_lines()
    assert len(box) == 2 and np.allclose(box[1].get_ydata(), [r["val/box"] for r in rows])  # val in the same panel
    plt.close(fig)
    assert plot_results(tmp_path / "results.csv") == tmp_path / "results.png"
    assert (tmp_path / "results.png").stat().st_size > 10000 and (tmp_path / "results_time.png").is_file()


def test_results_png_keeps_its_layout_without_validation(tmp_path):
    plt = pytest.importorskip("matplotlib.pyplot")
    _write_csv(tmp_path / "results.csv", ["epoch", "train/mse", "fitness", "lr"])
    with open(tmp_path / "results.csv", newline="") as f:
        fig = results_figure(list(csv.DictReader(f)), plt)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["mse loss", "", "", "", "learning rate"] + EXPECTED[5:]
    assert [len(ax.get_lines()) for ax in fig.axes] == [1, 0, 0, 0, 1, 0, 0, 0, 0, 2]
    plt.close(fig)
