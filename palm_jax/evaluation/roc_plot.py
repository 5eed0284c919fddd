"""ROC curves as a PNG drawn with PIL (no plotting library): one panel per score.

Each panel has axes from 0 to 1 with ticks every 0.2, the chance diagonal (dashed), one
coloured curve per OOD set and a legend line `"<set>  AUROC 0.873"` per curve. The x axis
is the false-positive rate (OOD images taken as in-distribution), the y axis the
true-positive rate (in-distribution images kept).
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from palm_jax.runtime.images import save_png

COLOURS = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
           (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207))
_PANEL, _MARGIN_L, _MARGIN_B, _MARGIN_T, _MARGIN_R = 420, 56, 46, 40, 16


def _font(size: int):
  from PIL import ImageFont  # pylint: disable=g-import-not-at-top
  try:
    return ImageFont.load_default(size=size)
  except TypeError:  # Pillow < 10.1 has one fixed-size bitmap font.
    return ImageFont.load_default()


def _thin(fpr: np.ndarray, tpr: np.ndarray, max_points: int = 2000):
  """Keeps at most `max_points` points (always the ends) so huge sets draw quickly."""
  if fpr.shape[0] <= max_points:
    return fpr, tpr
  idx = np.unique(np.linspace(0, fpr.shape[0] - 1, max_points).round().astype(int))
  return fpr[idx], tpr[idx]


def _panel(draw, x0: int, title: str, curves: Sequence[tuple[str, np.ndarray, np.ndarray,
                                                                 float]]) -> None:
  """Draws one panel whose plot area starts at x0 + margin; curves: (name, fpr, tpr, auroc)."""
  font, small = _font(14), _font(11)
  left, top = x0 + _MARGIN_L, _MARGIN_T
  side = _PANEL - _MARGIN_L - _MARGIN_R
  bottom = top + side
  to_xy = lambda f, t: (left + f * side, bottom - t * side)  # noqa: E731
  draw.rectangle([left, top, left + side, bottom], outline=(0, 0, 0), width=1)
  for i in range(6):
    v = i / 5
    x, y = to_xy(v, v)
    draw.line([x, bottom, x, bottom + 4], fill=(0, 0, 0))
    draw.line([left - 4, y, left, y], fill=(0, 0, 0))
    draw.line([x, top, x, bottom], fill=(235, 235, 235))
    draw.line([left, y, left + side, y], fill=(235, 235, 235))
    draw.text((x - 8, bottom + 6), f"{v:.1f}", fill=(0, 0, 0), font=small)
    draw.text((left - 28, y - 6), f"{v:.1f}", fill=(0, 0, 0), font=small)
  for i in range(0, 40, 2):  # Dashed chance diagonal.
    draw.line([to_xy(i / 40, i / 40), to_xy((i + 1) / 40, (i + 1) / 40)],
              fill=(150, 150, 150), width=1)
  draw.rectangle([left, top, left + side, bottom], outline=(0, 0, 0), width=1)
  for k, (_, fpr, tpr, _) in enumerate(curves):
    fpr, tpr = _thin(np.asarray(fpr, np.float64), np.asarray(tpr, np.float64))
    draw.line([to_xy(f, t) for f, t in zip(fpr, tpr)], fill=COLOURS[k % len(COLOURS)],
              width=2, joint="curve")
  draw.text((left + (side - draw.textlength(title, font=font)) / 2, 8), title,
            fill=(0, 0, 0), font=font)
  draw.text((left + side // 2 - 70, bottom + 24), "false-positive rate (OOD)",
            fill=(0, 0, 0), font=small)
  draw.text((x0 + 4, top - 14), "TPR (in-dist.)", fill=(0, 0, 0), font=small)
  labels = [f"{name[:28]}  AUROC {auc:.3f}" for name, _, _, auc in curves]
  width = max([draw.textlength(t, font=small) for t in labels] + [0])
  for k, text in enumerate(labels):  # Legend, bottom right inside the axes.
    y = bottom - 16 * (len(curves) - k) - 4
    x = left + side - width - 8
    draw.line([x - 26, y + 7, x - 6, y + 7], fill=COLOURS[k % len(COLOURS)], width=3)
    draw.text((x, y), text, fill=(0, 0, 0), font=small)


def draw_roc_panels(panels: Mapping[str, Mapping[str, Mapping]]) -> np.ndarray:
  """`{score: {set: {"fpr", "tpr", "auroc"}}}` → uint8 `[H, W, 3]` image, one panel a score."""
  from PIL import Image, ImageDraw  # pylint: disable=g-import-not-at-top
  names = list(panels)
  height = _PANEL - _MARGIN_R + _MARGIN_T - _MARGIN_L + _MARGIN_B
  img = Image.new("RGB", (_PANEL * max(len(names), 1), height), (255, 255, 255))
  draw = ImageDraw.Draw(img)
  for p, score in enumerate(names):
    curves = [(s, v["fpr"], v["tpr"], float(v["auroc"])) for s, v in panels[score].items()]
    _panel(draw, p * _PANEL, f"ROC, score = {score}", curves)
  return np.asarray(img)


def save_roc_png(path: str, panels: Mapping[str, Mapping[str, Mapping]]) -> str:
  """Draws `draw_roc_panels(panels)` and writes it to `path` (PNG)."""
  return save_png(path, draw_roc_panels(panels))
