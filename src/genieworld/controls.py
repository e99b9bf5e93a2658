"""Gravity for play: a pressed key plays a fall when the recorded game says one comes next.

A LAM names what changed between two frames, and in a platformer much of that is the camera's
vertical motion: the shipped CoinRun model has latents that make the view rise (the jumps), hold
its height and fall (``genie actions name`` calls the last ones ``Fall``, see
:mod:`genieworld.actions`). Pressing a key picks one latent, so after a jump the view keeps its
height until the player presses Fall, while in the game itself one falls back whatever key is
held.

:class:`Gravity` restores that from the same labelled recordings that name the actions. For every
transition of the store it counts ``counts[k, a2, a1, a]``: the real action k the player held, the
latent actions a2, a1 of the two transitions before, and the latent a of this one
(:func:`count_sequences`). The latents before are read by what they do to the view (rise, hold or
fall, :func:`vertical_effect` of ``genie actions name``'s ``motion``), so that all the jumps share
their statistics. At play time a key whose latent is ``p`` plays, given the effects of the two
latents played before, a fall when the recordings show one after such two in more than half of the
transitions where the player held p's real action (the most frequent falling latent), and ``p``
otherwise. Pressing Stay after a jump then plays a fall, holding the jump key hops (rise, rise,
fall, fall, rise...), and on flat ground every key plays as pressed. A falling latent pressed
(the down arrow) plays as pressed, except where the recordings, whatever key was held, show a fall
in fewer than ``NO_FALL_SHARE`` of the transitions after such two (standing on the ground): there it
plays the latent that holds the height and moves the view least (``rest``: Stay), as the game has no
way down. A latent with no real action, or a context seen fewer than ``min_count`` times, plays as
pressed. Before the first step after a reset the history reads as holding the height (a prompt
frame shows the player standing, as a rule).

**A fall goes on until the player is back down** (closed loop): the table sees the two latents played
before, not where the world put the player, and a world model's falls can be shorter than its jumps (the
shipped model's falling latents move its view 7.1 px a step on average, its jumps 9.0; the 64-token model's
4.6-6.0 against 6.6-8.2), so that over many jumps the view climbs into the sky, where a sharp model loses
the level. :class:`Descent` reads from the frames (:func:`view_dy`, the view's vertical motion) how far
the view is above the height where it last stood, and whether the last step moved it down; while both
hold (down by at least :data:`FALLING_DY` px, still at least :data:`AIR_DY` px above), ``falling=True`` in
:meth:`Gravity.choose` makes any key that would not play a fall play the fall its real action shows most
in the recordings (:meth:`Gravity.fall_for`), as in the game, where one cannot jump or hover in the air.
A fall that does not move the view (landed on a ledge) ends it.

``MODEL/actions.json`` holds the table as ``sequence_counts`` (``K x A x A x A`` integers, written by
``genie actions name`` for models of at most :data:`MAX_ACTIONS` latent actions).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

__all__ = ["MAX_ACTIONS", "FALL_SHARE", "FALLING_DY", "AIR_DY", "RISE", "HOLD", "FALL", "vertical_effect",
           "count_sequences", "view_dy", "Descent", "Gravity", "Played"]

#: sequence_counts grows as K * A**3: written only for models of at most this many latent actions
MAX_ACTIONS = 16
MIN_COUNT = 10
#: a falling latent pressed where the recordings show a fall in fewer than this share of the transitions
#: (on the ground: CoinRun has no way down) plays Gravity.rest instead
NO_FALL_SHARE = 0.1
#: the view moved down by at least this many pixels in the last step: the player is falling (closed-loop gravity)
FALLING_DY = 2
#: ... and a fall goes on while the view is at least this many pixels above the height where it last stood
AIR_DY = 4


def count_sequences(latents: Sequence[np.ndarray], true: Sequence[np.ndarray], num_true: int,
                    num_latent: int) -> np.ndarray:
    """``counts[k, a2, a1, a]`` over episodes: ``latents[e]`` and ``true[e]`` are one episode's latent and real
    action per transition, in order (real actions < 0 or >= num_true, e.g. unrecorded, are skipped; the
    first two transitions of an episode have no history and are skipped too)."""
    counts = np.zeros((num_true, num_latent, num_latent, num_latent), dtype=np.int64)
    for lat, act in zip(latents, true):
        lat, act = np.asarray(lat, dtype=np.int64), np.asarray(act, dtype=np.int64)
        if lat.shape != act.shape:
            raise ValueError(f"latents {lat.shape} and real actions {act.shape} of an episode differ in length")
        if len(lat) < 3:
            continue
        a2, a1, a, k = lat[:-2], lat[1:-1], lat[2:], act[2:]
        ok = (k >= 0) & (k < num_true) & (np.minimum(np.minimum(a2, a1), a) >= 0) & (np.maximum(
            np.maximum(a2, a1), a) < num_latent)
        np.add.at(counts, (k[ok], a2[ok], a1[ok], a[ok]), 1)
    return counts


RISE, HOLD, FALL = 0, 1, 2
#: a latent falls (rises) when the view moves down (up) in at least this share of its transitions, and
#: more often than the other way (``genie actions name``'s ``motion``)
FALL_SHARE = 0.5


def vertical_effect(move: Any) -> int:
    """RISE, HOLD or FALL from one latent's view motion (a ``latent_statistics`` record); HOLD when unknown."""
    if not isinstance(move, dict):
        return HOLD
    down, up = move.get("down"), move.get("up")
    if not all(isinstance(v, (int, float)) and np.isfinite(v) for v in (down, up)):
        return HOLD
    if down >= FALL_SHARE and down > up:
        return FALL
    if up >= FALL_SHARE and up > down:
        return RISE
    return HOLD


def view_dy(prev_hwc: np.ndarray, new_hwc: np.ndarray, max_dx: int = 8, max_dy: int = 12) -> np.ndarray:
    """How far the view moved down (pixels, +down, a multiple of 2) from ``prev`` to ``new``: uint8 frames
    ``(..., H, W, 3)``. The shift of the grey picture, halved in size, that fits best (mean
    absolute difference over the middle, shifts of 2 px up to ``max_dx``, ``max_dy``): a coarse
    :func:`genieworld.eval.motion.frame_shifts`, about 0.3 ms a 64 x 64 frame (it agreed with it on
    whether the view fell by 2 px or more in 99 % of 1008 generated steps)."""
    a, b = np.asarray(prev_hwc), np.asarray(new_hwc)
    if a.shape != b.shape or a.ndim < 3 or a.shape[-1] != 3 or min(a.shape[-3:-1]) < 8:
        raise ValueError(f"need two (..., H, W, 3) frames of one shape, at least 8 x 8, got {a.shape} and {b.shape}")
    h, w = a.shape[-3] // 2 * 2, a.shape[-2] // 2 * 2  # an odd last row or column is left out
    a, b = a[..., :h, :w, :], b[..., :h, :w, :]

    def grey_half(x):
        g = x.astype(np.float32).mean(-1)
        return (g[..., 0::2, 0::2] + g[..., 1::2, 0::2] + g[..., 0::2, 1::2] + g[..., 1::2, 1::2]) / 4

    ga, gb = grey_half(a), grey_half(b)
    h, w = ga.shape[-2:]
    mx, my = min(max_dx // 2, w // 4), min(max_dy // 2, h // 4)
    m = max(mx, my)
    target = gb[..., m:h - m, m:w - m]
    # windows[..., y, x, i, j] = ga[..., y + i, x + j]: every shifted crop of ga at once
    win = np.lib.stride_tricks.sliding_window_view(ga, target.shape[-2:], axis=(-2, -1))
    win = win[..., m - my:m + my + 1, m - mx:m + mx + 1, :, :]
    err = np.abs(win - target[..., None, None, :, :]).mean((-2, -1))  # (..., 2my+1, 2mx+1)
    # ties (a flat picture matches every shift) go to the smallest shift
    err = err + 1e-3 * (np.abs(np.arange(-my, my + 1))[:, None] + np.abs(np.arange(-mx, mx + 1))[None, :])
    flat = err.reshape(*err.shape[:-2], -1).argmin(-1)
    return 2 * (flat // (2 * mx + 1) - my)


class Descent:
    """Whether a world's player is still coming down, read from its frames (module docstring): ``above`` is
    how far (px) the view is above the height where it last stood (a step that played no rise and moved the
    view less than :data:`FALLING_DY` up or down); ``falling`` when the last step moved it down by at least
    :data:`FALLING_DY` and it is still at least :data:`AIR_DY` above that height. One per rollout."""

    def __init__(self):
        self.above, self.falling = 0, False

    def seen(self, effect: int, dy: int) -> None:
        """The last step played a latent of vertical ``effect`` and the view moved down by ``dy`` px."""
        dy = int(dy)
        stood = effect != RISE and abs(dy) < FALLING_DY
        self.above = 0 if stood else max(0, self.above - dy)
        self.falling = dy >= FALLING_DY and self.above >= AIR_DY


class Gravity:
    """Chooses what a pressed latent action plays, given the two played before (module docstring).

    The two latents before are read by their vertical effect (rise, hold, fall: ``effects``), so that
    every jump latent shares the statistics of all of them: ``counts[k, e2, e1, a]`` sums the recorded
    ``counts[k, a2, a1, a]`` over the latents a2, a1 with those effects.
    """

    def __init__(self, counts_kaaa: np.ndarray, true_of_latent: Sequence[int | None], effects: Sequence[int],
                 falling: Sequence[int], rest: int | None = None, min_count: int = MIN_COUNT):
        counts = np.asarray(counts_kaaa, dtype=np.int64)
        if counts.ndim != 4 or len(set(counts.shape[1:])) != 1:
            raise ValueError(f"sequence counts must be K x A x A x A, got {counts.shape}")
        num_true, num_latent = counts.shape[:2]
        if len(true_of_latent) != num_latent or len(effects) != num_latent:
            raise ValueError(f"{len(true_of_latent)} real actions and {len(effects)} effects for {num_latent} latents")
        if any(e not in (RISE, HOLD, FALL) for e in effects):
            raise ValueError(f"effects must be RISE, HOLD or FALL (0, 1, 2), got {list(effects)}")
        if not falling or any(not 0 <= f < num_latent for f in falling):
            raise ValueError(f"falling latents {list(falling)} must be a non-empty subset of 0..{num_latent - 1}")
        self.effects = [int(e) for e in effects]
        self.counts = np.zeros((num_true, 3, 3, num_latent), dtype=np.int64)
        for a2 in range(num_latent):
            for a1 in range(num_latent):
                self.counts[:, self.effects[a2], self.effects[a1]] += counts[:, a2, a1]
        self.true_of = [k if isinstance(k, int) and 0 <= k < num_true else None for k in true_of_latent]
        self.falling = sorted(set(int(f) for f in falling))
        if rest is not None and not (0 <= rest < num_latent and self.effects[rest] == HOLD):
            raise ValueError(f"rest latent {rest} must be one that holds the height")
        self.rest = rest
        self.min_count = int(min_count)

    @property
    def num_actions(self) -> int:
        return self.counts.shape[-1]

    def fall_for(self, pressed: int) -> int:
        """The falling latent the recordings show most while ``pressed``'s real action is held (over every
        history; over every real action where ``pressed`` has none)."""
        k = self.true_of[pressed] if 0 <= pressed < self.num_actions else None
        seen = (self.counts[k] if k is not None else self.counts).reshape(-1, self.num_actions).sum(0)[self.falling]
        if k is not None and not seen.any():
            seen = self.counts.reshape(-1, self.num_actions).sum(0)[self.falling]
        return self.falling[int(np.argmax(seen))]

    def choose(self, pressed: int, history: Sequence[int], falling: bool = False) -> int:
        """The latent to play for ``pressed`` after ``history`` (the latents played so far, oldest first).
        ``falling``: the player is still coming down (:attr:`Descent.falling`): a key that would not play a
        fall plays :meth:`fall_for` it (module docstring)."""
        if not 0 <= pressed < self.num_actions:
            return pressed
        played = self._open_loop(pressed, history)
        if falling and self.effects[played] != FALL:
            return self.fall_for(pressed)
        return played

    def _open_loop(self, pressed: int, history: Sequence[int]) -> int:
        last = [int(a) for a in history[-2:]]
        if any(not 0 <= a < self.num_actions for a in last):
            return pressed
        e2, e1 = ([HOLD, HOLD] + [self.effects[a] for a in last])[-2:]  # before the first step: standing
        if pressed in self.falling:  # a fall where the recordings (any key held) almost never show one: rest
            seen = self.counts[:, e2, e1].sum(0)
            if self.rest is None or int(seen.sum()) < self.min_count or \
                    seen[self.falling].sum() >= NO_FALL_SHARE * seen.sum():
                return pressed
            return self.rest
        k = self.true_of[pressed]
        if k is None:
            return pressed
        seen = self.counts[k, e2, e1]
        falls = seen[self.falling]
        if int(seen.sum()) < self.min_count or 2 * int(falls.sum()) <= int(seen.sum()):
            return pressed
        return self.falling[int(np.argmax(falls))]

    def play(self, pressed: Sequence[int]) -> list[int]:
        """The latents the table alone plays for a whole sequence of presses from a reset (each :meth:`choose`
        given the ones played before it): what ``genie play`` plays for them where no frame shows the player
        still coming down (:class:`Descent`, which needs the world's frames)."""
        played: list[int] = []
        for a in pressed:
            played.append(self.choose(int(a), played))
        return played

    @classmethod
    def from_actions(cls, data: Any, num_actions: int) -> "Gravity | None":
        """From a parsed ``actions.json``: ``None`` when it has no usable table or no falling latent (an
        older file, another number of actions, or a malformed one: its contents are never trusted)."""
        try:
            mapping, motion = data["mapping"], data["motion"]
            counts = np.asarray(data["sequence_counts"], dtype=np.int64)
            if not isinstance(motion, list) or len(motion) != num_actions or not all(
                    isinstance(m, dict) and all(isinstance(m.get(k), (int, float)) and np.isfinite(m[k])
                                                for k in ("down", "up")) for m in motion):
                return None
            falling = [int(m["latent"]) for m in mapping if m.get("effect") == "fall"]
            true_of = [None] * num_actions
            for m in mapping:
                latent, k = int(m["latent"]), m.get("true_action")
                if 0 <= latent < num_actions:
                    true_of[latent] = k if isinstance(k, int) else None
            if counts.ndim != 4 or counts.shape[1] != num_actions or (counts < 0).any() or not falling:
                return None
            effects = [vertical_effect(m) for m in motion]
            # the down arrow's stand-in on the ground: the holding latent that moves the view least
            holds = [a for a in range(num_actions) if effects[a] == HOLD and all(
                isinstance(motion[a].get(k), (int, float)) and np.isfinite(motion[a][k]) for k in ("dx", "dy"))]
            rest = min(holds, key=lambda a: abs(motion[a]["dx"]) + abs(motion[a]["dy"])) if holds else None
            return cls(counts, true_of, effects, falling, rest)
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError):
            return None


class Played:
    """One rollout played through gravity, press by press (``genie play``'s session, ``GenieEnv``, the
    play-quality bench): the two latents played last (the table's context) and the :class:`Descent` of
    the world's frames."""

    def __init__(self, gravity: Gravity):
        self.gravity, self.last, self.descent = gravity, [], Descent()

    def press(self, pressed: int) -> int:
        """The latent to play for ``pressed`` now (:meth:`Gravity.choose`); remembered as played."""
        played = self.gravity.choose(pressed, self.last, self.descent.falling)
        self.last = [*self.last[-1:], played]
        return played

    def seen(self, dy: int) -> None:
        """The step just played moved the view down by ``dy`` px (:func:`view_dy` of its frames)."""
        self.descent.seen(self.gravity.effects[self.last[-1]], dy)
