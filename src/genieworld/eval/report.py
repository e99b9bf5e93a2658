"""Write the ``genie eval`` report folder: metrics.json, report.md and pictures.

    REPORT_DIR/
      metrics.json        every number, with the settings that produced it
      report.md           the human-readable report (links the pictures)
      rollouts.gif        real | generated (inferred actions) | generated (random actions), a few clips
      rollouts.png        the same as a strip: 3 rows per clip, one column per frame t = 1..horizon
      action_grid.png     each latent action repeated from a few real prompts (rows = actions)
      psnr_per_step.png   PSNR and SSIM against the real frame per step t (matplotlib, Agg)
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from genieworld.eval.evaluate import EvalResult
from genieworld.utils import atomic_write_bytes, atomic_write_text

__all__ = ["write_report", "render_markdown", "FILES"]

FILES = ("metrics.json", "report.md", "rollouts.gif", "rollouts.png", "action_grid.png", "psnr_per_step.png")
MAX_CLIPS = 4
SCALE = 2  # nearest-neighbour upscaling of 64x64 frames in the GIF
GAP = 2
LABEL_W = 84
BG = (255, 255, 255)
PROMPT_COLOUR = (40, 160, 60)


def _font():
    from PIL import ImageFont

    return ImageFont.load_default()


def _png_bytes(img) -> bytes:
    import io

    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _frame(img_u8: np.ndarray, scale: int, border: tuple | None = None):
    from PIL import Image, ImageDraw

    im = Image.fromarray(img_u8)
    if scale != 1:
        im = im.resize((im.width * scale, im.height * scale), Image.NEAREST)
    if border is not None:
        ImageDraw.Draw(im).rectangle([0, 0, im.width - 1, im.height - 1], outline=border, width=2)
    return im


# ----------------------------------------------------------------------------
# Pictures
# ----------------------------------------------------------------------------


def rollout_strip(real: np.ndarray, gen: np.ndarray, gen_rand: np.ndarray, prompt_frames: int, scale: int = 1):
    """PNG strip: per clip three rows (real, inferred actions, random actions), columns t = 1..T."""
    from PIL import Image, ImageDraw

    n, t_len, h, w, _ = real.shape
    fh, fw = h * scale, w * scale
    rows = [(name, arr) for name, arr in (("real", real), ("inferred", gen), ("random", gen_rand))]
    head = 14
    width = LABEL_W + t_len * (fw + GAP)
    height = head + n * (3 * (fh + GAP) + 6)
    canvas = Image.new("RGB", (width, height), BG)
    draw = ImageDraw.Draw(canvas)
    font = _font()
    for t in range(t_len):
        draw.text((LABEL_W + t * (fw + GAP) + 2, 1), f"t={t + 1}", fill=(0, 0, 0), font=font)
    y = head
    for i in range(n):
        for name, arr in rows:
            draw.text((2, y + fh // 2 - 6), f"#{i} {name}", fill=(0, 0, 0), font=font)
            for t in range(t_len):
                border = PROMPT_COLOUR if t < prompt_frames else None
                canvas.paste(_frame(arr[i, t], scale, border), (LABEL_W + t * (fw + GAP), y))
            y += fh + GAP
        y += 6
    return canvas


def rollout_gif_frames(real: np.ndarray, gen: np.ndarray, gen_rand: np.ndarray, prompt_frames: int,
                       scale: int = SCALE) -> list:
    """One image per t: per clip a row [real | inferred actions | random actions]."""
    from PIL import Image, ImageDraw

    n, t_len, h, w, _ = real.shape
    fh, fw = h * scale, w * scale
    head = 28
    width = 3 * (fw + GAP) + GAP
    height = head + n * (fh + GAP)
    font = _font()
    frames = []
    for t in range(t_len):
        canvas = Image.new("RGB", (width, height), BG)
        draw = ImageDraw.Draw(canvas)
        for c, name in enumerate(("real", "inferred actions", "random actions")):
            draw.text((GAP + c * (fw + GAP) + 2, 1), name, fill=(0, 0, 0), font=font)
        kind = "prompt" if t < prompt_frames else "generated"
        draw.text((GAP + 2, 14), f"t = {t + 1}/{t_len} ({kind})", fill=(0, 0, 0), font=font)
        for i in range(n):
            y = head + i * (fh + GAP)
            for c, arr in enumerate((real, gen, gen_rand)):
                border = PROMPT_COLOUR if t < prompt_frames else None
                canvas.paste(_frame(arr[i, t], scale, border), (GAP + c * (fw + GAP), y))
        frames.append(canvas)
    return frames


def action_grid_image(grid: np.ndarray, action_names: list[str], prompt_frames: int, scale: int = 1):
    """``grid (P, A, 1 + k, h, w, 3)``: per prompt, one row per latent action, columns = frames."""
    from PIL import Image, ImageDraw

    p_n, a_n, t_len, h, w, _ = grid.shape
    fh, fw = h * scale, w * scale
    head = 14
    block = a_n * (fh + GAP) + 16
    font = _font()
    names = [action_names[a] if a < len(action_names) else str(a) for a in range(a_n)]
    texts = [f"a={a}" if name == str(a) else f"a={a} {name}" for a, name in enumerate(names)]
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    label_w = max([LABEL_W] + [int(measure.textlength(t, font=font)) + 6 for t in texts])  # whole names
    width = label_w + t_len * (fw + GAP)
    height = head + p_n * block
    canvas = Image.new("RGB", (width, height), BG)
    draw = ImageDraw.Draw(canvas)
    for t in range(t_len):
        label = "prompt" if t < prompt_frames else f"+{t - prompt_frames + 1}"
        draw.text((label_w + t * (fw + GAP) + 2, 1), label, fill=(0, 0, 0), font=font)
    for pi in range(p_n):
        y0 = head + pi * block
        draw.text((2, y0), f"prompt {pi}", fill=(90, 90, 90), font=font)
        for a in range(a_n):
            y = y0 + 12 + a * (fh + GAP)
            draw.text((2, y + fh // 2 - 6), texts[a], fill=(0, 0, 0), font=font)
            for t in range(t_len):
                border = PROMPT_COLOUR if t < prompt_frames else None
                canvas.paste(_frame(grid[pi, a, t], scale, border), (label_w + t * (fw + GAP), y))
    return canvas


def _prompt_text(p: int) -> str:
    return "t = 1 is the prompt" if p == 1 else f"t <= {p} is the prompt"


def psnr_plot_png(metrics: dict) -> bytes:
    """PSNR, SSIM and Delta PSNR per step (inferred vs random actions; tokenizer reconstruction for reference)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    g = metrics["generation"]
    t = np.asarray(g["t"])
    p = metrics["settings"]["prompt_frames"]
    d = metrics.get("delta_t_psnr")
    fig = Figure(figsize=(15 if d else 10, 3.8), dpi=100)
    FigureCanvasAgg(fig)  # the Agg backend, without touching pyplot's global state
    for k, (key, unit) in enumerate((("psnr", "PSNR (dB)"), ("ssim", "SSIM"))):
        ax = fig.add_subplot(1, 3 if d else 2, k + 1)
        for label, series, col in (("inferred actions", g[key], "C0"),
                                   ("random actions", g["random_actions"][key], "C1")):
            m = np.asarray(series["per_step"])[p:]
            s = np.asarray(series["per_step_sem"])[p:]
            ax.plot(t[p:], m, marker="o", ms=3, color=col, label=label)
            ax.fill_between(t[p:], m - s, m + s, color=col, alpha=0.2, lw=0)
        still = g.get("still_prompt", {}).get(key)
        if still is not None:
            ax.plot(t[p:], np.asarray(still["per_step"])[p:], color="grey", ls=":", lw=1, label="prompt held still")
        rec = metrics["tokenizer_reconstruction"][key]
        ax.axhline(rec, color="grey", ls="--", lw=1, label="tokenizer reconstruction")
        for c in (4, 16):
            if p < c <= t[-1]:
                ax.axvline(c, color="k", ls=":", lw=0.8)
        ax.set_xlabel(f"frame t (1-indexed; {_prompt_text(p)})")
        ax.set_ylabel(unit)
        ax.set_title(f"{unit.split()[0]} vs real frame, mean ± s.e.m. over {metrics['settings']['num_clips']} clips",
                     fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if d:
        ax = fig.add_subplot(1, 3, 3)
        m = np.asarray(d["per_step"])[p:]
        s = np.asarray(d["per_step_sem"])[p:]
        ax.plot(t[p:], m, marker="o", ms=3, color="C2", label="PSNR(inferred) - PSNR(random)")
        ax.fill_between(t[p:], m - s, m + s, color="C2", alpha=0.2, lw=0)
        ax.axhline(0.0, color="grey", lw=1)
        ax.axvline(d["t"], color="k", ls=":", lw=0.8)
        ax.set_xlabel(f"frame t (1-indexed; {_prompt_text(p)})")
        ax.set_ylabel("Δ PSNR (dB)")
        ax.set_title(f"ΔtPSNR per step (reported at t = {d['t']}: {d['value']:.2f} dB), ± s.e.m.", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _fig_png(fig)


def drift_plot_png(results: dict[str, dict]) -> bytes:
    """PNG of play quality's drift (GameNGen's quality over time): for each model, the FVD of each 16-frame
    block of its 64-frame player rollouts against real clips, at the block's last frame, with the
    real-vs-real floor and the 16-frame FVD of each driver. ``results``: label -> a
    :func:`genieworld.eval.play_quality.play_quality` dict (models without drift are left out)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from genieworld.eval.play_quality import DRIVERS as drivers

    fig = Figure(figsize=(10, 3.8), dpi=100)
    FigureCanvasAgg(fig)
    ax, bx = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    floors = []
    width = 0.8 / max(1, len(results))
    for k, (label, r) in enumerate(results.items()):
        col = f"C{k % 10}"
        if r.get("fvd_player_long_blocks"):
            ratio = r.get("drift_ratio")
            ax.plot(r["fvd_player_long_block_ends"], r["fvd_player_long_blocks"], marker="o", color=col,
                    label=label + ("" if ratio is None else f" (ratio {ratio:.2f})"))
        vals = [r.get(f"fvd_{d}") for d in drivers]
        xs = [i + (k - (len(results) - 1) / 2) * width for i in range(len(drivers))]
        bx.bar([x for x, v in zip(xs, vals) if v is not None], [v for v in vals if v is not None], width=width,
               color=col, label=label)
        if r.get("fvd_floor") is not None:
            floors.append(r["fvd_floor"])
    for axis in (ax, bx):
        if floors:
            axis.axhline(floors[0], color="grey", ls="--", lw=1, label="real vs real (floor)")
        axis.set_ylabel("FVD against real clips")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
    ax.set_xlabel("last frame of the 16-frame block (64-frame player rollouts)")
    ax.set_title("drift: a world that holds keeps this flat", fontsize=9)
    bx.set_xticks(range(len(drivers)), list(drivers))
    bx.set_title("16-frame rollouts by driver", fontsize=9)
    return _fig_png(fig)


def _fig_png(fig) -> bytes:
    """A matplotlib figure as PNG bytes, laid out tight."""
    import io

    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


# ----------------------------------------------------------------------------
# Markdown
# ----------------------------------------------------------------------------


def _f(x: Any, nd: int = 2) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, float):
        if math.isnan(x):
            return "nan"
        return f"{x:.{nd}f}"
    return str(x)


def _md_table(header: list[str], rows: list[list[Any]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def render_markdown(metrics: dict, action_names: list[str] | None = None) -> str:
    s = metrics["settings"]
    g = metrics["generation"]
    rec = metrics["tokenizer_reconstruction"]
    p, hz = s["prompt_frames"], s["horizon"]
    lines: list[str] = []
    add = lines.append
    add("# Genie evaluation report\n")
    add(f"- model: `{s['model']}`")
    add(f"- data: `{s['data']}` ({s['num_clips']} clips of {hz} frames from {len(s['episodes_used'])} episodes, "
        f"{s['clips_per_episode']} clip(s) per episode)")
    add(f"- prompt: {p} real frame(s); horizon: {hz} frames (t = 1..{hz}, 1-indexed; {_prompt_text(p)}, "
        f"{s['generated_frames']} generated frames)")
    order = (s.get("sampling") or {}).get("order", "confidence")
    add(f"- sampling: MaskGIT {s['maskgit_steps']} steps, temperature {s['temperature']}, {order} order; "
        f"seed {s['seed']}, "
        f"batch size {s['batch_size']} (rollout seeds {s['seeds']['rollouts']})")
    add(f"- genieworld {metrics['versions'].get('genieworld')}, torch {metrics['versions'].get('torch')}, "
        f"device {s['device']}, {metrics['timing'].get('total_s', 0):.1f} s")
    add("")
    for w in metrics.get("warnings", []):
        add(f"> **Warning:** {w}\n")

    add("## Summary\n")
    d = metrics.get("delta_t_psnr")
    fv = metrics["fvd"]
    la = metrics["latent_actions"]
    rows = [
        ["Tokenizer reconstruction PSNR / SSIM", f"{_f(rec['psnr'])} dB / {_f(rec['ssim'], 3)}"],
        [f"Generation PSNR / SSIM (mean over t = {p + 1}..{hz})",
         f"{_f(g['psnr']['mean'])} dB / {_f(g['ssim']['mean'], 3)}"],
        ["Generation PSNR / SSIM at t = 4", f"{_f(g['psnr'].get('t4'))} dB / {_f(g['ssim'].get('t4'), 3)}"],
        ["Generation PSNR / SSIM at t = 16", f"{_f(g['psnr'].get('t16'))} dB / {_f(g['ssim'].get('t16'), 3)}"],
        [f"ΔtPSNR (t = {d['t']})" if d else "ΔtPSNR", f"{_f(d['value'])} ± {_f(d['sem'])} dB" if d else "n/a"],
        [f"FVD ({fv.get('clips')} clips, {fv.get('feature')})" if fv.get("value") is not None else "FVD",
         _f(fv.get("value"), 1) if fv.get("value") is not None else f"skipped: {fv.get('skipped')}"],
        ["Latent actions NMI / purity", f"{_f(la['nmi'], 3)} / {_f(la['purity'], 3)}" if "nmi" in la else
         f"n/a ({la.get('skipped')})"],
    ]
    cb = metrics["codebook_usage"]
    rows.append(["Tokenizer codebook used / perplexity",
                 f"{cb['tokenizer']['used']}/{cb['tokenizer']['num_codes']} / {_f(cb['tokenizer']['perplexity'], 1)}"])
    rows.append(["LAM codebook used / perplexity",
                 f"{cb['lam']['used']}/{cb['lam']['num_codes']} / {_f(cb['lam']['perplexity'], 2)}"])
    add(_md_table(["metric", "value"], rows))
    add("")

    add("## Tokenizer reconstruction\n")
    add(f"Every frame of the {s['num_clips']} real clips is encoded and decoded by the tokenizer; PSNR "
        f"{_f(rec['psnr'])} dB (std {_f(rec['psnr_std'])}), SSIM {_f(rec['ssim'], 3)} (std {_f(rec['ssim_std'], 3)}), "
        f"averaged over {rec['frames']} frames. This bounds what the dynamics model can reach.\n")

    add("## Generation quality\n")
    add(f"From the first {p} real frame(s) of each clip, the dynamics model generates frames t = {p + 1}..{hz} "
        "with the actions the latent action model infers from the real clip; each generated frame is compared "
        "with the real frame t. The same rollout with latent actions drawn uniformly at random is shown for "
        "comparison (it shares the sampling seed).\n")
    add("![PSNR per step](psnr_per_step.png)\n")
    rr = []
    for t in g["t"]:
        i = t - 1
        tag = " (prompt)" if t <= p else (" **←**" if t in (4, 16) else "")
        still = g.get("still_prompt", {}).get("psnr")
        rr.append([f"{t}{tag}", _f(g["psnr"]["per_step"][i]), _f(g["ssim"]["per_step"][i], 3),
                   _f(g["random_actions"]["psnr"]["per_step"][i]), _f(g["random_actions"]["ssim"]["per_step"][i], 3),
                   _f(still["per_step"][i]) if still else "-"])
    add(_md_table(["t", "PSNR inferred (dB)", "SSIM inferred", "PSNR random (dB)", "SSIM random",
                   "PSNR prompt held still (dB)"], rr))
    add(f"\nAverages over generated frames: PSNR {_f(g['psnr']['mean'])} dB (random actions "
        f"{_f(g['random_actions']['psnr']['mean'])}), SSIM {_f(g['ssim']['mean'], 3)} (random "
        f"{_f(g['random_actions']['ssim']['mean'], 3)}). Prompt rows compare the rollout's first frame (the "
        f"tokenizer reconstruction of the real prompt) and are excluded from the averages. The last column is "
        f"a world that does nothing (the prompt's reconstruction held still): where the real view barely moves "
        f"it scores high, so PSNR is read beside it and beside FVD.\n")
    add("Rollouts (left to right: real, generated with inferred actions, generated with random actions; "
        "green border = prompt):\n")
    add("![rollouts](rollouts.gif)\n")
    add("![rollout strip](rollouts.png)\n")

    add("## Controllability: ΔtPSNR\n")
    if d:
        add(f"ΔtPSNR = PSNR(x_t, x̂_t) − PSNR(x_t, x̂'_t) at t = {d['t']} (paper section 3): x_t is the real "
            f"frame, x̂_t the frame generated with LAM-inferred actions, x̂'_t the frame generated with latent actions "
            f"drawn uniformly from the {s['num_actions']}-action codebook. Frames are 1-indexed with {p} prompt "
            f"frame(s), so t = {d['t']} is {d['generated_steps_at_t']} generated steps after the prompt. Both "
            "rollouts of a clip use the same sampling seed.\n")
        add(f"**ΔtPSNR = {_f(d['value'])} dB** (± {_f(d['sem'])} s.e.m., std {_f(d['std'])}, {d['clips']} clips; "
            f"PSNR {_f(d['psnr_inferred'])} dB with inferred vs {_f(d['psnr_random'])} dB with random actions). "
            "Higher means the model follows its actions more; about 0 means the actions are ignored.\n")
        add("ΔtPSNR per step: " + ", ".join(f"t={t}: {_f(v)}" for t, v in zip(g["t"], d["per_step"]) if t > p) + "\n")
    else:
        add("Not computed (see warnings).\n")

    add("## FVD\n")
    if fv.get("value") is not None:
        add(f"**FVD = {_f(fv['value'], 1)}** between {fv['clips']} real clips and {fv['clips']} generated clips of "
            f"{fv['clip_length']} frames ({fv['clip_contents']}). {fv['network']}, {fv['feature']} features "
            f"({fv['feature_dim']}-d, as the reference FVD implementation), frames resized to "
            f"{fv['resolution']}x{fv['resolution']} ({fv['resize']}).\n")
        add(f"> **Caveat:** {fv['note']}\n")
    else:
        add(f"Skipped: {fv.get('skipped')}.\n")

    add("## Latent actions\n")
    if "nmi" in la:
        add(f"Inferred latent actions of {la['transitions']} real transitions vs the recorded ground-truth actions: "
            f"**NMI {_f(la['nmi'], 3)}**, **purity {_f(la['purity'], 3)}** (chance level, one cluster: "
            f"{_f(la['purity_chance'], 3)}).\n")
        conf = np.asarray(la["confusion"])
        used_cols = [j for j in range(conf.shape[1]) if conf[:, j].sum() > 0] or list(range(conf.shape[1]))
        names = action_names or [str(i) for i in range(conf.shape[0])]
        header = ["latent \\ true"] + [str(j) for j in used_cols] + ["total"]
        rows = [[f"{i}" + (f" ({names[i]})" if i < len(names) and names[i] != str(i) else "")]
                + [int(conf[i, j]) for j in used_cols] + [int(conf[i].sum())] for i in range(conf.shape[0])]
        rows.append(["total"] + [int(conf[:, j].sum()) for j in used_cols] + [int(conf.sum())])
        add("Confusion table (rows: latent actions, columns: ground-truth actions that occur):\n")
        add(_md_table(header, rows))
        add("")
    else:
        add(f"Not computed: {la.get('skipped')}.\n")
    add("Latent-action grid (each row repeats one latent action from the same real prompt):\n")
    add("![latent-action grid](action_grid.png)\n")
    gm = metrics.get("grid_motion")
    if gm:
        add(f"What each action does to the view over the grid's {gm['steps']} steps (from the last prompt frame on, "
            f"the sum of whole-pixel shifts from step to step; +x right, +y down). An action moves the view when "
            f">= {gm['min_prompts']} of {gm['prompts']} prompts move >= {gm['min_pixels']} px that way with the "
            f"scene kept (every step aligned at >= {_f(gm['keep_db'], 0)} dB, the picture neither emptied nor "
            f"dissolved; genieworld.eval.motion.scene_kept):\n")
        add(_md_table(["action", "mean dx", "mean dy", "scene kept", "worst step aligned PSNR", "moves the view"], [
            [name, _f(a["mean_dx"], 1), _f(a["mean_dy"], 1), f"{a['kept_prompts']}/{gm['prompts']}",
             _f(a["mean_aligned_psnr"], 1), " ".join(d for d in (a["horizontal"], a["vertical"]) if d) or "-"]
            for name, a in gm["actions"].items()]))
        add(f"\nDirections some action moves the view: {', '.join(gm['distinct_directions']) or 'none'}.\n")

    add("## Codebook usage\n")
    add(_md_table(["codebook", "codes", "used", "fraction", "perplexity", "from"], [
        ["tokenizer", cb["tokenizer"]["num_codes"], cb["tokenizer"]["used"], _f(cb["tokenizer"]["fraction"], 3),
         _f(cb["tokenizer"]["perplexity"], 1), f"{cb['tokenizer']['tokens']} tokens of the real clips"],
        ["latent actions", cb["lam"]["num_codes"], cb["lam"]["used"], _f(cb["lam"]["fraction"], 3),
         _f(cb["lam"]["perplexity"], 2), f"{cb['lam']['transitions']} inferred actions"],
    ]))
    add("\nPerplexity = exp(entropy of the code histogram): the number of equally used codes it corresponds to.\n")

    ov = metrics["data_overlap"]
    add("## Train/test overlap\n")
    if ov.get("note"):
        add(ov["note"] + ".\n")
    for e in ov.get("details", []):
        if e.get("same_store"):
            add(f"- `{e['train_data']}`: **the evaluation data is this training store**")
        elif e.get("checked"):
            add(f"- `{e['train_data']}`: {e['shared_levels']} shared level(s)")
        else:
            add(f"- `{e['train_data']}`: not checked ({e.get('reason')})")
    add("")
    add("## Definitions\n")
    add(f"- Frames are 1-indexed: t = 1..{hz}; {_prompt_text(p)} (real frames, shown as the tokenizer "
        "reconstruction in the rollouts).")
    add(f"- PSNR: {s['psnr']}; SSIM: {s['ssim']}.")
    add("- Per-step values are means over clips; averages are over clips and generated frames.")
    add("- NMI: mutual information / arithmetic mean of the two entropies. Purity: fraction of transitions whose "
        "true action is the most frequent one of their latent action.")
    add("- All numbers and settings are in `metrics.json`.")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------
# Folder
# ----------------------------------------------------------------------------


def write_report(result: EvalResult, out_dir: str | Path, max_clips: int = MAX_CLIPS) -> dict[str, Path]:
    """Write every file of :data:`FILES` into ``out_dir`` (created); returns name -> path."""
    from genieworld import owned

    out = owned.claim(out_dir, "eval-report", "the report folder")
    m = result.metrics
    p = m["settings"]["prompt_frames"]
    k = min(max_clips, len(result.real))
    paths = {name: out / name for name in FILES}
    m = dict(m)
    m["files"] = {name: name for name in FILES}
    atomic_write_text(paths["metrics.json"], json.dumps(m, indent=2, allow_nan=True) + "\n")

    real, gen, rnd = result.real[:k], result.generated[:k], result.generated_random[:k]
    atomic_write_bytes(paths["rollouts.png"], _png_bytes(rollout_strip(real, gen, rnd, p)))
    frames = rollout_gif_frames(real, gen, rnd, p)
    import io

    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=250, loop=0)
    atomic_write_bytes(paths["rollouts.gif"], buf.getvalue())
    if result.grid is not None:
        grid_img = action_grid_image(result.grid, result.action_names, p)
    else:
        from PIL import Image, ImageDraw

        grid_img = Image.new("RGB", (320, 40), BG)
        ImageDraw.Draw(grid_img).text((4, 12), "latent-action grid not rendered", fill=(0, 0, 0), font=_font())
    atomic_write_bytes(paths["action_grid.png"], _png_bytes(grid_img))
    atomic_write_bytes(paths["psnr_per_step.png"], psnr_plot_png(m))
    atomic_write_text(paths["report.md"], render_markdown(m, result.action_names))
    return paths
