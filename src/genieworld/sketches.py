"""Prompts drawn for a model: platform-scene sketches and photo-like pictures, generated with Pillow.

Genie's paper plays worlds from pictures that no game ever showed: children's sketches and
photographs of platform scenes. This module draws such prompts deterministically (no randomness
outside fixed seeds, no files read), so a model's gallery can offer them and benches can measure
what the buttons do from them:

* 6 *sketches* (``sketch-00`` .. ``sketch-05``): strokes on paper -- pencil, ink, marker and crayon --
  with a ground line, ledges or platforms, a stick figure or a blob standing near the centre of the
  frame (where CoinRun's camera keeps the agent), and now and then a coin, a crate or a pit;
* 2 *photo-like* pictures (``snapshot-00``, ``snapshot-01``): a sky gradient, hazy distant hills,
  textured ground, a rock ledge and a shaded figure, painted with value noise.

Each is drawn at 4x the model's frame size, shrunk with Pillow's area filter (``BOX``, the
project's resize policy, :func:`genieworld.data.video.prepare_frame`) so strokes stay clean, and
reduced to 64 colours so that the 8 files weigh about 11 KB.
:func:`drawn_prompts` returns them as arrays; :func:`write_drawn_prompts` adds them to a model's
prompt gallery (:mod:`genieworld.prompts`)::

    MODEL/prompts/sketch-00.png ... sketch-05.png, snapshot-00.png, snapshot-01.png
    MODEL/prompts/index.json   + {"file": "sketch-00.png", "label": "sketch: ...", "kind": "sketch"}, ...

The photo-like files are called ``snapshot-*`` rather than ``photo-*`` so that they sort after
``prompt-*``: ``genie play`` opens on the first file of the folder in name order, and that stays a
real frame. Writing keeps every entry already in ``index.json`` and writes only these 8 files; a
same-named file that holds another picture is never overwritten. ``python -m genieworld.sketches
MODEL`` does the same from the command line.
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageChops, ImageDraw

__all__ = ["SUPERSAMPLE", "DRAWINGS", "Drawing", "drawn_prompts", "model_image_size", "write_drawn_prompts"]

SUPERSAMPLE = 4  # drawn at 4x the frame size, then shrunk with an area filter
KINDS = ("sketch", "photo")
#: colours each kind keeps (median cut, no dithering): the files stay a few KB as palette PNGs
COLOURS = {"sketch": 64, "photo": 64}


@dataclass(frozen=True)
class Drawing:
    """One drawn prompt: its file stem, gallery label, kind (``sketch`` or ``photo``) and painter."""

    name: str
    label: str
    kind: str
    paint: Callable[[int, np.random.Generator], Image.Image]  # (render px, rng) -> RGB image of that size


# ----------------------------------------------------------------------------------------------------
# strokes (coordinates are fractions of the frame: x right, y down, (0, 0) the top-left corner)


def _wobble(points_n2, rng: np.random.Generator, amp: float, step: float = 0.02) -> np.ndarray:
    """A hand's version of a polyline: each segment cut into ~``step`` pieces, every point nudged by
    smoothed Gaussian noise of ``amp`` (fractions of the frame). Returns (M, 2) points."""
    pts = np.asarray(points_n2, dtype=np.float64)
    out = [pts[:1]]
    for a, b in zip(pts[:-1], pts[1:]):
        n = max(1, int(math.ceil(float(np.linalg.norm(b - a)) / step)))
        t = np.arange(1, n + 1, dtype=np.float64)[:, None] / n
        out.append(a + (b - a) * t)
    line = np.concatenate(out)
    noise = rng.normal(0.0, amp, line.shape)
    if len(line) >= 3:
        kernel = np.array([0.25, 0.5, 0.25])
        noise = np.stack([np.convolve(np.pad(noise[:, k], 1, mode="edge"), kernel, "valid") for k in range(2)], 1)
    return line + noise


def _px(points_n2, px: int) -> list[tuple[float, float]]:
    return [(float(x) * px, float(y) * px) for x, y in points_n2]


def _stroke(draw: ImageDraw.ImageDraw, points, px: int, rng: np.random.Generator, colour, width: float,
            amp: float = 0.004, passes: int = 1) -> None:
    """Draw a wobbly polyline ``passes`` times (a crayon goes over its line again, a little off)."""
    w = max(1, round(width * px))
    for k in range(passes):
        line = _wobble(points, rng, amp * (1 + 0.6 * k))
        c = tuple(int(np.clip(v + rng.integers(-18, 19) * (k > 0), 0, 255)) for v in colour)
        draw.line(_px(line, px), fill=c, width=w if k == 0 else max(1, round(w * 0.7)), joint="curve")
        r = w / 2  # round ends: Pillow's lines end square
        for x, y in (line[0], line[-1]):
            draw.ellipse([x * px - r, y * px - r, x * px + r, y * px + r], fill=c)


def _circle(draw, cx: float, cy: float, r: float, px: int, rng, colour, width: float, fill=None, amp=0.003,
            passes: int = 1) -> None:
    """A hand-drawn circle: a closed wobbly loop that overlaps itself a little, optionally filled first."""
    if fill is not None:
        draw.ellipse([(cx - r) * px, (cy - r) * px, (cx + r) * px, (cy + r) * px], fill=fill)
    t = np.linspace(0.0, 2 * math.pi * 1.08, 40)
    _stroke(draw, np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], 1), px, rng, colour, width, amp, passes)


def _hatch(img: Image.Image, polygon, rng: np.random.Generator, colour, spacing: float = 0.05,
           width: float = 0.012, slope: float = 1.0, amp: float = 0.003) -> None:
    """Fill ``polygon`` (fractions) with wobbly diagonal hatching in ``colour`` (pencil shading)."""
    px = img.size[0]
    region = Image.new("L", img.size, 0)
    ImageDraw.Draw(region).polygon(_px(polygon, px), fill=255)
    lines = Image.new("L", img.size, 0)
    d = ImageDraw.Draw(lines)
    for c in np.arange(-1.2 - abs(slope), 1.2 + abs(slope), spacing):  # y = c + slope * x for x in [0, 1]
        _stroke(d, [(-0.05, c - 0.05 * slope), (1.05, c + 1.05 * slope)], px, rng, (255,), width, amp)
    img.paste(Image.new("RGB", img.size, tuple(colour)), (0, 0), ImageChops.multiply(region, lines))


def _stick_figure(draw, x: float, feet_y: float, height: float, px: int, rng, colour, width: float,
                  passes: int = 1) -> None:
    """A stick figure standing with its feet at (x, feet_y), ``height`` tall, arms out."""
    h = height
    hip, neck = feet_y - 0.45 * h, feet_y - 0.78 * h
    _stroke(draw, [(x - 0.16 * h, feet_y), (x, hip), (x + 0.16 * h, feet_y)], px, rng, colour, width, passes=passes)
    _stroke(draw, [(x, hip), (x, neck)], px, rng, colour, width, passes=passes)
    _stroke(draw, [(x - 0.24 * h, neck + 0.16 * h), (x, neck + 0.04 * h), (x + 0.24 * h, neck + 0.12 * h)],
            px, rng, colour, width, passes=passes)
    _circle(draw, x, feet_y - 0.89 * h, 0.11 * h, px, rng, colour, width, passes=passes)


def _blob(draw, x: float, feet_y: float, size: float, px: int, rng, colour, outline, width: float) -> None:
    """A round creature sitting on (x, feet_y): a filled body, two eyes, two feet."""
    r = size / 2
    cy = feet_y - r
    _stroke(draw, [(x - 0.5 * r, cy + 0.8 * r), (x - 0.6 * r, feet_y)], px, rng, outline, width)
    _stroke(draw, [(x + 0.5 * r, cy + 0.8 * r), (x + 0.6 * r, feet_y)], px, rng, outline, width)
    _circle(draw, x, cy - 0.1 * r, 0.9 * r, px, rng, outline, width, fill=colour)
    for ex in (x - 0.3 * r, x + 0.3 * r):
        e = 0.22 * r
        draw.ellipse([(ex - e) * px, (cy - 0.35 * r - e) * px, (ex + e) * px, (cy - 0.35 * r + e) * px],
                     fill=(255, 255, 255), outline=outline, width=max(1, round(width * px * 0.5)))
        p = 0.1 * r
        draw.ellipse([(ex + 0.05 * r - p) * px, (cy - 0.33 * r - p) * px, (ex + 0.05 * r + p) * px,
                      (cy - 0.33 * r + p) * px], fill=outline)


def _coin(draw, x: float, y: float, r: float, px: int, rng, colour, width: float, fill=None) -> None:
    _circle(draw, x, y, r, px, rng, colour, width, fill=fill)
    _stroke(draw, [(x, y - 0.5 * r), (x, y + 0.5 * r)], px, rng, colour, width * 0.8)


def _paper(px: int, colour) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    img = Image.new("RGB", (px, px), tuple(colour))
    return img, ImageDraw.Draw(img)


# ----------------------------------------------------------------------------------------------------
# the six sketches


def _sketch_ledge(px: int, rng: np.random.Generator) -> Image.Image:
    """Pencil: flat ground that steps up to a ledge on the right, a platform up left, a coin."""
    ink, w = (45, 45, 52), 0.022
    img, d = _paper(px, (246, 244, 236))
    ground = [(-0.05, 0.72), (0.64, 0.72), (0.64, 0.56), (1.05, 0.56)]
    _hatch(img, ground + [(1.05, 1.05), (-0.05, 1.05)], rng, (120, 120, 128), spacing=0.06)
    _stroke(d, ground, px, rng, ink, w)
    plat = [(0.06, 0.36), (0.32, 0.36), (0.32, 0.43), (0.06, 0.43), (0.06, 0.36)]
    _hatch(img, plat, rng, (120, 120, 128), spacing=0.04)
    _stroke(d, plat, px, rng, ink, w)
    _coin(d, 0.82, 0.42, 0.04, px, rng, ink, w * 0.8)
    _stick_figure(d, 0.48, 0.72, 0.2, px, rng, ink, w)
    return img


def _sketch_steps(px: int, rng: np.random.Generator) -> Image.Image:
    """Crayon: steps climbing to the right, brown earth under green grass, a red figure, yellow coins."""
    img, d = _paper(px, (250, 250, 245))
    top = [(-0.05, 0.8), (0.3, 0.8), (0.3, 0.7), (0.64, 0.7), (0.64, 0.58), (0.86, 0.58), (0.86, 0.46),
           (1.05, 0.46)]
    earth = top + [(1.05, 1.05), (-0.05, 1.05)]
    ImageDraw.Draw(img).polygon(_px(earth, px), fill=(222, 190, 150))
    _hatch(img, earth, rng, (150, 92, 45), spacing=0.035, width=0.014, slope=-0.6, amp=0.005)
    _stroke(d, top, px, rng, (50, 140, 55), 0.03, amp=0.005, passes=3)
    for x, y in ((0.75, 0.45), (0.95, 0.33), (0.16, 0.62)):
        _coin(d, x, y, 0.035, px, rng, (210, 130, 20), 0.014, fill=(245, 200, 40))
    _stick_figure(d, 0.47, 0.7, 0.2, px, rng, (200, 40, 40), 0.02, passes=2)
    return img


def _sketch_pit(px: int, rng: np.random.Generator) -> Image.Image:
    """Blue ink: the ground breaks into a pit with spikes right of the figure; a cloud and a flag."""
    ink, w = (30, 55, 140), 0.02
    img, d = _paper(px, (247, 247, 250))
    left = [(-0.05, 0.7), (0.6, 0.7), (0.6, 1.05)]
    right = [(0.8, 1.05), (0.8, 0.7), (1.05, 0.7)]
    _hatch(img, left + [(-0.05, 1.05)], rng, (110, 130, 190), spacing=0.05)
    _hatch(img, right + [(1.05, 1.05)], rng, (110, 130, 190), spacing=0.05)
    _stroke(d, left, px, rng, ink, w)
    _stroke(d, right, px, rng, ink, w)
    spikes = [(0.6 + 0.2 * k / 8, 0.95 if k % 2 == 0 else 0.88) for k in range(9)]
    _stroke(d, spikes, px, rng, ink, w * 0.8)
    t = np.linspace(math.pi, 2 * math.pi, 10)
    cloud = [(0.12 + 0.08 * k + 0.045 * math.cos(a), 0.2 + 0.045 * math.sin(a)) for k in range(4) for a in t]
    _stroke(d, cloud + [cloud[0]], px, rng, ink, w * 0.7)  # scallops on top, a flat bottom
    _stroke(d, [(0.92, 0.7), (0.92, 0.42)], px, rng, ink, w)
    _stroke(d, [(0.92, 0.42), (0.99, 0.46), (0.92, 0.5)], px, rng, (200, 50, 50), w)
    _stick_figure(d, 0.46, 0.7, 0.2, px, rng, ink, w)
    return img


def _sketch_platforms(px: int, rng: np.random.Generator) -> Image.Image:
    """Graphite on grey paper: the figure on a floating platform, two more platforms, ground far below."""
    ink, w = (65, 65, 72), 0.022
    img, d = _paper(px, (234, 234, 229))
    blocks = [(0.34, 0.6, 0.66, 0.67), (-0.05, 0.36, 0.22, 0.43), (0.76, 0.76, 1.05, 0.83)]
    for x0, y0, x1, y1 in blocks:
        box = [(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)]
        _hatch(img, box, rng, (130, 130, 138), spacing=0.035, slope=-1.0)
        _stroke(d, box, px, rng, ink, w)
    floor = [(-0.05, 0.93), (1.05, 0.93)]
    _hatch(img, floor + [(1.05, 1.05), (-0.05, 1.05)], rng, (130, 130, 138), spacing=0.05)
    _stroke(d, floor, px, rng, ink, w)
    for x in (0.05, 0.13):
        _coin(d, x, 0.29, 0.03, px, rng, ink, w * 0.7)
    _coin(d, 0.9, 0.68, 0.03, px, rng, ink, w * 0.7)
    _stick_figure(d, 0.5, 0.6, 0.2, px, rng, ink, w)
    return img


def _sketch_hill(px: int, rng: np.random.Generator) -> Image.Image:
    """Crayon: a green hill, a crate, a purple blob in the middle and a sun."""
    img, d = _paper(px, (252, 250, 244))
    xs = np.linspace(-0.05, 1.05, 45)
    ys = 0.74 - 0.14 * np.exp(-((xs - 0.2) / 0.13) ** 2)
    ground = list(zip(xs, ys))
    earth = ground + [(1.05, 1.05), (-0.05, 1.05)]
    ImageDraw.Draw(img).polygon(_px(earth, px), fill=(190, 228, 170))
    _hatch(img, earth, rng, (70, 150, 60), spacing=0.04, width=0.014, slope=0.5, amp=0.005)
    _stroke(d, ground, px, rng, (30, 100, 40), 0.026, amp=0.004, passes=2)
    crate = [(0.66, 0.74), (0.66, 0.6), (0.8, 0.6), (0.8, 0.74)]
    ImageDraw.Draw(img).polygon(_px(crate, px), fill=(205, 150, 90))
    _stroke(d, crate + [(0.66, 0.74)], px, rng, (110, 60, 20), 0.022, passes=2)
    _stroke(d, [(0.66, 0.6), (0.8, 0.74)], px, rng, (110, 60, 20), 0.016)
    _stroke(d, [(0.8, 0.6), (0.66, 0.74)], px, rng, (110, 60, 20), 0.016)
    _circle(d, 0.84, 0.16, 0.07, px, rng, (235, 150, 20), 0.018, fill=(250, 215, 60), passes=2)
    for k in range(8):
        a = 2 * math.pi * k / 8 + 0.2
        _stroke(d, [(0.84 + 0.1 * math.cos(a), 0.16 + 0.1 * math.sin(a)),
                    (0.84 + 0.14 * math.cos(a), 0.16 + 0.14 * math.sin(a))], px, rng, (235, 150, 20), 0.014)
    _blob(d, 0.5, 0.74, 0.13, px, rng, (170, 110, 210), (60, 30, 90), 0.016)
    return img


def _sketch_wall(px: int, rng: np.random.Generator) -> Image.Image:
    """Black marker on yellowish paper: a brick wall on the left, a high ledge on the right, a blob."""
    ink, w = (20, 20, 22), 0.03
    img, d = _paper(px, (248, 240, 205))
    wall = [(-0.05, -0.05), (0.14, -0.05), (0.14, 0.78), (-0.05, 0.78)]
    _stroke(d, wall[1:3], px, rng, ink, w)
    for k, y in enumerate(np.arange(0.06, 0.78, 0.1)):
        _stroke(d, [(-0.02, y), (0.14, y)], px, rng, ink, w * 0.5)
        x = 0.07 if k % 2 else 0.03
        _stroke(d, [(x, y), (x, y + 0.1)], px, rng, ink, w * 0.5)
    floor = [(0.14, 0.78), (1.05, 0.78)]
    _hatch(img, floor + [(1.05, 1.05), (-0.05, 1.05), (-0.05, 0.78)], rng, (90, 85, 70), spacing=0.045,
           width=0.015)
    _stroke(d, [(-0.05, 0.78)] + floor, px, rng, ink, w)
    ledge = [(1.05, 0.5), (0.66, 0.5), (0.66, 0.57), (1.05, 0.57)]
    _hatch(img, ledge, rng, (90, 85, 70), spacing=0.035, width=0.015, slope=-1.0)
    _stroke(d, ledge, px, rng, ink, w)
    _stroke(d, [(0.72, 0.57), (0.72, 0.78)], px, rng, ink, w * 0.7)
    _coin(d, 0.5, 0.44, 0.04, px, rng, ink, w * 0.6, fill=(250, 205, 50))
    _blob(d, 0.5, 0.78, 0.14, px, rng, (25, 25, 28), ink, 0.02)
    return img


# ----------------------------------------------------------------------------------------------------
# the two photo-like pictures (float RGB canvases in [0, 255], painted with masks and value noise)


def _value_noise(rng: np.random.Generator, px: int, cells: int, octaves: int = 3) -> np.ndarray:
    """Smooth noise (px, px) in about [-1, 1]: ``octaves`` layers of bicubic-upsampled random grids."""
    out = np.zeros((px, px), dtype=np.float32)
    amp, total = 1.0, 0.0
    for k in range(octaves):
        c = cells * 2 ** k
        grid = Image.fromarray(rng.random((c + 1, c + 1)).astype(np.float32), "F")
        out += amp * np.asarray(grid.resize((px, px), Image.BICUBIC), dtype=np.float32)
        total += amp
        amp *= 0.5
    out /= total
    return np.clip((out - 0.5) * 2.5, -1.0, 1.0)


def _mask(px: int, paint: Callable[[ImageDraw.ImageDraw], None]) -> np.ndarray:
    m = Image.new("L", (px, px), 0)
    paint(ImageDraw.Draw(m))
    return np.asarray(m, dtype=np.float32)[..., None] / 255.0


def _lay(canvas_hwc: np.ndarray, mask_hw1: np.ndarray, colour_hwc) -> None:
    canvas_hwc *= 1.0 - mask_hw1
    canvas_hwc += mask_hw1 * np.asarray(colour_hwc, dtype=np.float32)


def _sky(px: int, top, horizon, horizon_y: float) -> np.ndarray:
    y = np.clip(np.arange(px, dtype=np.float32) / (px * horizon_y), 0.0, 1.0)[:, None, None]
    sky = (1 - y) * np.asarray(top, np.float32) + y * np.asarray(horizon, np.float32)
    return np.broadcast_to(sky, (px, px, 3)).copy()


def _ridge(px: int, rng, base: float, height: float, roughness: float, flat: bool = False) -> np.ndarray:
    """A skyline y(x) (fractions) for each pixel column: sines and noise, or flat-topped mesas."""
    x = np.arange(px, dtype=np.float64) / px
    ph = rng.random(3) * 2 * math.pi
    waves = 0.3 * np.sin(2 * math.pi * 1.3 * x + ph[0]) + 0.2 * np.sin(2 * math.pi * 3.1 * x + ph[1])
    y = base - height * (0.5 + waves)
    if flat:
        y = base - height * (np.sin(2 * math.pi * 1.7 * x + ph[2]) > 0.1)
        y = np.convolve(np.pad(y, px // 40, mode="edge"), np.ones(2 * (px // 40) + 1) / (2 * (px // 40) + 1), "valid")
    return y + roughness * np.cumsum(rng.normal(0, 1, px)) / math.sqrt(px)


def _below(px: int, y_of_x: np.ndarray) -> np.ndarray:
    rows = np.arange(px, dtype=np.float64)[:, None] / px
    return np.clip((rows - y_of_x[None, :]) * px + 0.5, 0.0, 1.0).astype(np.float32)[..., None]


def _textured(px: int, rng, colour, cells: int, strength: float) -> np.ndarray:
    n = _value_noise(rng, px, cells)[..., None]
    return np.asarray(colour, np.float32) * (1.0 + strength * n)


def _person(canvas: np.ndarray, x: float, feet_y: float, h: float, rng, skin, shirt, trousers, light: float) -> None:
    """A standing figure seen from the side-front, lit from the upper left; a soft shadow at its feet."""
    px = canvas.shape[0]
    shade = np.clip(1.0 + light * _value_noise(rng, px, 3, 1)[..., None] * 0.3, 0.6, 1.3)
    shadow = _mask(px, lambda d: d.ellipse([(x - 0.09) * px, (feet_y - 0.012) * px, (x + 0.1) * px,
                                            (feet_y + 0.012) * px], fill=110))
    _lay(canvas, shadow, canvas * 0.45)
    legs = _mask(px, lambda d: (d.rounded_rectangle([(x - 0.045) * px, (feet_y - 0.46 * h) * px, (x - 0.008) * px,
                                                     feet_y * px], radius=0.01 * px, fill=255),
                                d.rounded_rectangle([(x + 0.008) * px, (feet_y - 0.46 * h) * px, (x + 0.045) * px,
                                                     feet_y * px], radius=0.01 * px, fill=255)))
    _lay(canvas, legs, np.asarray(trousers, np.float32) * shade)
    torso = _mask(px, lambda d: d.rounded_rectangle([(x - 0.06) * px, (feet_y - 0.82 * h) * px, (x + 0.06) * px,
                                                     (feet_y - 0.42 * h) * px], radius=0.025 * px, fill=255))
    lit = np.linspace(1.15, 0.8, px, dtype=np.float32)[None, :, None]  # light from the left
    _lay(canvas, torso, np.asarray(shirt, np.float32) * lit)
    arm = _mask(px, lambda d: d.line([((x + 0.05) * px, (feet_y - 0.76 * h) * px), ((x + 0.1) * px,
                                      (feet_y - 0.5 * h) * px)], fill=255, width=max(1, round(0.028 * px))))
    _lay(canvas, arm, np.asarray(shirt, np.float32) * 0.8)
    r = 0.1 * h
    head = _mask(px, lambda d: d.ellipse([(x - r) * px, (feet_y - 0.82 * h - 2 * r) * px, (x + r) * px,
                                          (feet_y - 0.82 * h) * px], fill=255))
    _lay(canvas, head, np.asarray(skin, np.float32) * lit)
    hair = _mask(px, lambda d: d.chord([(x - r) * px, (feet_y - 0.82 * h - 2 * r) * px, (x + r) * px,
                                        (feet_y - 0.82 * h) * px], 180, 360, fill=255))
    _lay(canvas, hair, (60, 40, 25))


def _photo_meadow(px: int, rng: np.random.Generator) -> Image.Image:
    """Noon over a meadow: blue sky, sun, hazy blue hills, green hills, grass over earth, a rock ledge."""
    c = _sky(px, (70, 130, 210), (200, 225, 245), 0.62)
    yy, xx = np.mgrid[0:px, 0:px].astype(np.float32) / px
    sun = np.exp(-((xx - 0.82) ** 2 + (yy - 0.14) ** 2) / 0.004)[..., None]
    _lay(c, np.clip(sun * 1.2, 0, 1), (255, 250, 225))
    clouds = np.clip(_value_noise(rng, px, 4) - 0.25, 0, 1)[..., None] * np.clip(0.5 - yy, 0, 1)[..., None] * 1.6
    _lay(c, np.clip(clouds, 0, 1), (250, 250, 252))
    _lay(c, _below(px, _ridge(px, rng, 0.52, 0.14, 0.03)), _textured(px, rng, (125, 150, 175), 6, 0.08))
    _lay(c, _below(px, _ridge(px, rng, 0.64, 0.1, 0.02)), _textured(px, rng, (70, 125, 70), 10, 0.18))
    ground_y = 0.74 + 0.006 * np.sin(np.arange(px) / px * 2 * math.pi * 2)
    _lay(c, _below(px, ground_y), _textured(px, rng, (70, 145, 55), 24, 0.35))
    _lay(c, _below(px, ground_y + 0.05 + 0.01 * _value_noise(rng, px, 8, 1)[0]),
         _textured(px, rng, (125, 88, 52), 16, 0.3))
    rock = _mask(px, lambda d: d.polygon(_px([(0.7, 0.775), (0.72, 0.6), (0.8, 0.575), (1.05, 0.57),
                                               (1.05, 0.775)], px), fill=255))
    _lay(c, rock, _textured(px, rng, (135, 132, 128), 14, 0.35) * np.linspace(0.8, 1.1, px)[:, None, None][::-1])
    _lay(c, _mask(px, lambda d: d.line(_px([(0.72, 0.6), (0.8, 0.575), (1.05, 0.57)], px), fill=255,
                                       width=max(1, round(0.02 * px)))), (80, 150, 60))
    _person(c, 0.5, 0.745, 0.22, rng, (230, 185, 145), (190, 45, 40), (45, 55, 115), 1.0)
    return Image.fromarray(np.clip(c, 0, 255).round().astype(np.uint8), "RGB")


def _photo_desert(px: int, rng: np.random.Generator) -> Image.Image:
    """Dusk in a desert: a violet-to-orange sky, mesas in haze, rippled sand, a stone slab, a figure."""
    c = _sky(px, (55, 40, 105), (250, 155, 85), 0.6)
    yy, xx = np.mgrid[0:px, 0:px].astype(np.float32) / px
    glow = np.exp(-((xx - 0.3) ** 2 / 0.02 + (yy - 0.6) ** 2 / 0.004))[..., None]
    _lay(c, np.clip(glow, 0, 1), (255, 215, 140))
    _lay(c, _below(px, _ridge(px, rng, 0.58, 0.16, 0.01, flat=True)), _textured(px, rng, (150, 85, 90), 8, 0.1))
    _lay(c, _below(px, _ridge(px, rng, 0.66, 0.06, 0.015)), _textured(px, rng, (165, 95, 70), 12, 0.15))
    sand = _textured(px, rng, (215, 160, 100), 20, 0.18)
    ripples = 1.0 + 0.1 * np.sin((yy * 90 + 4 * _value_noise(rng, px, 6, 1)) * math.pi)[..., None]
    _lay(c, _below(px, np.full(px, 0.73)), sand * ripples * np.linspace(0.85, 1.1, px)[:, None, None])
    slab = _mask(px, lambda d: d.polygon(_px([(-0.05, 0.52), (0.27, 0.5), (0.3, 0.58), (-0.05, 0.6)], px), fill=255))
    _lay(c, slab, _textured(px, rng, (120, 90, 80), 12, 0.3))
    cactus = _mask(px, lambda d: (d.rounded_rectangle([0.8 * px, 0.55 * px, 0.84 * px, 0.75 * px], radius=0.02 * px,
                                                      fill=255),
                                  d.rounded_rectangle([0.75 * px, 0.6 * px, 0.78 * px, 0.68 * px], radius=0.015 * px,
                                                      fill=255),
                                  d.rectangle([0.75 * px, 0.66 * px, 0.81 * px, 0.68 * px], fill=255)))
    _lay(c, cactus, _textured(px, rng, (50, 95, 55), 16, 0.25))
    _person(c, 0.5, 0.755, 0.22, rng, (170, 115, 85), (40, 90, 150), (60, 50, 45), 0.6)
    return Image.fromarray(np.clip(c, 0, 255).round().astype(np.uint8), "RGB")


DRAWINGS: tuple[Drawing, ...] = (
    Drawing("sketch-00", "sketch: ground, a ledge and a coin (pencil)", "sketch", _sketch_ledge),
    Drawing("sketch-01", "sketch: steps up to the right (crayon)", "sketch", _sketch_steps),
    Drawing("sketch-02", "sketch: a pit with spikes (blue ink)", "sketch", _sketch_pit),
    Drawing("sketch-03", "sketch: floating platforms (graphite)", "sketch", _sketch_platforms),
    Drawing("sketch-04", "sketch: a hill, a crate and a blob (crayon)", "sketch", _sketch_hill),
    Drawing("sketch-05", "sketch: a wall and a high ledge (marker)", "sketch", _sketch_wall),
    Drawing("snapshot-00", "photo-like: a meadow at noon", "photo", _photo_meadow),
    Drawing("snapshot-01", "photo-like: a desert at dusk", "photo", _photo_desert),
)


# ----------------------------------------------------------------------------------------------------
# public API


def _render(drawing: Drawing, size: int) -> np.ndarray:
    seed = sum(ord(ch) for ch in drawing.name) * 7919 + len(drawing.name)  # fixed per name, independent of order
    img = drawing.paint(size * SUPERSAMPLE, np.random.default_rng(seed)).convert("RGB").resize((size, size), Image.BOX)
    img = img.quantize(COLOURS[drawing.kind], method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    return np.ascontiguousarray(np.asarray(img.convert("RGB"), dtype=np.uint8))


def drawn_prompts(size: int = 64, kinds: tuple[str, ...] = KINDS) -> list[tuple[str, str, np.ndarray]]:
    """The drawn prompts as ``[(name, label, frame_hwc uint8 (size, size, 3)), ...]``, sketches first.

    ``name`` is the file stem (``sketch-00`` .. ``sketch-05``, ``snapshot-00``, ``snapshot-01``);
    ``kinds`` keeps only ``"sketch"`` or ``"photo"`` drawings. The same ``size`` gives the same pixels.
    """
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or not 16 <= int(size) <= 1024:
        raise ValueError(f"size must be an integer frame size in [16, 1024], got {size!r}")
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise ValueError(f"unknown prompt kind {unknown[0]!r}; choose from {', '.join(KINDS)}")
    return [(d.name, d.label, _render(d, int(size))) for d in DRAWINGS if d.kind in kinds]


def model_image_size(model_dir) -> int:
    """The frame size of a model folder: ``image_size`` of ``MODEL/tokenizer/config.json``."""
    from genieworld.errors import UserError
    from genieworld.utils import read_json

    try:
        cfg = read_json(Path(model_dir) / "tokenizer" / "config.json")
    except UserError as e:
        raise UserError(f"{e}; pass the frame size instead") from None
    size = cfg.get("image_size") if isinstance(cfg, dict) else None
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise UserError(f"{model_dir}: tokenizer/config.json has no integer image_size; pass the frame size")
    return size


def _png_bytes(frame_hwc: np.ndarray) -> bytes:
    """A lossless PNG of ``frame_hwc``: a palette PNG when it has at most 256 colours, else RGB."""
    colours, index = np.unique(frame_hwc.reshape(-1, 3), axis=0, return_inverse=True)
    if len(colours) <= 256:
        img = Image.fromarray(index.reshape(frame_hwc.shape[:2]).astype(np.uint8), "P")
        img.putpalette(colours.astype(np.uint8).tobytes())
    else:
        img = Image.fromarray(frame_hwc, "RGB")
    buf = io.BytesIO()
    img.save(buf, "PNG", optimize=True)
    return buf.getvalue()


def _same_picture(path: Path, frame_hwc: np.ndarray) -> bool:
    """Whether the plain file ``path`` decodes to exactly ``frame_hwc`` (anything unreadable: no)."""
    import stat

    try:
        if not stat.S_ISREG(path.lstat().st_mode) or path.lstat().st_size > (1 << 20):
            return False
        with Image.open(path) as img:
            img.load()
            pixels = np.asarray(img.convert("RGB"), dtype=np.uint8) if img.mode in ("RGB", "P") else None
    except (OSError, ValueError, Image.DecompressionBombError):
        return False
    return pixels is not None and pixels.shape == frame_hwc.shape and np.array_equal(pixels, frame_hwc)


def write_drawn_prompts(model_dir, size: int | None = None) -> list[Path]:
    """Add the drawn prompts (:data:`DRAWINGS`) to ``model_dir/prompts/`` and its ``index.json``.

    ``size``: the frame size; default the model's (:func:`model_image_size`). Every entry already in
    ``index.json`` is kept (an entry for one of these file names is replaced); a file that already
    holds exactly the drawing is left as it is. Raises :class:`~genieworld.errors.UserError`, before
    writing anything, when the model folder is missing, ``prompts/`` is a link or not a folder,
    ``index.json`` is not a prompt index, or a same-named file holds another picture (never
    overwritten). Returns the 8 paths, in :data:`DRAWINGS` order.
    """
    from genieworld.data.store import atomic_write_bytes, atomic_write_json
    from genieworld.errors import UserError
    from genieworld.prompts import MAX_INDEX_BYTES, PROMPT_INDEX, PROMPTS_DIR
    from genieworld.utils import read_json

    model = Path(model_dir)
    if not model.is_dir():
        raise UserError(f"{model}: no such model folder")
    size = model_image_size(model) if size is None else size
    folder = model / PROMPTS_DIR
    if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
        raise UserError(f"{folder}: not a plain folder; refusing to write prompts there")
    index_path = folder / PROMPT_INDEX
    index: dict = {"prompts": []}
    if index_path.exists() or index_path.is_symlink():
        index = read_json(index_path, max_bytes=MAX_INDEX_BYTES)
        if not isinstance(index, dict) or not isinstance(index.get("prompts"), list):
            raise UserError(f"{index_path}: not a prompt index ({{\"prompts\": [...]}}); refusing to rewrite it")
    drawings = {d.name: d for d in DRAWINGS}
    frames = drawn_prompts(size)
    for name, _, frame_hwc in frames:  # check everything before writing anything
        path = folder / f"{name}.png"
        if (path.exists() or path.is_symlink()) and not _same_picture(path, frame_hwc):
            raise UserError(f"{path}: exists and is not the drawing genieworld makes under that name; "
                            f"refusing to overwrite it (move it away first)")
    folder.mkdir(exist_ok=True)
    paths = []
    for name, _, frame_hwc in frames:
        path = folder / f"{name}.png"
        if not path.exists():
            atomic_write_bytes(folder, path.name, _png_bytes(frame_hwc))
        paths.append(path)
    ours = {f"{name}.png" for name, _, _ in frames}
    kept = [e for e in index["prompts"] if not (isinstance(e, dict) and e.get("file") in ours)]
    added = [{"file": f"{name}.png", "label": label, "kind": drawings[name].kind} for name, label, _ in frames]
    atomic_write_json(folder, PROMPT_INDEX, {**index, "prompts": kept + added})
    return paths


def main(argv=None) -> int:
    """``python -m genieworld.sketches MODEL [--size N]``: add the drawn prompts to MODEL's gallery."""
    import argparse

    from genieworld.errors import UserError

    ap = argparse.ArgumentParser(prog="python -m genieworld.sketches", description=main.__doc__)
    ap.add_argument("model", help="model folder (genie.json); the prompts go to MODEL/prompts/")
    ap.add_argument("--size", type=int, help="frame size (default: the model tokenizer's image_size)")
    args = ap.parse_args(argv)
    try:
        paths = write_drawn_prompts(args.model, args.size)
    except (UserError, ValueError) as e:
        raise SystemExit(f"error: {e}") from None
    print(json.dumps({"written": [str(p) for p in paths]}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
