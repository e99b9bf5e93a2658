"""Tiny configs, models and toy data shared by the LAM / dynamics / sampling / Genie tests.

Plain functions (import them: ``from fixtures_genie import tiny_genie``), so that other test
files can reuse them without pytest fixture plumbing.  Everything is small enough to run a
forward pass in milliseconds on one busy CPU core.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from genieworld.config import DynamicsConfig, LAMConfig, SamplingConfig, STConfig, TokenizerConfig, VQConfig


@pytest.fixture(autouse=False)
def one_thread():
    """Run a test with one torch thread: tiny ops on a busy 2-core box are many times slower with
    two spinning OpenMP threads.  Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def tiny_st(d_model: int = 32, layers: int = 1, qk_norm: bool = False) -> STConfig:
    return STConfig(num_layers=layers, d_model=d_model, num_heads=2, head_dim=d_model // 2, ffn_mult=2.0,
                    qk_norm=qk_norm)


def tiny_tokenizer_cfg(size: int = 16, patch: int = 4, codes: int = 32, max_frames: int = 8) -> TokenizerConfig:
    return TokenizerConfig(image_size=size, patch_size=patch, max_frames=max_frames, encoder=tiny_st(),
                           decoder=tiny_st(), vq=VQConfig(num_codes=codes, code_dim=8))


def tiny_lam_cfg(size: int = 16, patch: int = 4, actions: int = 4, code_dim: int = 8, max_frames: int = 8,
                 d_model: int = 32, layers: int = 1, context_mask_rate: float = 0.0,
                 latent_difference: bool = False, residual_decoder: bool = False) -> LAMConfig:
    return LAMConfig(image_size=size, patch_size=patch, max_frames=max_frames, encoder=tiny_st(d_model, layers),
                     decoder=tiny_st(d_model, layers),
                     vq=VQConfig(num_codes=actions, code_dim=code_dim, dead_code_steps=10),
                     context_mask_rate=context_mask_rate, latent_difference=latent_difference,
                     residual_decoder=residual_decoder)


def tiny_dyn_cfg(codes: int = 32, tokens: int = 16, action_dim: int = 8, max_frames: int = 8, injection: str = "add",
                 d_model: int = 32, layers: int = 2, warp: int = 0) -> DynamicsConfig:
    return DynamicsConfig(num_codes=codes, tokens_per_frame=tokens, action_dim=action_dim, max_frames=max_frames,
                          transformer=tiny_st(d_model, layers, qk_norm=True), action_injection=injection,
                          prev_frame_warp=warp)


def tiny_genie(seed: int = 0, injection: str = "add", actions: int = 4, context: int = 8, steps: int = 4,
               max_frames: int = 8, warp: int = 0):
    """A randomly initialised Genie on 16x16 frames (16 tokens per frame, 32 codes, 4 actions)."""
    from genieworld.dynamics import DynamicsModel
    from genieworld.genie import Genie
    from genieworld.lam import LatentActionModel
    from genieworld.tokenizer import VideoTokenizer

    torch.manual_seed(seed)
    tok = VideoTokenizer(tiny_tokenizer_cfg(max_frames=max_frames))
    lam = LatentActionModel(tiny_lam_cfg(actions=actions, max_frames=max_frames))
    dyn = DynamicsModel(tiny_dyn_cfg(injection=injection, max_frames=max_frames, warp=warp))
    return Genie(tok, lam, dyn, SamplingConfig(maskgit_steps=steps, temperature=1.0, context_frames=context))


PALETTE = np.array([[230, 40, 40], [40, 230, 40], [40, 40, 230], [230, 230, 40], [40, 230, 230], [230, 40, 230]],
                   dtype=np.uint8)


def colour_switch_clips(n: int, length: int, size: int = 16, num_actions: int = 4, seed: int = 0):
    """Toy "game" whose controls act at once: action a makes the next frame colour PALETTE[a].

    Each clip has its own fixed texture (darkening noise), so the frame content is not a
    function of the colour alone.  Returns (frames uint8 (n, length, size, size, 3),
    actions int64 (n, length - 1)).  The actions are what a LAM should rediscover.
    """
    rng = np.random.default_rng(seed)
    frames = np.empty((n, length, size, size, 3), dtype=np.uint8)
    actions = rng.integers(0, num_actions, size=(n, length - 1))
    for i in range(n):
        noise = rng.integers(0, 40, size=(size, size, 3))
        colours = [int(rng.integers(0, num_actions))] + actions[i].tolist()
        for t, c in enumerate(colours):
            frames[i, t] = np.clip(PALETTE[c].astype(np.int64) - noise, 0, 255)
    return frames, actions
