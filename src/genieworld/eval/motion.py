"""How the view moves between frames: a whole-pixel shift search, and what each action of a grid does.

CoinRun's camera follows the agent, so an action that runs right moves the *view* right (the
picture's content slides left), and a jump moves it up. :func:`frame_shifts` finds, for each
pair of frames, the shift ``(dx, dy)`` of the view that best maps the first onto the second
(mean absolute error over the central part of the frame) and how well the shifted frames then
agree (``aligned_psnr``): a rollout that wipes the scene out has no shift that explains it and
a low aligned PSNR, whatever shift the search returns.

:func:`grid_motion` summarises an action grid (each latent action repeated from a few prompts,
``genie eval``'s ``action_grid.png``) per action: the view's total displacement over the rollout
(the sum of its step-to-step shifts),
how consistent its direction is across prompts, and whether the scene survives. This is the
measurement behind "scroll left, scroll right, jump" in issue 14.
"""

from __future__ import annotations

import numpy as np

#: An action *moves* the view in a direction when, over the rollout, the view moved by at least
#: ``MIN_PIXELS`` that way with the scene kept (:func:`scene_kept`) in at least ``MIN_PROMPTS``
#: prompts, and at least 3 times as many as moved the other way. Calibrated on real CoinRun (held-out
#: levels, one effective action held for 4 recorded steps, ``bench/bench_grid.py``'s ``real``): the
#: scene counts as kept in most real rollouts, and the real game passes the grid test with 16 prompts.
MIN_PIXELS = 2
KEEP_DB = 10.0
MIN_CONTRAST = 0.5
EDGE_RATIO = (0.5, 1.5)
MIN_PROMPTS = 3


def frame_shifts(a_nhwc: np.ndarray, b_nhwc: np.ndarray, max_dx: int = 8, max_dy: int = 12
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(shift (N, 2) int [dx, dy] of the view, aligned PSNR (N,) in dB) from frames a to frames b (uint8).

    ``b(p) ~ a(p + d)`` for the returned d: the view moved by d (+x right, +y down) and the picture's
    content by -d. Shifts are searched in [-max_dx, max_dx] x [-max_dy, max_dy], each capped at a
    quarter of the frame so that at least half of it is compared.
    """
    if a_nhwc.shape != b_nhwc.shape or a_nhwc.ndim != 4:
        raise ValueError(f"need two (N, H, W, C) arrays of one shape, got {a_nhwc.shape} and {b_nhwc.shape}")
    a = a_nhwc.astype(np.float32) / 255
    b = b_nhwc.astype(np.float32) / 255
    h, w = a.shape[1:3]
    max_dx, max_dy = min(max_dx, w // 4), min(max_dy, h // 4)
    m = max(max_dx, max_dy)
    ga, gb = a.mean(-1), b.mean(-1)
    target = gb[:, m:h - m, m:w - m]
    cand = [(dx, dy) for dy in range(-max_dy, max_dy + 1) for dx in range(-max_dx, max_dx + 1)]
    err = np.stack([np.abs(target - ga[:, m + dy:h - m + dy, m + dx:w - m + dx]).mean((1, 2)) for dx, dy in cand], 1)
    best = err.argmin(1)
    shift = np.asarray([cand[i] for i in best], dtype=np.int64).reshape(-1, 2)
    psnr = np.empty(len(a), dtype=np.float64)
    for i, (dx, dy) in enumerate(shift):
        mse = float(((b[i, m:h - m, m:w - m] - a[i, m + dy:h - m + dy, m + dx:w - m + dx]) ** 2).mean())
        psnr[i] = 10 * np.log10(1.0 / max(mse, 1e-10))
    return shift, psnr


def rollout_motion(frames_tkhwc: np.ndarray, max_dx: int = 12, max_dy: int = 16) -> dict[str, np.ndarray]:
    """Per rollout (R, 1 + k, H, W, C): the view's total displacement (R, 2), the sum of its k step-to-step
    shifts (each searched within +-max_dx, +-max_dy); the lowest aligned PSNR of its steps; whether any
    step's best horizontal shift lies on the search edge; and the contrast (std of the grey image) of the
    last frame relative to the first, and its edge density relative to the first."""
    if frames_tkhwc.ndim != 5 or frames_tkhwc.shape[1] < 2:
        raise ValueError(f"need rollouts (R, 1 + k, H, W, C) with k >= 1, got {frames_tkhwc.shape}")
    r, t = frames_tkhwc.shape[:2]
    h, w = frames_tkhwc.shape[2:4]
    a = frames_tkhwc[:, :-1].reshape(-1, *frames_tkhwc.shape[2:])
    b = frames_tkhwc[:, 1:].reshape(-1, *frames_tkhwc.shape[2:])
    shift, psnr = frame_shifts(a, b, max_dx, max_dy)
    shift, psnr = shift.reshape(r, t - 1, 2), psnr.reshape(r, t - 1)
    edge = np.abs(shift[..., 0]) >= min(max_dx, w // 4)  # horizontal only: real jumps reach the vertical edge
    grey = frames_tkhwc[:, [0, -1]].astype(np.float32).mean(-1) / 255  # (R, 2, H, W)
    std = grey.std((2, 3))
    # edge density: the fraction of neighbouring pixel pairs that differ by > 0.1 (CoinRun is drawn in
    # flat regions; a picture dissolved into speckle has many more edges than the prompt)
    edges = ((np.abs(np.diff(grey, axis=2)) > 0.1).mean((2, 3)) + (np.abs(np.diff(grey, axis=3)) > 0.1).mean((2, 3))) / 2
    return {"displacement": shift.sum(1), "aligned_psnr": psnr.min(1), "at_search_edge": edge.any(1),
            "contrast_ratio": std[:, 1] / np.maximum(std[:, 0], 1e-6),
            "edge_ratio": edges[:, 1] / np.maximum(edges[:, 0], 1e-3)}


def scene_kept(motion: dict) -> np.ndarray:
    """Bool (R,): the rollout moved the picture rather than replacing or emptying it: every step
    aligned at >= KEEP_DB, a last frame with at least ``MIN_CONTRAST`` of the first frame's contrast
    (an emptied picture has none), an edge density within ``EDGE_RATIO`` of the first frame's (a picture
    dissolved into speckle has more edges, an emptied one fewer; real 4-step rollouts stay within 1.06-1.43
    of it in 90% of cases), and no step whose horizontal shift lies on the search edge (+-max_dx:
    a picture that changed instead of moving "matches" best there). The vertical edge is allowed: real
    CoinRun jumps move the view by 16 px or more in one recorded step in most 4-step rollouts."""
    lo, hi = EDGE_RATIO
    return ((motion["aligned_psnr"] >= KEEP_DB) & ~motion["at_search_edge"] & (motion["contrast_ratio"] >= MIN_CONTRAST)
            & (motion["edge_ratio"] >= lo) & (motion["edge_ratio"] <= hi))


def _direction(disp: np.ndarray, kept: np.ndarray) -> tuple[str | None, int]:
    """The direction (+/-) that at least MIN_PROMPTS kept rollouts move by >= MIN_PIXELS, 3x more than the other way."""
    pos = int(((disp >= MIN_PIXELS) & kept).sum())
    neg = int(((disp <= -MIN_PIXELS) & kept).sum())
    if pos >= MIN_PROMPTS and pos >= 3 * neg:
        return "+", pos
    if neg >= MIN_PROMPTS and neg >= 3 * pos:
        return "-", neg
    return None, max(pos, neg)


def grid_motion(grid_pakhwc: np.ndarray, action_names: list[str] | None = None, max_dx: int = 12, max_dy: int = 16
                ) -> dict:
    """What each action of a grid (P prompts, A actions, 1 + k frames: the last prompt frame, then the
    action repeated k times) does to the view. Per action: mean displacement, per-prompt displacements,
    prompts where the scene survives, and the direction it consistently moves the view (``right``/``left``,
    ``down``/``up``, or None). ``moves`` lists, per direction, the actions that move the view that way."""
    p, a_n = grid_pakhwc.shape[:2]
    names = list(action_names) if action_names else [str(i) for i in range(a_n)]
    out: dict = {"prompts": p, "steps": int(grid_pakhwc.shape[2] - 1), "min_pixels": MIN_PIXELS, "keep_db": KEEP_DB,
                 "min_prompts": MIN_PROMPTS, "actions": {}}
    moves: dict[str, list[str]] = {"left": [], "right": [], "up": [], "down": []}
    for a in range(a_n):
        m = rollout_motion(grid_pakhwc[:, a], max_dx, max_dy)
        disp, kept = m["displacement"], scene_kept(m)
        hx, _ = _direction(disp[:, 0], kept)
        vy, _ = _direction(disp[:, 1], kept)
        horizontal = {"+": "right", "-": "left"}.get(hx)
        vertical = {"+": "down", "-": "up"}.get(vy)
        for d in (horizontal, vertical):
            if d:
                moves[d].append(names[a])
        out["actions"][names[a]] = {
            "mean_dx": float(disp[:, 0].mean()), "mean_dy": float(disp[:, 1].mean()),
            "dx": disp[:, 0].tolist(), "dy": disp[:, 1].tolist(),
            "kept_prompts": int(kept.sum()), "mean_aligned_psnr": float(m["aligned_psnr"].mean()),  # of the worst steps
            "horizontal": horizontal, "vertical": vertical}
    out["moves"] = moves
    out["distinct_directions"] = sorted(d for d, v in moves.items() if v)
    return out
