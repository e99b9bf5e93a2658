"""Print a README results row (Markdown) from a recipe folder: `python scripts/results_table.py runs/coinrun-cpu`.

Reads OUT/results.json (written by `genie recipe coinrun`) and OUT/report/metrics.json (`genie eval`).
"""

import json
import sys
from pathlib import Path


def fmt(x, nd=2):
    return "n/a" if x is None else f"{x:.{nd}f}"


def main(out: str) -> None:
    out = Path(out)
    r = json.loads((out / "results.json").read_text())
    m = r["metrics"]
    s = r["settings"]
    secs = r["seconds_per_stage"]
    ts = r.get("training_seconds") or {}
    train_h = ((ts.get("tokenizer") or secs.get("tokenizer", 0)) + (ts.get("lam") or secs.get("lam", 0) or 0)
               + (ts.get("world") or secs.get("dynamics", 0))) / 3600
    p = r["parameters"]
    lat = m.get("latent_actions") or {}
    cb = m.get("codebook_usage", {})
    row = {
        "preset": r["preset"],
        "data": f"{r['data']['train_frames']:,} frames, levels {r['data']['train_levels'][0]}-{r['data']['train_levels'][1] - 1}",
        "params (tok/LAM/dyn)": f"{p['tokenizer'] / 1e6:.1f}M / {p['lam'] / 1e6:.1f}M / {p['dynamics'] / 1e6:.1f}M",
        "steps (tok/LAM/dyn)": f"{s['tokenizer_steps']} / {s.get('lam_steps') or 'co-trained'} / {s['dynamics_steps']}",
        "train time": f"{train_h:.2f} h",
        "tokenizer PSNR / SSIM": f"{fmt(m['tokenizer_reconstruction']['psnr'])} / {fmt(m['tokenizer_reconstruction']['ssim'], 3)}",
        "gen PSNR t=4 / t=16": f"{fmt(m['generation']['psnr']['t4'])} / {fmt(m['generation']['psnr']['t16'])}",
        "gen SSIM t=4 / t=16": f"{fmt(m['generation']['ssim']['t4'], 3)} / {fmt(m['generation']['ssim']['t16'], 3)}",
        "ΔtPSNR (t=4)": f"{fmt(m['delta_t_psnr']['value'])} ± {fmt(m['delta_t_psnr'].get('sem'))}",
        "FVD": f"{fmt((m.get('fvd') or {}).get('value'), 1)} ({(m.get('fvd') or {}).get('clips', 0)} clips)",
        "LAM NMI / purity": f"{fmt(lat.get('nmi'), 3)} / {fmt(lat.get('purity'), 3)}",
        "codes used (tok / LAM)": f"{cb.get('tokenizer', {}).get('used')}/{cb.get('tokenizer', {}).get('num_codes')} / "
                                  f"{cb.get('lam', {}).get('used')}/{cb.get('lam', {}).get('num_codes')}",
    }
    print("| " + " | ".join(row) + " |")
    print("|" + "---|" * len(row))
    print("| " + " | ".join(row.values()) + " |")


if __name__ == "__main__":
    main(sys.argv[1])
