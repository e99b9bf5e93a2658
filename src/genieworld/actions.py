"""Names for latent actions: ``MODEL/actions.json`` and how ``genie actions name`` builds it.

Genie's latent action model learns a small codebook of actions from video alone, so
a trained model only knows "action 0 .. action N-1".  When some episodes carry the
real (ground-truth) actions, each latent action can be named after the real action
it most often co-occurs with:

1. cut each labelled episode into windows of ``window`` frames that overlap by one
   frame (so every transition is counted exactly once),
2. infer the latent action of every transition with ``genie.infer_actions``,
3. count ``counts[latent, true]`` over all transitions,
4. name latent ``i`` after ``argmax_k counts[i, k]``; its *confidence* is that
   count divided by all transitions the LAM assigned to ``i`` (``count / row sum``,
   in [0, 1]).  A latent that never occurs keeps its number (confidence 0).

When two latents pick the same real action, the second (lower confidence) one is
called ``NAME#2`` so names stay unique (the play page and ``GenieEnv`` look actions
up by name).

A LAM names what *changed*, and in a platformer much of that is not the player's doing:
a latent can stand for "the view moves down" (a fall, which happens whatever key is
held) and coincide most with some jump only because jumps are what precede falls.  So
the view's motion over each transition is measured too (:func:`latent_statistics`),
and a latent whose transitions mostly move the view down is named ``Fall`` (``Fall
Left``/``Fall Right`` when it also drifts sideways): the name says what pressing it
does.

File format (written atomically, UTF-8 JSON)::

    {"names": ["LEFT", "RIGHT", ...],                       # one per latent action
     "mapping": [{"latent": 0, "true_action": 1, "name": "LEFT",
                  "confidence": 0.93, "count": 412}, ...],
     "source": {"data": "train", "data_manifest_sha256": "...", "store_source": "coinrun", "episodes": 8,
                "transitions": 1984, "window": 16, "true_action_names": [...]},
     "counts": [[...], ...],                                 # the latent x true table
     "motion": [{"latent": 0, "transitions": 412, "dx": -3.1, "dy": 0.2,   # mean view shift, px
                 "down": 0.05, "up": 0.02, "left": 0.81, "right": 0.01}, ...],
     "sequence_counts": [[[[...]]]]}                         # true x latent x latent x latent: play's
                                                             # gravity (genieworld.controls)

Only ``names`` is required by readers (:func:`load_action_names`).

Real action names come from the store: Procgen (CoinRun) uses its 15 fixed
button combinations (:data:`PROCGEN_ACTION_NAMES`, the order of
``procgen.env.ProcgenGym3Env.get_combos``); Atari stores record
``get_action_meanings()`` in the manifest; the synthetic moving-square store names
its moves; anything else is numbered.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import numpy as np

from genieworld.action_names import check_action_names
from genieworld.controls import FALL, MAX_ACTIONS, Gravity, count_sequences, vertical_effect
from genieworld.errors import UserError

__all__ = ["PROCGEN_ACTION_NAMES", "ACTIONS_FILE", "true_action_names", "load_action_names", "check_action_names",
           "cooccurrence_counts", "latent_statistics", "name_from_counts", "name_from_motion", "names_from_judge",
           "falls", "fall_name",
           "write_actions_json", "default_key_map",
           "jump_action", "load_jump_action", "load_gravity", "name_latent_actions", "LatentStats"]

ACTIONS_FILE = "actions.json"

# procgen.env.ProcgenGym3Env.get_combos(), in order; the empty combo is NOOP.
PROCGEN_ACTION_NAMES = ["LEFT-DOWN", "LEFT", "LEFT-UP", "DOWN", "NOOP", "UP", "RIGHT-DOWN", "RIGHT",
                        "RIGHT-UP", "D", "A", "W", "S", "Q", "E"]

_DIRECTION = {(0, -1): "LEFT", (0, 1): "RIGHT", (-1, 0): "UP", (1, 0): "DOWN"}

#: A latent *falls* when the view moves down (by at least ``eval.motion.MIN_PIXELS``) in at least
#: ``controls.FALL_SHARE`` of its transitions; it drifts sideways when its mean horizontal shift is at least
#: FALL_DRIFT_PX a step.
FALL_DRIFT_PX = 1.0


# ---------------------------------------------------------------------------------------------
# reading names


def true_action_names(store) -> list[str] | None:
    """Names of the store's ground-truth actions, or ``None`` when it has no actions.

    ``store``: an :class:`~genieworld.data.store.EpisodeStore`.  Falls back to
    ``["0", "1", ...]`` when the actions exist but their meaning is not recorded.
    """
    if store.num_actions is None and not store.has_actions:
        return None
    n = store.num_actions
    extra = store.extra or {}
    source = (store.source or "").lower()
    names: list[str] | None = None
    atari = extra.get("atari") if isinstance(extra.get("atari"), dict) else None
    if atari and isinstance(atari.get("action_meanings"), list):
        names = [str(x) for x in atari["action_meanings"]]
    elif source == "coinrun" or source.startswith("procgen") or "coinrun" in extra:
        names = list(PROCGEN_ACTION_NAMES)
    elif extra.get("generator") == "moving_square" and isinstance(extra.get("moves"), dict):
        moves = extra["moves"]
        count = n if n is not None else len(moves)
        names = []
        for k in range(count):
            mv = moves.get(str(k))
            names.append(_DIRECTION.get(tuple(mv), str(k)) if mv else "NOOP")
    if n is None:
        n = len(names) if names else 0
    if not names or len(names) < n:
        base = names or []
        names = base + [str(k) for k in range(len(base), n)]
    return names[:n]


def load_action_names(model_dir, num_actions: int) -> list[str]:
    """``names`` from ``MODEL/actions.json`` if present and valid, else ``["0", "1", ...]``.

    Invalid files (wrong length, duplicates, odd characters) are ignored rather than
    trusted: the names end up in a web page and on key bindings.
    """
    default = [str(i) for i in range(num_actions)]
    data = _read_actions_json(model_dir)
    try:
        return check_action_names(data.get("names") if isinstance(data, dict) else None, num_actions)
    except ValueError:
        return default


def _read_actions_json(model_dir) -> Any:
    """The parsed ``MODEL/actions.json``, or ``None`` when there is no model, no file or no valid JSON."""
    if model_dir is None:
        return None
    try:
        return json.loads((Path(model_dir) / ACTIONS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None


def default_key_map(names: Sequence[str], jump: int | None = None) -> dict[str, int]:
    """A default keyboard binding ``{key: action}`` for the play page.

    Directional names (``LEFT``, ``UP``...) get the arrow keys, ``NOOP`` the space
    bar and single-letter names (Procgen's ``A``, ``W``...) their letter; every other
    action ``i < 10`` gets the digit key ``i``, the rest the next free key of
    ``q, w, e, r, ...``.  Keys are ``KeyboardEvent.key`` values; every action gets
    one key while keys last.

    ``jump``: when no action is named ``Jump`` (a LAM may split jumping between
    ``Left+Jump`` and ``Right+Jump#2``...), the action that the up arrow, space and
    ``w`` play instead (:func:`jump_action` picks it from the naming counts).
    An action named ``Fall`` (or else the first ``Fall Left``/``Fall Right``) gets the
    down arrow, and ``Stay`` then gets ``s``.
    """
    if any(str(n).upper() == "JUMP" for n in names) or not (isinstance(jump, int) and 0 <= jump < len(names)):
        jump = None
    upper = [str(n).upper() for n in names]
    # a falling latent (genie actions name's Fall, Fall Left, Fall Right): the down arrow plays the plain
    # Fall, or else the first one; Stay then keeps S only
    fall = upper.index("FALL") if "FALL" in upper else next(
        (i for i, n in enumerate(upper) if n.startswith("FALL ")), None)
    special = {"LEFT": "ArrowLeft", "RIGHT": "ArrowRight", "UP": "ArrowUp", "DOWN": "ArrowDown", "NOOP": " ",
               # CoinRun's effective actions (genie actions name): arrows and space, and WASD + Q/E
               "JUMP": "ArrowUp", "STAY": "ArrowDown" if fall is None else "s", "LEFT+JUMP": "q",
               "RIGHT+JUMP": "e"}
    extra = {"LEFT": "a", "RIGHT": "d", "JUMP": "w", "STAY": "s"}  # second keys, where free
    keymap: dict[str, int] = {}
    todo = []
    for i, name in enumerate(names):
        up = str(name).upper()
        key = "ArrowUp" if i == jump else "ArrowDown" if i == fall else special.get(up)
        if key is None and len(up) == 1 and up.isalpha():
            key = up.lower()
        if key is not None and key not in keymap:
            keymap[key] = i
        else:
            todo.append(i)
    for i, name in enumerate(names):
        up = str(name).upper()
        if (up == "JUMP" or i == jump) and " " not in keymap:
            keymap[" "] = i
        if i == jump and "w" not in keymap:
            keymap["w"] = i
        if up in extra and extra[up] not in keymap:
            keymap[extra[up]] = i
    rest = []
    for i in todo:
        if i < 10 and str(i) not in keymap:
            keymap[str(i)] = i
        else:
            rest.append(i)
    free = (k for k in "qwertyuiopasdfghjklzxcvbnm" if k not in keymap)
    for i in rest:
        key = next(free, None)
        if key is None:
            break
        keymap[key] = i
    return keymap


def jump_action(counts, true_names: Sequence[str], motion: Sequence[dict] | None = None) -> int | None:
    """The latent action that plays most like a plain jump, from a ``latent x true`` count table.

    For latent ``i`` with the real actions' shares ``p``: ``score = P(jump) - |P(right) - P(left)|``,
    where a real action jumps when its name contains ``Jump`` (``Up``, ``Left+Up``... for a Procgen
    game's buttons) and goes left or right when its name says so.  The best latent with
    ``P(jump) >= 0.5`` is returned, or ``None`` when there is none or the names say
    nothing about jumping.  ``counts`` is checked: a malformed table gives ``None``.
    With ``motion`` (one :func:`latent_statistics` record per latent), latents that fall
    (:func:`falls`: pressed in mid-air, a jump key does nothing) are passed over.
    """
    try:
        table = np.asarray(counts, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if table.ndim != 2 or table.shape[1] != len(true_names) or not np.isfinite(table).all() or (table < 0).any():
        return None
    up = [str(n).upper() for n in true_names]
    jumps = np.array([("JUMP" in n) or n == "UP" or n.endswith(("-UP", "+UP")) for n in up])
    left = np.array(["LEFT" in n for n in up])
    right = np.array(["RIGHT" in n for n in up])
    if not jumps.any():
        return None
    totals = table.sum(axis=1)
    best, best_score = None, -np.inf
    for i in range(table.shape[0]):
        if totals[i] <= 0:
            continue
        p = table[i] / totals[i]
        if motion is not None and len(motion) == table.shape[0] and falls(motion[i]):
            continue
        p_jump = float(p[jumps].sum())
        score = p_jump - abs(float(p[right].sum()) - float(p[left].sum()))
        if p_jump >= 0.5 and score > best_score:
            best, best_score = i, score
    return best


def load_jump_action(model_dir, num_actions: int) -> int | None:
    """:func:`jump_action` of ``MODEL/actions.json``'s counts, or ``None`` (no file, no counts, bad file)."""
    data = _read_actions_json(model_dir)
    try:
        counts = data["counts"]
        true_names = data["source"]["true_action_names"]
    except (KeyError, TypeError, IndexError):
        return None
    if not isinstance(counts, list) or len(counts) != num_actions or not isinstance(true_names, list):
        return None
    motion = data.get("motion") if isinstance(data.get("motion"), list) else None
    return jump_action(counts, true_names, motion)  # checks the table's shape against the names


def load_gravity(model_dir, num_actions: int) -> Gravity | None:
    """:class:`~genieworld.controls.Gravity` from ``MODEL/actions.json``'s ``sequence_counts``, or ``None``
    (no file, no table, no falling latent, a malformed file)."""
    return Gravity.from_actions(_read_actions_json(model_dir), num_actions)


# ---------------------------------------------------------------------------------------------
# counting and naming


def frame_windows(length: int, window: int) -> list[tuple[int, int]]:
    """[start, stop) frame windows of at most ``window`` frames overlapping by one frame."""
    if length < 2:
        return []
    out, start = [], 0
    while start < length - 1:
        stop = min(length, start + window)
        out.append((start, stop))
        start = stop - 1
    return out


def cooccurrence_counts(genie, store, episodes: Sequence[int], num_true: int, window: int = 16,
                        batch_size: int = 8, progress=None) -> np.ndarray:
    """``counts[latent, true]`` over every transition of ``episodes`` (which must have actions).

    Windows of equal length are batched together (``batch_size`` at most) for
    ``genie.infer_actions``.
    """
    return latent_statistics(genie, store, episodes, num_true, window, batch_size, progress, motion=False).counts


class LatentStats(NamedTuple):
    counts: np.ndarray                 # (latent, true) co-occurrences
    motion: list[dict] | None          # per latent: how it moves the view (None without ``motion``)
    latents: dict[int, np.ndarray]     # per episode: the latent action of every transition, in order


def latent_statistics(genie, store, episodes: Sequence[int], num_true: int, window: int = 16,
                      batch_size: int = 8, progress=None, motion: bool = True, motion_max: int = 20000
                      ) -> LatentStats:
    """:func:`cooccurrence_counts`, every episode's latent actions, and with ``motion`` how each latent
    action moves the view.

    The motion of a transition is :func:`genieworld.eval.motion.frame_shifts` between its two real
    frames (the view's whole-pixel shift, +x right, +y down). Per latent: ``transitions`` (how many
    were measured), the mean shift ``dx`` / ``dy`` in pixels, and the shares of its transitions in
    which the view moved down, up, left or right by at least ``MIN_PIXELS`` (``down``, ``up``,
    ``left``, ``right``). The shift search costs about 1 ms a transition, so only every k-th batch is
    measured, k chosen to measure about ``motion_max`` transitions (all of them in smaller stores).
    """
    import torch

    num_latent = int(genie.num_actions)
    counts = np.zeros((num_latent, num_true), dtype=np.int64)
    # per latent: transitions, sum dx, sum dy, moved down, up, left, right
    moves = np.zeros((num_latent, 7), dtype=np.float64)
    groups: dict[int, list[tuple[int, int, int]]] = {}
    for ep in episodes:
        for start, stop in frame_windows(store.episode_length(ep), window):
            groups.setdefault(stop - start, []).append((ep, start, stop))
    if motion:
        from genieworld.eval.motion import MIN_PIXELS, frame_shifts

        total = sum(b - a - 1 for items in groups.values() for _, a, b in items)
        stride = max(1, -(-total // max(1, int(motion_max))))
    batch_no = 0
    pieces: dict[int, dict[int, np.ndarray]] = {}  # episode -> window start -> that window's latents

    def flush(items):
        nonlocal batch_no
        frames = np.stack([store.read_frames(ep, a, b) for ep, a, b in items])
        true = np.stack([np.full(b - a - 1, -1, dtype=np.int64) if num_true == 0  # frames only: motion alone
                         else np.asarray(store.read_actions(ep, a, b - 1), dtype=np.int64) for ep, a, b in items])
        with torch.inference_mode():
            lat = genie.infer_actions(frames)
        lat = np.asarray(lat.cpu() if hasattr(lat, "cpu") else lat, dtype=np.int64).reshape(true.shape)
        for (ep, a, _), row in zip(items, lat):
            pieces.setdefault(ep, {})[a] = row
        known = (lat >= 0) & (lat < num_latent)
        ok = known & (true >= 0) & (true < num_true)
        np.add.at(counts, (lat[ok], true[ok]), 1)
        if motion and batch_no % stride == 0:
            shape = frames.shape[2:]
            shift, _ = frame_shifts(frames[:, :-1].reshape(-1, *shape), frames[:, 1:].reshape(-1, *shape))
            dx, dy = shift[:, 0].reshape(true.shape)[known], shift[:, 1].reshape(true.shape)[known]
            cols = np.stack([np.ones_like(dx), dx, dy, dy >= MIN_PIXELS, dy <= -MIN_PIXELS,
                             dx <= -MIN_PIXELS, dx >= MIN_PIXELS], 1).astype(np.float64)
            np.add.at(moves, lat[known], cols)
        batch_no += 1
        if progress is not None:
            progress(len(items))

    for _, items in sorted(groups.items()):
        for i in range(0, len(items), batch_size):
            flush(items[i:i + batch_size])
    # windows overlap by one frame, so each episode's transitions are its windows' latents in order
    latents = {ep: np.concatenate([w[a] for a in sorted(w)]) for ep, w in pieces.items()}
    if not motion:
        return LatentStats(counts, None, latents)
    table = []
    for i in range(num_latent):
        n = moves[i, 0]
        avg = moves[i, 1:] / n if n else np.zeros(6)
        table.append({"latent": i, "transitions": int(n), "dx": round(float(avg[0]), 3), "dy": round(float(avg[1]), 3),
                      **{k: round(float(v), 4) for k, v in zip(("down", "up", "left", "right"), avg[2:])}})
    return LatentStats(counts, table, latents)


def falls(move: dict | None, true_name: str = "") -> bool:
    """Whether a latent's view motion (a :func:`latent_statistics` record) says it *falls*: the view moves
    down in at least ``FALL_SHARE`` of its transitions (and more often than up), and its real action is
    not itself a down move."""
    return "DOWN" not in str(true_name).upper() and vertical_effect(move) == FALL


def fall_name(move: dict) -> str:
    """``Fall``, ``Fall Left`` or ``Fall Right`` by the latent's mean sideways shift (``FALL_DRIFT_PX``)."""
    dx = float(move.get("dx", 0.0))
    return "Fall Right" if dx >= FALL_DRIFT_PX else "Fall Left" if dx <= -FALL_DRIFT_PX else "Fall"


def name_from_counts(counts: np.ndarray, true_names: Sequence[str], motion: Sequence[dict] | None = None
                     ) -> tuple[list[str], list[dict]]:
    """Names and mapping records from a ``latent x true`` count table (module docstring).

    ``motion`` (per latent, from :func:`latent_statistics`): a latent whose transitions mostly move the
    view down (:func:`falls`) is named after that, ``Fall``/``Fall Left``/``Fall Right``, whatever real
    action it coincides with (in a platformer the player falls whatever key is held); its record keeps
    that real action and says ``"effect": "fall"``.
    """
    counts = np.asarray(counts, dtype=np.int64)
    num_latent = counts.shape[0]
    if motion is not None and len(motion) != num_latent:
        raise ValueError(f"motion has {len(motion)} latents, counts {num_latent}")
    best = counts.argmax(axis=1)
    totals = counts.sum(axis=1)
    records = []
    for i in range(num_latent):
        n = int(counts[i, best[i]])
        if totals[i] == 0:
            records.append({"latent": i, "true_action": None, "name": str(i), "confidence": 0.0, "count": 0})
        else:
            records.append({"latent": i, "true_action": int(best[i]), "name": str(true_names[best[i]]),
                            "confidence": round(n / int(totals[i]), 4), "count": n})
            if motion is not None and falls(motion[i], true_names[best[i]]):
                records[-1].update(name=fall_name(motion[i]), effect="fall")
    _make_unique(records)
    return [r["name"] for r in records], records


def _make_unique(records: list[dict]) -> None:
    """Unique names in place: of latents with the same name the most confident keeps it, the next are
    NAME#2, NAME#3... (records whose ``true_action`` is None keep their number)."""
    order = sorted(range(len(records)), key=lambda i: (-records[i]["confidence"], -records[i]["count"], i))
    seen: dict[str, int] = {}
    taken = {r["name"] for r in records if r["true_action"] is None}
    for i in order:
        r = records[i]
        if r["true_action"] is None:
            continue
        base = r["name"]
        k = seen.get(base, 0) + 1
        seen[base] = k
        name = base if k == 1 else f"{base}#{k}"
        while name in taken:
            k += 1
            seen[base] = k
            name = f"{base}#{k}"
        taken.add(name)
        r["name"] = name


#: a latent is named after a direction the view moves in when it does so in at least this share of its
#: transitions (and more often than the opposite way): :func:`name_from_motion`
MOTION_SHARE = 0.5


def name_from_motion(motion: Sequence[dict]) -> tuple[list[str], list[dict]]:
    """Names from how each latent moves the view alone (a store without recorded actions, such as your own
    videos): ``Left``/``Right`` where the view moves that way in at least ``MOTION_SHARE`` of its
    transitions, ``Up`` (``Left+Up``...) where it moves up, ``Fall``... where it falls (:func:`falls`),
    else ``Stay``. A name's confidence is the share of transitions that moved that way (for ``Stay``,
    those that moved neither sideways nor up by a share that counts). Records say ``"true_action": -1``
    (named from motion) and are made unique like :func:`name_from_counts`'s."""
    records = []
    for i, m in enumerate(motion):
        n = int(m.get("transitions", 0)) if isinstance(m, dict) else 0
        if n == 0:
            records.append({"latent": i, "true_action": None, "name": str(i), "confidence": 0.0, "count": 0})
            continue
        left, right, up = float(m["left"]), float(m["right"]), float(m["up"])
        side = "Left" if left >= MOTION_SHARE and left > right else "Right" if right >= MOTION_SHARE and right > left else ""
        rises = up >= MOTION_SHARE and up > float(m["down"])
        if falls(m):
            name, share = fall_name(m), float(m["down"])
        elif side or rises:
            name = "+".join(x for x in (side, "Up" if rises else "") if x)
            share = min(v for v, on in ((max(left, right), side), (up, rises)) if on)
        else:
            name, share = "Stay", 1.0 - max(left, right, up)
        records.append({"latent": i, "true_action": -1, "name": name, "confidence": round(share, 4), "count": n,
                        "effect": "fall" if name.startswith("Fall") else "motion"})
    _make_unique(records)
    return [r["name"] for r in records], records


def names_from_judge(mapping: Sequence[dict], readings: Sequence[dict]) -> tuple[list[str], list[dict]]:
    """Names after what an independent reader sees each latent do: ``readings`` has one record per latent
    (``"latent"``, ``"judge_name"`` such as ``Left`` or ``Right+Jump``, ``"judge_direction"`` shares of
    ``left``/``none``/``right``), the action judge's reading of the frames the model generates while the
    latent is held (``genie actions name --judge-names``).

    A latent that falls (``"effect": "fall"`` in ``mapping``) stays a fall, as the judge knows no falls,
    and takes the direction the judge reads most (``Fall Left``, ``Fall``, ``Fall Right``); every other
    latent takes the judge's name. Names are made unique as :func:`name_from_counts`'s (``Left#2``...).
    Returns the names and a copy of ``mapping`` with them, each record keeping its earlier name as
    ``"counts_name"``."""
    by_latent = {int(r["latent"]): r for r in readings}
    records = []
    for m in mapping:
        r = by_latent.get(int(m["latent"]))
        rec = dict(m)
        if r is not None and m.get("true_action") is not None:
            if m.get("effect") == "fall":
                share = r["judge_direction"]
                side = max(("left", "none", "right"), key=lambda d: float(share.get(d, 0.0)))
                name = {"left": "Fall Left", "none": "Fall", "right": "Fall Right"}[side]
            else:
                name = str(r["judge_name"])
            rec.update(counts_name=m["name"], name=name)
        records.append(rec)
    _make_unique(records)
    return [r["name"] for r in records], records


def write_actions_json(model_dir, data: dict) -> Path:
    """Write ``MODEL/actions.json`` atomically (temp file + fsync + rename)."""
    from genieworld.utils import atomic_write_text

    path = Path(model_dir) / ACTIONS_FILE
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")
    return path


def _has_actions(store, i: int) -> bool:
    flags = getattr(store, "_has_actions", None)
    if flags is not None:
        return bool(flags[i])
    return store.read_actions(i) is not None


def name_latent_actions(model_dir, data_dir, episodes: int | None = None, window: int = 16,
                        batch_size: int = 8, device: str = "cpu", genie=None, progress=None,
                        motion: bool = True) -> dict:
    """Build and write ``MODEL/actions.json`` from the labelled episodes of ``data_dir`` (from how each
    latent moves the view, :func:`name_from_motion`, when no episode records actions).

    ``motion``: also measure how each latent moves the view (:func:`latent_statistics`, written as
    ``"motion"``) and name the latents that fall ``Fall``... (:func:`name_from_counts`).

    ``model_dir`` may be a training RUN folder (its ``RUN/model`` is used, as
    ``Genie.from_pretrained`` does).  Raises :class:`~genieworld.errors.UserError`
    when the store has no labelled episodes and ``motion`` is off (nothing is written then).  Returns the
    written dict plus ``"path"``, the file written.
    """
    from genieworld.data.store import EpisodeStore
    from genieworld.data.store import store_digest

    if genie is None:
        from genieworld.genie import ModelDirError, resolve_model_dir

        try:
            model_dir = resolve_model_dir(model_dir)  # a training RUN folder names RUN/model
        except ModelDirError as e:
            raise UserError(str(e)) from None
    model_dir = Path(model_dir)
    store = EpisodeStore(data_dir)
    labelled = [i for i in range(store.num_episodes) if _has_actions(store, i) and store.episode_length(i) >= 2]
    from_motion = not labelled
    if from_motion:  # frames only (your own videos): name the latents after how they move the view
        if not motion:
            raise UserError(f"{data_dir}: no episodes with ground-truth actions, and --no-motion leaves nothing to "
                            "name the latent actions by (they stay numbered 0..N-1)")
        labelled = [i for i in range(store.num_episodes) if store.episode_length(i) >= 2]
        if not labelled:
            raise UserError(f"{data_dir}: no episode of 2 or more frames")
    if episodes is not None:
        if episodes < 1:
            raise UserError("--episodes must be >= 1")
        labelled = labelled[:episodes]
    if window < 2:
        raise UserError("--window must be >= 2")
    true_names = [] if from_motion else true_action_names(store)
    num_true = len(true_names)
    if genie is None:
        from genieworld.genie import Genie, ModelDirError

        try:
            genie = Genie.from_pretrained(model_dir, device=device)
        except ModelDirError as e:
            raise UserError(str(e)) from None
    size = getattr(genie, "image_size", None)
    if size is not None and tuple(store.resolution) != (int(size), int(size)):
        raise UserError(f"{data_dir}: frames are {store.resolution[0]}x{store.resolution[1]} but the model "
                        f"expects {size}x{size}")
    # the LAM saw windows of at most its max_frames in training; infer on the same
    max_frames = getattr(getattr(getattr(genie, "lam", None), "cfg", None), "max_frames", None)
    if isinstance(max_frames, int) and max_frames >= 2:
        window = min(window, max_frames)
    raw_counts, moves, latents = latent_statistics(genie, store, labelled, num_true, window=window,
                                                   batch_size=batch_size, progress=progress, motion=motion)
    if from_motion:
        names, mapping = name_from_motion(moves)
        data = {"names": names, "mapping": mapping,
                "source": {"data": Path(data_dir).resolve().name, "data_manifest_sha256": store_digest(store),
                           "store_source": store.source, "episodes": len(labelled),
                           "transitions": int(sum(m["transitions"] for m in moves)), "window": int(window),
                           "true_action_names": [], "named_from": "motion"},
                "motion": moves}
        path = write_actions_json(model_dir, data)
        return {**data, "path": str(path)}
    true_of_ep = {ep: np.asarray(store.read_actions(ep), dtype=np.int64) for ep in latents}
    counts, names_of_true = raw_counts, list(true_names)
    if true_names == PROCGEN_ACTION_NAMES:
        from genieworld.data.procgen import effective_action_of, effective_actions_of

        eff_info = effective_actions_of(store)
        if eff_info is not None:
            # a Procgen game's 15 buttons act as its measured effective actions (CoinRun's 6: Left, Jump, ...):
            # name the latents in the game's own terms
            eff = effective_action_of(store)
            names_of_true = list(eff_info["names"])
            table = eff(np.arange(num_true))
            counts = np.zeros((raw_counts.shape[0], len(names_of_true)), dtype=np.int64)
            for j in range(num_true):
                counts[:, table[j]] += raw_counts[:, j]
            true_of_ep = {ep: eff(a) for ep, a in true_of_ep.items()}
    names, mapping = name_from_counts(counts, names_of_true, moves)
    data = {
        "names": names,
        "mapping": mapping,
        # the store by folder name and content digest, never this machine's absolute path
        "source": {"data": Path(data_dir).resolve().name, "data_manifest_sha256": store_digest(store),
                   "store_source": store.source,
                   "episodes": len(labelled), "transitions": int(counts.sum()), "window": int(window),
                   "true_action_names": names_of_true},
        "counts": counts.tolist(),
    }
    if moves is not None:
        data["motion"] = moves
        if counts.shape[0] <= MAX_ACTIONS and any(m.get("effect") == "fall" for m in mapping):
            # what follows two given latents under each real action: play's gravity (genieworld.controls)
            eps = sorted(latents)
            data["sequence_counts"] = count_sequences([latents[e] for e in eps], [true_of_ep[e] for e in eps],
                                                      len(names_of_true), counts.shape[0]).tolist()
    if counts is not raw_counts:  # the names after the raw buttons, kept for reference
        data["raw_names"] = name_from_counts(raw_counts, true_names, moves)[0]
        data["raw_true_action_names"] = list(true_names)
        data["raw_counts"] = raw_counts.tolist()
    path = write_actions_json(model_dir, data)
    return {**data, "path": str(path)}
