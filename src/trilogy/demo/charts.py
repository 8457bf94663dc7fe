"""The pre-training loss curves of the four architectures on one chart, against FLOPs, tokens and seconds."""

from __future__ import annotations

from pathlib import Path

from .families import LABELS

COLORS = {"encoder": "tab:blue", "decoder": "tab:green", "prefix-lm": "tab:purple", "encoder-decoder": "tab:orange"}
AXES = (("flops", 1e-12, "training FLOPs (TFLOP)"), ("tokens", 1e-6, "tokens trained on (millions)"),
        ("seconds", 1.0, "seconds of training (wall-clock)"))


def _moving_average(values: list[float], window: int) -> list[float]:
    out, total = [], 0.0
    for i, value in enumerate(values):
        total += value
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def draw_loss_curves(curves: dict[str, list[list[dict]]], path: Path) -> None:
    """Training loss (moving average over 10 steps) of each architecture in each seed (``findings.curve``
    points, one list per seed) against training FLOPs, tokens and seconds."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(16, 4.6), layout="constrained")
    axes = figure.subplots(1, len(AXES))
    for arch, seeds in curves.items():
        for seed, points in enumerate(seeds):
            smoothed = _moving_average([p["loss"] for p in points], 10)
            for ax, (key, scale, _) in zip(axes, AXES, strict=True):
                ax.plot([p[key] * scale for p in points], smoothed, color=COLORS[arch],
                        label=None if seed else LABELS[arch], linewidth=1.4 if len(seeds) == 1 else 0.9)
    for ax, (_, _, label) in zip(axes, AXES, strict=True):
        ax.set_xlabel(label)
        ax.set_ylabel("loss (nats per predicted token)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    seeds = max(map(len, curves.values()))
    figure.suptitle(f"Pre-training loss (moving average of 10 steps{', one line per seed' if seeds > 1 else ''}). "
                    "Each objective predicts different tokens, so compare each curve with its own start.",
                    fontsize=10)
    figure.savefig(path, dpi=90)
