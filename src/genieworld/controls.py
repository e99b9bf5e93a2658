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

``MODEL/actions.json`` holds the table as ``sequence_counts`` (``K x A x A x A`` integers, written by
``genie actions name`` for models of at most :data:`MAX_ACTIONS` latent actions).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

__all__ = ["MAX_ACTIONS", "FALL_SHARE", "RISE", "HOLD", "FALL", "vertical_effect", "count_sequences", "Gravity"]

#: sequence_counts grows as K * A**3: written only for models of at most this many latent actions
MAX_ACTIONS = 16
MIN_COUNT = 10
#: a falling latent pressed where the recordings show a fall in fewer than this share of the transitions
#: (on the ground: CoinRun has no way down) plays Gravity.rest instead
NO_FALL_SHARE = 0.1


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

    def choose(self, pressed: int, history: Sequence[int]) -> int:
        """The latent to play for ``pressed`` after ``history`` (the latents played so far, oldest first)."""
        last = [int(a) for a in history[-2:]]
        if not 0 <= pressed < self.num_actions or any(not 0 <= a < self.num_actions for a in last):
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
        """The latents played for a whole sequence of presses from a reset (each :meth:`choose` given the
        ones played before it): what ``genie play`` plays for them, which depends on the presses alone."""
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
