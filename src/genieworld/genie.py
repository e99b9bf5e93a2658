"""The model directory: one folder per component, safetensors weights + JSON config.

    MODEL/
      genie.json                   {"format": "genieworld-model", "format_version": 1, "num_actions": K,
                                    "sampling": {SamplingConfig}, "genieworld_version": ..., "provenance": {...}}
      tokenizer/model.safetensors  tokenizer/config.json   (TokenizerConfig)
      lam/model.safetensors        lam/config.json         (LAMConfig; the play loop needs only its codebook)
      dynamics/model.safetensors   dynamics/config.json    (DynamicsConfig)
      actions.json                 optional: {"names": ["left", "right", ...]} (one per latent action)

:class:`Genie` (``from_pretrained`` / ``save_pretrained``) bundles the three and
checks that they fit together (vocabulary, tokens per frame, resolution, action count
and size), failing with a :class:`ModelDirError` that names the mismatch, e.g.
"dynamics expects 512 codes but the tokenizer has 1024".

    genie = Genie.from_pretrained("runs/world/model")
    world = genie.world("shot.png", seed=0)
    frame = world.step(3)                                   # (H, W, 3) uint8
    video = genie.rollout(prompt_bthwc_uint8, actions_ba)   # (B, T0 + A, H, W, 3) uint8
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from genieworld.config import from_dict, ConfigError
from genieworld.errors import UserError
from genieworld.weights import CheckpointError, check_weights_header, load_weights, save_weights
from genieworld.utils import atomic_write_text, read_json

FORMAT_VERSION = 1


class ModelDirError(UserError, ValueError):
    """A model directory is missing parts, one is damaged or out of bounds, or its parts do not fit together."""


def save_component(module: torch.nn.Module, cfg: Any, out_dir: Path) -> None:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "config.json", json.dumps(asdict(cfg), indent=2, sort_keys=True) + "\n")
    save_weights(module, out_dir / "model.safetensors")


def load_config(cls, directory: Path):
    path = Path(directory) / "config.json"
    if not path.exists():
        raise ModelDirError(f"{directory}: no config.json (is this a genieworld component folder?)")
    try:
        return from_dict(cls, read_json(path, ModelDirError), where=str(path))
    except ConfigError as e:
        raise ModelDirError(str(e)) from None


def load_component(cls_model, cls_cfg, directory: Path, device="cpu"):
    """Build ``cls_model(config)`` from ``directory/config.json`` and load its weights.

    The config is validated first (:func:`genieworld.config.from_dict`), then the model is built on
    the meta device (no memory) and compared with the weights file's header, so a config that does
    not fit its weights is refused before anything is allocated; the weights are then read and checked
    (dtype, finiteness) by :func:`genieworld.weights.load_weights`.
    """
    directory = Path(directory)
    cfg = load_config(cls_cfg, directory)
    weights = directory / "model.safetensors"
    try:
        try:
            with torch.device("meta"):
                skeleton = cls_model(cfg)
        except (RuntimeError, NotImplementedError):
            skeleton = None  # not buildable without memory: the full load below still checks everything
        if skeleton is not None:
            check_weights_header(weights, skeleton.state_dict())
            del skeleton
        model = cls_model(cfg)
        load_weights(model, weights)
    except CheckpointError as e:
        raise ModelDirError(str(e)) from None
    except ValueError as e:  # the model refused its config
        raise ModelDirError(f"{directory / 'config.json'}: {e}") from None
    return model.to(device).eval()


# ============================================================================= the Genie bundle
GENIE_JSON = "genie.json"
ACTIONS_JSON = "actions.json"
FORMAT_NAME = "genieworld-model"
PARTS = ("tokenizer", "lam", "dynamics")
_WORLD_OPTIONS = ("use_cache", "confidence_noise", "max_history")


def check_compatible(tok_cfg, lam_cfg, dyn_cfg, sampling=None, num_actions: int | None = None,
                     action_names: list | None = None) -> None:
    """Raise :class:`ModelDirError` naming the first way in which the parts do not fit together."""
    if dyn_cfg.num_codes != tok_cfg.vq.num_codes:
        raise ModelDirError(f"dynamics expects {dyn_cfg.num_codes} codes but the tokenizer has {tok_cfg.vq.num_codes}")
    if dyn_cfg.tokens_per_frame != tok_cfg.tokens_per_frame:
        raise ModelDirError(
            f"dynamics expects {dyn_cfg.tokens_per_frame} tokens per frame but the tokenizer makes "
            f"{tok_cfg.tokens_per_frame} ({tok_cfg.image_size}x{tok_cfg.image_size} images, patch {tok_cfg.patch_size})")
    if lam_cfg.image_size != tok_cfg.image_size:
        raise ModelDirError(f"the LAM expects {lam_cfg.image_size}x{lam_cfg.image_size} images but the tokenizer "
                            f"{tok_cfg.image_size}x{tok_cfg.image_size}")
    if lam_cfg.channels != tok_cfg.channels:
        raise ModelDirError(f"the LAM expects {lam_cfg.channels} channels but the tokenizer {tok_cfg.channels}")
    if lam_cfg.vq.code_dim != dyn_cfg.action_dim:
        raise ModelDirError(f"dynamics expects action vectors of size {dyn_cfg.action_dim} but the LAM's action codes "
                            f"have size {lam_cfg.vq.code_dim}")
    if num_actions is not None and int(num_actions) != lam_cfg.num_actions:
        raise ModelDirError(f"{GENIE_JSON} says {num_actions} actions but the LAM has {lam_cfg.num_actions} actions")
    if action_names is not None and len(action_names) != lam_cfg.num_actions:
        raise ModelDirError(f"{ACTIONS_JSON} names {len(action_names)} actions but the LAM has "
                            f"{lam_cfg.num_actions} actions")
    if sampling is not None and not 1 <= sampling.context_frames <= dyn_cfg.max_frames:
        raise ModelDirError(f"sampling context_frames {sampling.context_frames} must be in [1, {dyn_cfg.max_frames}] "
                            "(the dynamics max_frames)")


def _read_json(path: Path) -> dict:
    data = read_json(path, ModelDirError)
    if not isinstance(data, dict):
        raise ModelDirError(f"{path}: expected a JSON object")
    return data


def _check_meta(meta: dict, path: Path) -> None:
    """The fields of ``genie.json`` that are read, each of the type it must have."""
    if meta.get("format") != FORMAT_NAME:
        raise ModelDirError(f"{path}: format is {str(meta.get('format'))[:40]!r}, expected {FORMAT_NAME!r}")
    expect = {"format_version": int, "num_actions": int, "sampling": dict, "provenance": dict}
    for key, typ in expect.items():
        value = meta.get(key)
        if value is not None and (not isinstance(value, typ) or isinstance(value, bool)):
            raise ModelDirError(f"{path}: {key}={str(value)[:40]!r} must be {'an integer' if typ is int else 'an object'}")
    if not 0 <= meta.get("format_version", 0) <= 2**31:
        raise ModelDirError(f"{path}: format_version {meta['format_version']} is not a version number")


def _read_action_names(path: Path, num_actions: int) -> list[str] | None:
    """Names from ``actions.json``, validated like every other reader (:func:`~genieworld.actions.check_action_names`)."""
    from genieworld.action_names import check_action_names

    if not path.exists():
        return None
    try:
        return check_action_names(_read_json(path).get("names"), num_actions)
    except ValueError as e:
        raise ModelDirError(f"{path}: {e} (expected {{\"names\": [\"...\", ...]}}, one per latent action; "
                            "`genie actions name` writes it)") from None


def resolve_model_dir(path) -> Path:
    """``path`` itself when it holds genie.json, else ``path/model`` (a training RUN folder)."""
    p = Path(path)
    if not p.exists():
        raise ModelDirError(f"{p}: no such model directory")
    if (p / GENIE_JSON).is_file():
        return p
    if (p / "model" / GENIE_JSON).is_file():
        return p / "model"
    raise ModelDirError(f"{p}: not a genieworld model directory (no {GENIE_JSON}); "
                        "`genie train dynamics` writes one to RUN/model when it finishes")


def save_model_dir(path, tokenizer, lam, dynamics, sampling, action_names: list[str] | None = None,
                   provenance: dict | None = None) -> Path:
    """Write a model directory from the three parts (used by :meth:`Genie.save_pretrained` and by training's
    export, which must not freeze its modules by wrapping them in a :class:`Genie`)."""
    from genieworld import __version__

    check_compatible(tokenizer.cfg, lam.cfg, dynamics.cfg, sampling, action_names=action_names)
    from genieworld import owned

    out = owned.claim(path, "model", "the model directory")
    for name, part in (("tokenizer", tokenizer), ("lam", lam), ("dynamics", dynamics)):
        save_component(part, part.cfg, owned.claim(out / name, "component"))
    if action_names is not None:
        atomic_write_text(out / ACTIONS_JSON, json.dumps({"names": list(action_names)}, indent=2) + "\n")
    elif (out / ACTIONS_JSON).exists():
        (out / ACTIONS_JSON).unlink()
    meta = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "genieworld_version": __version__,
            "num_actions": lam.num_actions, "sampling": asdict(sampling), "provenance": dict(provenance or {})}
    atomic_write_text(out / GENIE_JSON, json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return out


class Genie(torch.nn.Module):
    """Tokenizer + latent action model + dynamics model + sampling defaults: a playable world model.

    An inference bundle: the parts are put in eval mode and frozen (requires_grad False).
    """

    def __init__(self, tokenizer, lam, dynamics, sampling=None, action_names: list[str] | None = None,
                 provenance: dict | None = None):
        super().__init__()
        from genieworld.config import SamplingConfig

        sampling = sampling or SamplingConfig(context_frames=dynamics.cfg.max_frames)
        check_compatible(tokenizer.cfg, lam.cfg, dynamics.cfg, sampling, action_names=action_names)
        self.tokenizer, self.lam, self.dynamics = tokenizer, lam, dynamics
        self.sampling = sampling
        self._action_names = list(action_names) if action_names is not None else None
        self.provenance = dict(provenance or {})
        self.play_precision = "fp32"
        for p in self.parameters():
            p.requires_grad_(False)
        self.eval()

    # ------------------------------------------------------------------ properties
    @property
    def num_actions(self) -> int:
        return self.lam.num_actions

    @property
    def image_size(self) -> int:
        return self.tokenizer.cfg.image_size

    @property
    def action_names(self) -> list[str]:
        """Names from actions.json when present, else "0", "1", ..."""
        if self._action_names is not None:
            return list(self._action_names)
        return [str(i) for i in range(self.num_actions)]

    @action_names.setter
    def action_names(self, names: list[str] | None) -> None:
        if names is not None:
            from genieworld.action_names import check_action_names

            names = check_action_names(list(names), self.num_actions)
        self._action_names = names

    @property
    def device(self) -> torch.device:
        return self.dynamics.head.weight.device

    # ------------------------------------------------------------------ directory format
    def save_pretrained(self, path) -> Path:
        """Write the model directory (layout in this module's docstring); returns its path."""
        return save_model_dir(path, self.tokenizer, self.lam, self.dynamics, self.sampling, self._action_names,
                              self.provenance)

    @classmethod
    def from_pretrained(cls, path, device="cpu") -> "Genie":
        """Load a model directory (or a training RUN folder holding RUN/model) and check its parts fit."""
        from genieworld.config import DynamicsConfig, LAMConfig, SamplingConfig, TokenizerConfig
        from genieworld.dynamics import DynamicsModel
        from genieworld.lam import build_lam
        from genieworld.tokenizer import VideoTokenizer

        root = resolve_model_dir(path)
        meta = _read_json(root / GENIE_JSON)
        _check_meta(meta, root / GENIE_JSON)
        if int(meta.get("format_version", 0)) > FORMAT_VERSION:
            raise ModelDirError(f"{root}: format_version {meta['format_version']} is newer than this genieworld "
                                f"understands ({FORMAT_VERSION}); upgrade genieworld")
        try:
            sampling = from_dict(SamplingConfig, meta.get("sampling", {}), where=f"{root / GENIE_JSON}: sampling")
        except ConfigError as e:
            raise ModelDirError(str(e)) from None
        classes = {"tokenizer": (VideoTokenizer, TokenizerConfig), "lam": (build_lam, LAMConfig),
                   "dynamics": (DynamicsModel, DynamicsConfig)}
        cfgs = {name: load_config(cfg_cls, root / name) for name, (_, cfg_cls) in classes.items()}
        names = _read_action_names(root / ACTIONS_JSON, cfgs["lam"].num_actions)
        try:
            check_compatible(cfgs["tokenizer"], cfgs["lam"], cfgs["dynamics"], sampling, meta.get("num_actions"), names)
        except ModelDirError as e:
            raise ModelDirError(f"{root}: {e}") from None
        parts = {name: load_component(m_cls, c_cls, root / name, device) for name, (m_cls, c_cls) in classes.items()}
        genie = cls(parts["tokenizer"], parts["lam"], parts["dynamics"], sampling, names, meta.get("provenance"))
        return genie.to(device)

    # ------------------------------------------------------------------ prompts
    def prepare_prompt(self, prompt) -> torch.Tensor:
        """Prompt frames as uint8 (T, H, W, 3) at the model resolution.

        Accepts a file path or bytes (any image Pillow reads; GIF = first frame), a PIL image,
        a numpy/torch uint8 image (H, W, 3) or frames (T, H, W, 3) (float in [0, 1] is scaled),
        resized with :func:`genieworld.data.video.prepare_frame` (the ingestion policy).
        """
        import os

        import numpy as np
        from PIL import Image

        from genieworld.data.video import load_image, prepare_frame

        size = self.image_size
        if isinstance(prompt, (str, os.PathLike, bytes, bytearray, memoryview)):
            frames = [load_image(prompt)]
        elif isinstance(prompt, Image.Image):
            frames = [prompt]
        else:
            if torch.is_tensor(prompt):
                prompt = prompt.detach().cpu().numpy()
            if not isinstance(prompt, np.ndarray):
                raise ValueError(f"a prompt must be an image path, bytes, a PIL image or an array, "
                                 f"got {type(prompt).__name__}")
            arr = prompt
            if arr.dtype != np.uint8:
                if not np.issubdtype(arr.dtype, np.floating):
                    raise ValueError(f"prompt arrays must be uint8 (or float in [0, 1]), got {arr.dtype}")
                arr = (np.clip(arr, 0.0, 1.0) * 255.0).round().astype(np.uint8)
            if arr.ndim == 3 and arr.shape[-1] in (1, 3, 4):
                frames = [arr]
            elif arr.ndim == 4 and arr.shape[-1] in (1, 3, 4) and arr.shape[0] >= 1:
                frames = list(arr)
            else:
                raise ValueError(f"a prompt array must be (H, W, 3) or (T, H, W, 3), got shape {arr.shape}")
        out = np.stack([prepare_frame(f, size) for f in frames])
        return torch.from_numpy(out).to(self.device)

    def encode_prompt(self, prompt) -> torch.Tensor:
        """Token indices (1, T, N) of a prompt (see :meth:`prepare_prompt` for what is accepted)."""
        return self.tokenizer.encode(self.prepare_prompt(prompt)[None])

    def _check_video(self, frames) -> torch.Tensor:
        from genieworld.tokenizer import check_video_shape

        frames = torch.as_tensor(frames, device=self.device)
        check_video_shape(frames, self.image_size, 3, who="expected frames")
        if frames.dtype != torch.uint8:
            raise ValueError(f"expected uint8 frames, got {frames.dtype}")
        return frames

    # ------------------------------------------------------------------ inference
    def _sampling_with(self, overrides: dict):
        from dataclasses import fields, replace

        known = {f.name for f in fields(self.sampling)}
        bad = sorted(set(overrides) - known - set(_WORLD_OPTIONS))
        if bad:
            raise TypeError(f"unknown sampling option(s) {bad}; known: {sorted(known) + list(_WORLD_OPTIONS)}")
        world_kw = {k: overrides[k] for k in _WORLD_OPTIONS if k in overrides}
        smp = replace(self.sampling, **{k: v for k, v in overrides.items() if k in known and v is not None})
        if smp != self.sampling:  # overrides obey the same bounds as genie.json (ConfigError, a ValueError)
            from genieworld.config import validate_config

            validate_config(smp, "sampling")
        return smp, world_kw

    #: what :meth:`set_play_precision` accepts
    PLAY_PRECISIONS = ("fp32", "bf16")

    def set_play_precision(self, precision: str) -> "Genie":
        """Run the per-frame path of play (the dynamics and the tokenizer's decoder) in ``"fp32"`` or ``"bf16"``
        weights; prompt encoding and the LAM stay fp32.  bf16 needs a CPU with native bf16 (avx512_bf16 or
        AMX) or a GPU: :func:`genieworld.utils.bf16_supported`.  Returns self."""
        if precision not in self.PLAY_PRECISIONS:
            raise ValueError(f"play precision must be one of {self.PLAY_PRECISIONS}, got {precision!r}")
        dt = torch.bfloat16 if precision == "bf16" else torch.float32
        for part in (self.dynamics, self.tokenizer.dec_in, self.tokenizer.decoder, self.tokenizer.dec_out):
            part.to(dt)
        self.play_precision = precision
        return self

    @property
    def play_compiled(self) -> bool:
        """True once :meth:`compile_play` ran."""
        return self.dynamics.step_compiled and self.tokenizer.decode_compiled

    def compile_play(self) -> "Genie":
        """``torch.compile`` the per-frame path of play: the dynamics' cached step and the tokenizer's cached
        decode (:meth:`~genieworld.dynamics.DynamicsModel.compile_step`). The eager path stays the reference:
        the compiled one gives the same tokens in fp32 (``tests/test_compiled_play.py``). Compiling happens
        on the first frames after this (about a minute on 2 CPU cores; later starts reuse inductor's cache
        on disk). Call after :meth:`set_play_precision`. Returns self."""
        self.dynamics.compile_step()
        self.tokenizer.compile_decode_step()
        return self

    def play_overrides(self) -> dict:
        """Sampling overrides for interactive play: ``sampling.play_maskgit_steps`` and
        ``sampling.play_temperature`` where the model sets them."""
        steps = getattr(self.sampling, "play_maskgit_steps", None)
        temperature = getattr(self.sampling, "play_temperature", None)
        return {**({"maskgit_steps": steps} if steps else {}),
                **({"temperature": temperature} if temperature is not None else {})}

    def world(self, prompt, seed: int | None = None, **sampling_overrides):
        """An interactive :class:`~genieworld.sampling.World` started from ``prompt``.

        ``sampling_overrides``: maskgit_steps, temperature, schedule, order, context_frames, and the
        World options use_cache (default True), confidence_noise (default 0) and max_history
        (default None: keep every frame; set it for endless play sessions).
        """
        from genieworld.sampling import World

        smp, world_kw = self._sampling_with(sampling_overrides)
        return World(self, self.prepare_prompt(prompt)[None], seed=seed, sampling=smp, **world_kw)

    @torch.no_grad()
    def infer_actions(self, frames_bthwc_uint8) -> torch.Tensor:
        """Latent action ids (B, T-1) of a video: the LAM's reading of each transition x_t -> x_{t+1}."""
        return self.lam.encode_actions(self._check_video(frames_bthwc_uint8))[0]

    @torch.no_grad()
    def rollout(self, prompt_frames, actions, seed: int = 0, **sampling_overrides) -> torch.Tensor:
        """Batched generation in token space: uint8 (B, T0 + A, H, W, 3) on the CPU.

        ``prompt_frames`` uint8 (B, T0, H, W, 3) at the model resolution; ``actions`` long (B, A)
        in [0, num_actions).  Actions between prompt frames are inferred by the LAM.  The first
        T0 output frames are the tokenizer's reconstructions of the prompt, then one frame per action
        (each decoded once, with the tokenizer decoder's KV cache).
        """
        from genieworld.sampling import World

        frames = self._check_video(prompt_frames)
        raw = torch.as_tensor(actions)
        if raw.is_floating_point() or raw.is_complex() or raw.dtype == torch.bool:
            raise ValueError(f"actions must be integer ids, got {raw.dtype} (a float action would be truncated)")
        actions = raw.to(device=self.device, dtype=torch.long)
        if actions.ndim != 2 or actions.shape[0] != frames.shape[0]:
            raise ValueError(f"expected actions (B={frames.shape[0]}, A), got {tuple(actions.shape)}")
        if actions.numel() and (int(actions.min()) < 0 or int(actions.max()) >= self.num_actions):
            raise ValueError(f"actions must be in [0, {self.num_actions}), got values in "
                             f"[{int(actions.min())}, {int(actions.max())}]")
        smp, world_kw = self._sampling_with(sampling_overrides)
        w = World(self, frames, seed=seed, sampling=smp, **world_kw)
        for k in range(actions.shape[1]):
            w.step_batch(actions[:, k])
        return torch.from_numpy(w.video())
