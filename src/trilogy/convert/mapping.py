"""Parameter-name mapping between a trilogy model and a foreign checkpoint, driven by a family's KEY_MAP.

A KEY_MAP maps each trilogy parameter name to the checkpoint name(s) it comes from, with ``{}`` standing for a
layer index, e.g. ``"stack.layers.{}.mlp.up.weight": "h.{}.mlp.c_fc.weight"``. A value may also be a pair
``(names, transform)`` naming a transform in ``TRANSFORMS``: several checkpoint tensors fused into one of ours
(separate q, k, v into our ``qkv``), or a layout change (GPT-2's Conv1D stores weights transposed, GPT-NeoX
interleaves q, k, v head by head). The other way round, a ``Piece`` says that one checkpoint tensor holds
several of ours (Phi-3's ``gate_up_proj``: our MLP's gate and up), split on loading and joined on saving.

The mapping is expanded from the model's own ``state_dict`` keys, so optional parts (biases, pooler, heads)
are mapped exactly when the model has them. Loading checks both key sets and every shape before touching the
model: a checkpoint loads completely or not at all.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from ..config import ModelConfig
from ..errors import CheckpointError

MAX_LISTED = 12  # tensors named in an error message before "... and N more"


def _fuse(parts: list[Tensor], config: ModelConfig) -> Tensor:
    """q (H*D, C), k (K*D, C), v (K*D, C) -> qkv (H*D + 2*K*D, C); or k, v -> kv (2*K*D, C). Biases likewise."""
    return torch.cat(parts, dim=0)


def _unfuse(fused: Tensor, config: ModelConfig) -> list[Tensor]:
    """Our fused ``qkv`` (H*D + 2*K*D, ...) or cross-attention ``kv`` (2*K*D, ...) -> the checkpoint's pieces."""
    kv_width = config.n_kv_heads * config.d_head
    q_width = fused.size(0) - 2 * kv_width
    sizes = [q_width, kv_width, kv_width] if q_width else [kv_width, kv_width]
    return list(fused.split(sizes, dim=0))


def _transpose(parts: list[Tensor], config: ModelConfig) -> Tensor:
    """Conv1D (in, out) -> nn.Linear (out, in)."""
    return parts[0].t()


def _untranspose(ours: Tensor, config: ModelConfig) -> list[Tensor]:
    """nn.Linear (out, in) -> Conv1D (in, out)."""
    return [ours.t()]


def _unrow(parts: list[Tensor], config: ModelConfig) -> Tensor:
    """A (1, N) row -> (N,): BART's and Marian's ``final_logits_bias`` buffer as our head's bias."""
    return parts[0].reshape(-1)


def _row(ours: Tensor, config: ModelConfig) -> list[Tensor]:
    """(N,) -> a (1, N) row."""
    return [ours.reshape(1, -1)]


def _from_per_head(parts: list[Tensor], config: ModelConfig) -> Tensor:
    """[q_h, k_h, v_h] for each head h (GPT-NeoX's ``query_key_value``, (H*3*D, ...)) -> our [q, k, v]
    (3*H*D, ...). Weights and biases alike."""
    fused = parts[0]
    per_head = fused.reshape(config.n_heads, 3, config.d_head, *fused.shape[1:])  # (H, 3, D, ...)
    return per_head.transpose(0, 1).reshape(fused.shape)  # (3, H, D, ...) -> (3*H*D, ...)


def _to_per_head(ours: Tensor, config: ModelConfig) -> list[Tensor]:
    """Our [q, k, v] (3*H*D, ...) -> [q_h, k_h, v_h] for each head h."""
    by_kind = ours.reshape(3, config.n_heads, config.d_head, *ours.shape[1:])  # (3, H, D, ...)
    return [by_kind.transpose(0, 1).reshape(ours.shape)]  # (H, 3, D, ...) -> (H*3*D, ...)


#: name -> (checkpoint tensors -> our tensor, our tensor -> checkpoint tensors)
TRANSFORMS: dict[str, tuple[Callable[[list[Tensor], ModelConfig], Tensor],
                            Callable[[Tensor, ModelConfig], list[Tensor]]]] = {
    "fuse": (_fuse, _unfuse),  # separate q/k/v (or k/v) projections <-> our fused one
    "conv1d": (_transpose, _untranspose),  # GPT-2's Conv1D keeps weights as (in, out)
    "row": (_unrow, _row),  # a bias kept as a (1, N) buffer


    "per_head_qkv": (_from_per_head, _to_per_head),  # GPT-NeoX's q, k, v interleaved head by head <-> ours
}


@dataclass(frozen=True)
class Piece:
    """A KEY_MAP value: our tensor is piece ``index`` of ``count`` equal pieces, along dim 0, of the checkpoint
    tensor ``name``, which holds the other pieces too (Phi-3's ``gate_up_proj`` = [our gate; our up])."""

    name: str
    index: int
    count: int


@dataclass(frozen=True)
class Rule:
    """How one trilogy parameter relates to the checkpoint: its names there and the transform between, or the
    piece of one checkpoint tensor it is (``piece``: (index, count), see ``Piece``)."""

    ours: str
    theirs: tuple[str, ...]
    transform: str | None = None
    piece: tuple[int, int] | None = None

    @property
    def direct(self) -> bool:
        """The checkpoint tensor is ours as it is: it can be read straight into the parameter."""
        return self.transform is None and self.piece is None

    def to_theirs(self, tensor: Tensor, config: ModelConfig) -> list[Tensor]:
        """Our tensor as the checkpoint's tensors; for a piece, only our piece of it (``checkpoint_tensors``
        joins the pieces)."""
        return [tensor] if self.transform is None else TRANSFORMS[self.transform][1](tensor, config)

    def to_ours(self, tensors: list[Tensor], config: ModelConfig) -> Tensor:
        if self.piece is not None:
            index, count = self.piece
            return tensors[0].chunk(count, dim=0)[index]
        return tensors[0] if self.transform is None else TRANSFORMS[self.transform][0](tensors, config)


def _template_regex(template: str) -> re.Pattern:
    return re.compile(re.escape(template).replace(r"\{\}", r"(\d+)") + "$")


def expand(key_map: dict, our_keys: list[str]) -> list[Rule]:
    """One Rule per trilogy parameter name, from KEY_MAP templates with ``{}`` layer slots.

    Raises:
        KeyError: a parameter has no entry (a gap in the family's KEY_MAP, not a user error).
    """
    compiled = []
    for ours, value in key_map.items():
        piece = (value.index, value.count) if isinstance(value, Piece) else None
        theirs, transform = value if isinstance(value, tuple) else (value.name if piece else value, None)
        theirs = (theirs,) if isinstance(theirs, str) else tuple(theirs)
        compiled.append((_template_regex(ours), theirs, transform, piece))
    rules = []
    for key in our_keys:
        for pattern, theirs, transform, piece in compiled:
            match = pattern.match(key)
            if match:
                rules.append(Rule(key, tuple(t.format(*match.groups()) for t in theirs), transform, piece))
                break
        else:
            raise KeyError(f"no checkpoint name for trilogy parameter {key!r}")
    return rules


def expected_shapes(rules: list[Rule], shapes: dict[str, torch.Size], config: ModelConfig) -> dict[str, tuple]:
    """The shape every checkpoint tensor must have, derived by converting meta tensors of our shapes."""
    expected = {}
    for rule in rules:
        parts = rule.to_theirs(torch.empty(shapes[rule.ours], device="meta"), config)
        for name, part in zip(rule.theirs, parts, strict=True):
            count = rule.piece[1] if rule.piece is not None else 1
            expected[name] = (part.size(0) * count, *part.shape[1:])
    return expected


def checkpoint_tensors(rules: list[Rule], state: dict[str, Tensor], config: ModelConfig) -> dict[str, Tensor]:
    """Our tensors (``state``) under the checkpoint's names, converted as each rule says; the pieces of one
    checkpoint tensor are joined in their order."""
    tensors: dict[str, Tensor] = {}
    pieces: dict[str, dict[int, Tensor]] = defaultdict(dict)
    for rule in rules:
        parts = rule.to_theirs(state[rule.ours], config)
        if rule.piece is None:
            tensors.update(zip(rule.theirs, parts, strict=True))
        else:
            pieces[rule.theirs[0]][rule.piece[0]] = parts[0]
    for name, by_index in pieces.items():
        tensors[name] = torch.cat([by_index[index] for index in sorted(by_index)])
    return tensors


def _listing(names: list[str], describe: Callable[[str], str]) -> str:
    shown = [f"  {describe(name)}" for name in names[:MAX_LISTED]]
    if len(names) > MAX_LISTED:
        shown.append(f"  ... and {len(names) - MAX_LISTED} more")
    return "\n".join(shown)


def check_tensors(shapes: dict[str, tuple], expected: dict[str, tuple], ignored: list[re.Pattern],
                  source: str, config_source: str = "its config.json") -> None:
    """Refuse a checkpoint whose tensor names or shapes (``shapes``: name -> stored shape) differ from what the
    model needs, naming each one.

    ``ignored`` names may be present or not (buffers, duplicates of tied weights); ``config_source`` is what the
    config was read from, for the message.
    """
    missing = sorted(set(expected) - set(shapes))
    unexpected = sorted(k for k in set(shapes) - set(expected) if not any(p.fullmatch(k) for p in ignored))
    wrong = sorted(k for k in set(expected) & set(shapes) if tuple(shapes[k]) != expected[k])
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing tensor(s):\n"
                        + _listing(missing, lambda k: f"{k}  expected shape {list(expected[k])}"))
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected tensor(s):\n"
                        + _listing(unexpected, lambda k: f"{k}  shape {list(shapes[k])}"))
    if wrong:
        problems.append(f"{len(wrong)} tensor(s) with the wrong shape:\n" + _listing(
            wrong, lambda k: f"{k}  has shape {list(shapes[k])}, expected {list(expected[k])}"))
    if problems:
        raise CheckpointError(f"{source} does not match {config_source}; nothing was loaded. "
                              + "\n".join(problems))
