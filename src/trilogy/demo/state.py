"""What a demo decides and reaches, as typed records: its options, each unit's probes, plan and spending,
the budget; saved as ``demo.json`` after each change so that ``--resume`` continues from there."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import TrilogyError
from ..train.precision import PRECISIONS
from .families import UNITS
from .training import Plan, Probe

STATE_FILE = "demo.json"
TRAIN_SHARE = 0.8  # of --minutes planned as training steps; the rest: tokenizers, the probe, evaluations,
#                    checkpoints, samples, the report (a 10-minute demo ran 6.8 minutes with 68% planned)
#: --budget -> what it counts (``budget.MEASURES``)
BUDGETS = {"flops": "flops", "tokens": "tokens", "time": "seconds"}
TOKENIZER_DATA = {"bert": ("text",), "gpt": ("text",), "t5": ("pairs",)}  # what each family trains on


@dataclass
class DemoOptions:
    """What decides what a demo computes; saved in demo.json so that ``--resume`` continues the same demo."""

    minutes: float = 10.0
    budget: str = "flops"
    flops: float | None = None  # training FLOPs per family; None: as many as fit in --minutes here
    precision: str = "auto"
    data: str = "shakespeare"
    pairs: str = "stdlib-docstrings"
    seed: int = 0
    d_model: int = 128
    layers: int = 4
    heads: int = 4
    seq_len: int = 128
    batch_size: int = 16
    vocab_size: int = 2048
    eval_batches: int = 10

    def __post_init__(self) -> None:
        if not self.minutes > 0:
            raise TrilogyError(f"--minutes must be positive, got {self.minutes}")
        if self.budget not in BUDGETS:
            raise TrilogyError(f"--budget must be one of {', '.join(BUDGETS)}, got {self.budget!r}")
        if self.flops is not None and (self.budget != "flops" or not self.flops > 0):
            raise TrilogyError(f"--flops must be positive and goes with --budget flops, got {self.flops} with "
                               f"--budget {self.budget}")
        if self.precision not in PRECISIONS:
            raise TrilogyError(f"--precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        for name in ("d_model", "layers", "heads", "seq_len", "batch_size", "vocab_size", "eval_batches"):
            if getattr(self, name) <= 0:
                raise TrilogyError(f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        if self.layers % 2:
            raise TrilogyError(f"--layers must be an even number (T5 splits them into encoder and decoder), "
                               f"got {self.layers}")
        if self.d_model % self.heads:
            raise TrilogyError(f"--d-model ({self.d_model}) must be divisible by --heads ({self.heads})")

    @property
    def train_seconds(self) -> float:
        """Wall-clock planned for training, all families together."""
        return self.minutes * 60 * TRAIN_SHARE


@dataclass
class UnitRecord:
    """How far one unit got: its probes (per precision), its plan, and what its training spent."""

    status: str = "pending"  # "pending", "training", then "done", "interrupted" or "deadline"
    probes: dict[str, Probe] = field(default_factory=dict)
    plan: Plan | None = None
    steps: int | None = None  # None until it trained
    tokens: int = 0
    flops: float = 0.0
    loss_tokens: int = 0
    seconds: float = 0.0  # its training clock
    peak_memory_bytes: int | None = None

    @property
    def finished(self) -> bool:
        return self.status in ("done", "deadline")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> UnitRecord:
        probes = {precision: Probe(**probe) for precision, probe in data.get("probes", {}).items()}
        plan = Plan(**data["plan"]) if data.get("plan") else None
        return cls(**{**data, "probes": probes, "plan": plan})


@dataclass
class Budget:
    """Each family's quota in its measure, and the seconds of training the plan expects in all."""

    kind: str  # --budget
    measure: str  # what it counts: "flops", "tokens" or "seconds"
    per_family: float
    planned_seconds: float


@dataclass
class DemoState:
    """Everything a demo decided and reached, saved as demo.json after each change so that ``--resume``
    continues from there."""

    options: DemoOptions
    units: dict[str, UnitRecord] = field(default_factory=lambda: {unit.name: UnitRecord() for unit in UNITS})
    precision: str | None = None  # chosen after the probe
    budget: Budget | None = None

    def to_dict(self) -> dict:
        data: dict = {"options": asdict(self.options), "units": {k: u.to_dict() for k, u in self.units.items()}}
        if self.precision is not None:
            data["precision"] = self.precision
        if self.budget is not None:
            data["budget"] = asdict(self.budget)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> DemoState:
        units = {unit.name: UnitRecord.from_dict(data.get("units", {}).get(unit.name, {})) for unit in UNITS}
        budget = Budget(**data["budget"]) if data.get("budget") else None
        return cls(DemoOptions(**data["options"]), units, data.get("precision"), budget)

    def probes(self, precision: str) -> dict[str, Probe]:
        return {name: record.probes[precision] for name, record in self.units.items()}


def load_state(out: Path) -> DemoState:
    file = out / STATE_FILE
    if not file.is_file():
        raise TrilogyError(f"--resume: {out} holds no {STATE_FILE}, so no demo to continue")
    return DemoState.from_dict(json.loads(file.read_text()))


def save_state(out: Path, state: DemoState) -> None:
    temp = out / f".{STATE_FILE}.tmp"
    temp.write_text(json.dumps(state.to_dict(), indent=1) + "\n")
    os.replace(temp, out / STATE_FILE)
