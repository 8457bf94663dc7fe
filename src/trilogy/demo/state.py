"""What a demo decides and reaches, as typed records: its options, each unit's probe, plan, spending and score,
the budget; saved as ``demo.json`` after each change so that ``--resume`` continues from there.

A *unit* is one run of the training loop in its own folder, named by that folder: ``pretrain/ARCH`` (each
architecture on the common corpus with its own objective) and ``finetune/TASK/ARCH`` (that model adapted to one
task)."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..data.tasks import TASKS
from ..errors import TrilogyError
from ..train.precision import PRECISIONS
from .families import ARCHITECTURES, SIZES
from .training import Plan, Probe

STATE_FILE = "demo.json"


def pretrain_unit(arch: str) -> str:
    """The unit (and its folder) that pre-trains ``arch``."""
    return f"pretrain/{arch}"


def finetune_unit(task: str, arch: str) -> str:
    """The unit (and its folder) that fine-tunes ``arch`` on ``task``."""
    return f"finetune/{task}/{arch}"
PRETRAIN_SHARE = 0.4  # of --minutes planned as pre-training steps, all architectures together
FINETUNE_SHARE = 0.4  # of --minutes planned as fine-tuning steps, split equally over the tasks
DEVICES = ("auto", "cpu", "cuda")


@dataclass
class DemoOptions:
    """What decides what a demo computes; saved in demo.json so that ``--resume`` continues the same demo."""

    minutes: float | None = None  # None: FLOP budgets; else a plan from the probe for this long
    pretrain_flops: float | None = None  # per architecture; None: the size's
    finetune_steps: int | None = None  # per task, in the decoder's steps on it; None: the size's
    size: str = "tiny"
    device: str = "auto"
    precision: str = "auto"
    seed: int = 0
    tasks: list[str] = field(default_factory=lambda: list(TASKS))
    task_files: list[str] = field(default_factory=list)
    init: list[str] = field(default_factory=list)  # "ARCH=PATH_OR_NAME": a checkpoint folder or a HF name
    max_train: int = 4000  # rows per task
    max_eval: int = 400

    def __post_init__(self) -> None:
        if self.minutes is not None and not self.minutes > 0:
            raise TrilogyError(f"--minutes must be positive, got {self.minutes}")
        if self.size not in SIZES:
            raise TrilogyError(f"--size must be one of {', '.join(SIZES)}, got {self.size!r}")
        if self.device not in DEVICES:
            raise TrilogyError(f"--device must be one of {', '.join(DEVICES)}, got {self.device!r}")
        if self.precision not in PRECISIONS:
            raise TrilogyError(f"--precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        unknown = [name for name in self.tasks if name not in TASKS]
        if unknown:
            raise TrilogyError(f"no task {unknown[0]!r}; the built-in tasks are {', '.join(TASKS)}")
        if not self.tasks and not self.task_files:
            raise TrilogyError("no tasks: give --tasks or --task FILE.jsonl")
        for value in self.init:
            arch, sep, source = value.partition("=")
            if not sep or not source or arch not in ARCHITECTURES:
                raise TrilogyError(f"--init takes ARCH=PATH_OR_NAME with ARCH one of {', '.join(ARCHITECTURES)}, "
                                   f"got {value!r}")
        if self.minutes is not None and (self.pretrain_flops is not None or self.finetune_steps is not None):
            raise TrilogyError("--minutes plans the budget from the time; it cannot be given with --pretrain-flops "
                               "or --finetune-steps")
        for name in ("max_train", "max_eval", "pretrain_flops", "finetune_steps"):
            if getattr(self, name) is not None and getattr(self, name) <= 0:
                raise TrilogyError(f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)}")

    @property
    def checkpoints(self) -> dict[str, str]:
        """Architecture -> the checkpoint it starts from (``--init``)."""
        return dict(value.partition("=")[::2] for value in self.init)

    def budget_flops(self, size) -> tuple[float, int]:
        """Without ``--minutes``: (each architecture's pre-training FLOPs, each task's fine-tuning budget in the
        decoder's steps), given or the ``size``'s."""
        return (self.pretrain_flops if self.pretrain_flops is not None else size.pretrain_flops,
                self.finetune_steps if self.finetune_steps is not None else size.finetune_steps)

    @property
    def pretrain_seconds(self) -> float:
        """With ``--minutes``: the seconds of pre-training, all architectures together."""
        assert self.minutes is not None
        return self.minutes * 60 * PRETRAIN_SHARE

    @property
    def finetune_seconds(self) -> float:
        """With ``--minutes``: the seconds of fine-tuning per task, all architectures together."""
        assert self.minutes is not None
        return self.minutes * 60 * FINETUNE_SHARE / (len(self.tasks) + len(self.task_files))


@dataclass
class UnitRecord:
    """How far one unit got: its probe, its plan, what its training spent, and (fine-tuning) its score."""

    status: str = "pending"  # "pending", "training", then "done", "interrupted" or "deadline"; "n/a"
    probe: Probe | None = None
    plan: Plan | None = None
    steps: int | None = None  # None until it trained
    tokens: int = 0
    flops: float = 0.0
    loss_tokens: int = 0
    seconds: float = 0.0  # its training clock
    score: float | None = None
    eval_seconds: float | None = None
    reason: str | None = None  # why it is n/a

    @property
    def finished(self) -> bool:
        return self.status in ("done", "deadline", "n/a")

    @classmethod
    def from_dict(cls, data: dict) -> UnitRecord:
        probe = Probe(**data["probe"]) if data.get("probe") else None
        plan = Plan(**data["plan"]) if data.get("plan") else None
        return cls(**{**data, "probe": probe, "plan": plan})


@dataclass
class Budget:
    """The FLOPs each architecture gets: in pre-training, and per task in fine-tuning."""

    pretrain_flops: float | None
    task_flops: dict[str, float]
    planned_seconds: float


@dataclass
class DemoState:
    """Everything a demo decided and reached, saved as demo.json after each change."""

    options: DemoOptions
    units: dict[str, UnitRecord] = field(default_factory=dict)
    precision: str | None = None
    budget: Budget | None = None

    def unit(self, name: str) -> UnitRecord:
        return self.units.setdefault(name, UnitRecord())

    def to_dict(self) -> dict:
        return {"options": asdict(self.options), "units": {k: asdict(u) for k, u in self.units.items()},
                "precision": self.precision, "budget": asdict(self.budget) if self.budget else None}

    @classmethod
    def from_dict(cls, data: dict) -> DemoState:
        units = {name: UnitRecord.from_dict(unit) for name, unit in data.get("units", {}).items()}
        budget = Budget(**data["budget"]) if data.get("budget") else None
        return cls(DemoOptions(**data["options"]), units, data.get("precision"), budget)


def load_state(out: Path) -> DemoState:
    file = out / STATE_FILE
    if not file.is_file():
        raise TrilogyError(f"--resume: {out} holds no {STATE_FILE}, so no demo to continue")
    return DemoState.from_dict(json.loads(file.read_text()))


def save_state(out: Path, state: DemoState) -> None:
    temp = out / f".{STATE_FILE}.tmp"
    temp.write_text(json.dumps(state.to_dict(), indent=1) + "\n")
    os.replace(temp, out / STATE_FILE)
