"""Video data for genieworld: an on-disk episode store, generators and a window loader.

    from genieworld.data.store import EpisodeStore, EpisodeWriter, StoreError
    from genieworld.data.loader import WindowLoader
    from genieworld.data.video import prepare_frame, load_image
    from genieworld.data.synthetic import make_synthetic_store
    from genieworld.data.coinrun import levels_of

Submodules are imported lazily so that ``import genieworld.data`` stays cheap
(procgen, gymnasium and PyAV are only loaded by the code that needs them).
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "EpisodeStore": "store", "EpisodeWriter": "store", "StoreError": "store",
    "WindowLoader": "loader",
    "prepare_frame": "video", "load_image": "video",
    "make_synthetic_store": "synthetic",
    "levels_of": "coinrun", "level_overlap": "coinrun", "generate_coinrun": "coinrun",
    "generate_atari": "atari", "generate_procgen": "procgen",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    mod = _EXPORTS.get(name)
    if mod is None:
        raise AttributeError(f"module 'genieworld.data' has no attribute {name!r}")
    return getattr(importlib.import_module(f"genieworld.data.{mod}"), name)
