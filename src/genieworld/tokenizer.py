"""Video tokenizer: an ST-ViViT VQ-VAE (paper section 2.1).

    video (B, T, H, W, C) in [0, 1]
      -> patchify (P x P patches)           tokens (B, T, N, P*P*C), N = (H/P)*(W/P)
      -> linear embed + ST-transformer      (B, T, N, d_enc)   causal in time
      -> linear to code_dim + VQ            indices (B, T, N), 1024 codes of dim 32 by default
      -> linear embed + ST-transformer      (B, T, N, d_dec)   causal in time
      -> linear to P*P*C + sigmoid + unpatchify   video (B, T, H, W, C) in [0, 1]

Both transformers are causal over frames, so the codes of frame t depend only on
frames 1..t, and decoding frame t needs only the codes of frames 1..t: during play
:meth:`VideoTokenizer.decode_step` decodes just the newest frame with a key/value cache.

Loss: mean squared reconstruction error + the VQ codebook/commitment loss (the
paper states only "a standard VQ-VAE objective").
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from genieworld.config import TokenizerConfig
from genieworld.nn.quantizer import VectorQuantizer
from genieworld.nn.st_transformer import (STTransformer, TemporalKVCache, compile_frame_fn, init_weights,
                                          set_math_attention)


def patchify(video_bthwc: torch.Tensor, p: int) -> torch.Tensor:
    return rearrange(video_bthwc, "b t (h p1) (w p2) c -> b t (h w) (p1 p2 c)", p1=p, p2=p)


def unpatchify(patches_btnd: torch.Tensor, p: int, h: int, w: int, c: int) -> torch.Tensor:
    return rearrange(patches_btnd, "b t (h w) (p1 p2 c) -> b t (h p1) (w p2) c", h=h // p, w=w // p, p1=p, p2=p, c=c)


def check_video_shape(video: torch.Tensor, size: int, channels: int, who: str = "expected video") -> None:
    """Raise a ValueError naming the expected (B, T, size, size, channels) layout."""
    if video.ndim != 5 or tuple(video.shape[2:]) != (size, size, channels):
        raise ValueError(f"{who} of shape (B, T, {size}, {size}, {channels}), got {tuple(video.shape)}")


def to_float_video(video: torch.Tensor) -> torch.Tensor:
    """uint8 [0,255] or float [0,1] (B, T, H, W, C) -> float32 [0,1]."""
    if video.dtype == torch.uint8:
        return video.float() / 255.0
    return video.float()


class VideoTokenizer(nn.Module):
    def __init__(self, cfg: TokenizerConfig):
        super().__init__()
        if cfg.image_size % cfg.patch_size:
            raise ValueError(f"image_size {cfg.image_size} is not a multiple of patch_size {cfg.patch_size}")
        self.cfg = cfg
        n = cfg.tokens_per_frame
        patch_dim = cfg.patch_size**2 * cfg.channels
        self.enc_in = nn.Linear(patch_dim, cfg.encoder.d_model)
        self.encoder = STTransformer(cfg.encoder, n, cfg.max_frames)
        self.enc_out = nn.Linear(cfg.encoder.d_model, cfg.vq.code_dim)
        self.vq = VectorQuantizer(cfg.vq)
        self.dec_in = nn.Linear(cfg.vq.code_dim, cfg.decoder.d_model)
        self.decoder = STTransformer(cfg.decoder, n, cfg.max_frames)
        self.dec_out = nn.Linear(cfg.decoder.d_model, patch_dim)
        init_weights(self)  # linears and embeddings only: the VQ codebook keeps its own init

    # ------------------------------------------------------------------ shapes
    @property
    def num_codes(self) -> int:
        return self.cfg.vq.num_codes

    def _check_video(self, video: torch.Tensor) -> None:
        check_video_shape(video, self.cfg.image_size, self.cfg.channels)

    # ------------------------------------------------------------------ encoder
    def encode_latents(self, video_bthwc: torch.Tensor) -> torch.Tensor:
        """Continuous pre-quantisation latents (B, T, N, code_dim)."""
        self._check_video(video_bthwc)
        # [0,1] pixels are centred to [-1,1]: un-centred inputs give every patch embedding one shared
        # dominant direction, which makes all encoder outputs near-parallel and collapses the codebook.
        x = patchify(to_float_video(video_bthwc) * 2.0 - 1.0, self.cfg.patch_size)
        return self.enc_out(self.encoder(self.enc_in(x)))

    @torch.no_grad()
    def encode(self, video_bthwc: torch.Tensor) -> torch.Tensor:
        """Token indices (B, T, N) of a video (uint8 or float in [0,1])."""
        z = self.encode_latents(video_bthwc)
        return self.vq.nearest(self._norm(z).reshape(-1, z.shape[-1]).float()).reshape(z.shape[:-1])

    def _norm(self, z):
        return F.normalize(z, dim=-1) if self.cfg.vq.l2_normalize else z

    # ------------------------------------------------------------------ decoder
    def decode_latents(self, zq_btnd: torch.Tensor) -> torch.Tensor:
        c = self.cfg
        y = self.dec_out(self.decoder(self.dec_in(zq_btnd.to(self.dec_in.weight.dtype))))
        return unpatchify(torch.sigmoid(y.float()), c.patch_size, c.image_size, c.image_size, c.channels)

    @torch.no_grad()
    def decode(self, indices_btn: torch.Tensor) -> torch.Tensor:
        """Video (B, T, H, W, C) float in [0,1] from token indices (B, T, N)."""
        if indices_btn.ndim != 3 or indices_btn.shape[-1] != self.cfg.tokens_per_frame:
            raise ValueError(f"expected indices (B, T, {self.cfg.tokens_per_frame}), got {tuple(indices_btn.shape)}")
        return self.decode_latents(self.vq.lookup(indices_btn))

    def new_decode_cache(self, batch: int) -> TemporalKVCache:
        return self.decoder.new_cache(batch)

    @property
    def decode_compiled(self) -> bool:
        return "_compiled_decode" in self.__dict__

    def compile_decode_step(self) -> None:
        """``torch.compile`` :meth:`decode_step` (inference only). The first frames after this compile it."""
        set_math_attention(self.decoder)
        self.__dict__["_compiled_decode"] = compile_frame_fn(self._decode_core)

    @torch.no_grad()
    def decode_step(self, indices_bn: torch.Tensor, cache: TemporalKVCache) -> torch.Tensor:
        """Decode ONE new frame (B, N) -> (B, H, W, C) using the decoder's temporal cache."""
        out = (self.__dict__.get("_compiled_decode") or self._decode_core)(indices_bn, cache)
        cache.advance()
        return out

    def _decode_core(self, indices_bn: torch.Tensor, cache: TemporalKVCache) -> torch.Tensor:
        c = self.cfg
        x = self.dec_in(self.vq.lookup(indices_bn).to(self.dec_in.weight.dtype)[:, None])
        y = self.dec_out(self.decoder.step_layers(x, cache))
        return unpatchify(torch.sigmoid(y.float()), c.patch_size, c.image_size, c.image_size, c.channels)[:, 0]

    # ------------------------------------------------------------------ training
    def forward(self, video_bthwc: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """Reconstruct ``video``; returns (recon in [0,1], info with ``loss``, ``recon_loss``, VQ stats)."""
        target = to_float_video(video_bthwc)
        z = self.encode_latents(video_bthwc)
        zq, idx, vq_info = self.vq(z)
        recon = self.decode_latents(zq)
        recon_loss = F.mse_loss(recon, target)
        info = {
            "loss": recon_loss + vq_info["loss"],
            "recon_loss": recon_loss.detach(),
            "vq_loss": vq_info["loss"].detach(),
            "perplexity": vq_info["perplexity"],
            "codes_used": vq_info["codes_used"],
            "indices": idx.detach(),
        }
        return recon, info
