"""The loss curves of the demo's units on one chart, against tokens and against wall-clock time."""

from __future__ import annotations

from pathlib import Path

COLORS = {"bert": "tab:blue", "gpt": "tab:green", "t5-code": "tab:orange", "t5": "tab:orange"}
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


def draw_loss_curves(units: list[dict], path: Path) -> None:
    """Training loss (moving average over 10 steps) and validation loss of every unit, against training FLOPs,
    tokens and seconds; T5's docstring phase continues where its pre-training on code ended."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(16, 4.6), layout="constrained")
    axes = figure.subplots(1, len(AXES))
    ends = {key: 0 for key, _, _ in AXES}  # where the unit a later one starts from ended
    for unit in units:
        start = ends if unit["name"] == "t5" else dict.fromkeys(ends, 0)
        train = [p for p in unit["curve"] if p["split"] == "train"]
        valid = [p for p in unit["curve"] if p["split"] == "validation"]
        smoothed = _moving_average([p["loss"] for p in train], 10)
        style = "--" if unit["name"] == "t5-code" else "-"
        for ax, (key, scale, _) in zip(axes, AXES, strict=True):
            ax.plot([(p[key] + start[key]) * scale for p in train], smoothed, style, color=COLORS[unit["name"]],
                    label=unit["label"], linewidth=1.4)
            ax.plot([(p[key] + start[key]) * scale for p in valid], [p["loss"] for p in valid], "o",
                    color=COLORS[unit["name"]], markersize=4)
        if unit["name"] == "t5-code" and train:
            ends = {key: train[-1][key] for key in ends}
    for ax, (_, _, label) in zip(axes, AXES, strict=True):
        ax.set_xlabel(label)
        ax.set_ylabel("loss (nats per predicted token)")
        ax.grid(alpha=0.3)
    if units:
        axes[0].legend(fontsize=8)
    figure.suptitle("Training loss (moving average of 10 steps; dots: validation). Each objective predicts "
                    "different tokens, so compare each curve with its own start.", fontsize=10)
    figure.savefig(path, dpi=90)
