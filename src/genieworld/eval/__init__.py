"""Evaluation metrics: PSNR/SSIM/Delta_t PSNR, label metrics, FVD with a PyTorch I3D.

``genieworld.eval.fvd`` and ``genieworld.eval.i3d`` are imported lazily (on
first attribute access) so that ``python -m genieworld.eval.i3d`` does not find
the module pre-imported.  The FVD function itself is
``genieworld.eval.fvd.fvd`` (``genieworld.eval.fvd`` is the submodule).
"""

from __future__ import annotations

import importlib
from typing import Any

from .metrics import (
    PSNR_MAX_DB,
    codebook_usage,
    confusion_table,
    delta_t_psnr,
    nmi,
    psnr,
    purity,
    ssim,
)

_LAZY = {
    "i3d_features": ".fvd",
    "frechet_distance": ".fvd",
    "fetch_i3d_weights": ".i3d",
    "i3d_weights_path": ".i3d",
    "load_i3d": ".i3d",
    "InceptionI3d": ".i3d",
}

__all__ = [
    "PSNR_MAX_DB",
    "psnr",
    "ssim",
    "delta_t_psnr",
    "nmi",
    "purity",
    "confusion_table",
    "codebook_usage",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
