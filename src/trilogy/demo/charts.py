"""The loss curves of the demo's units on one chart, against tokens and against wall-clock time."""

from __future__ import annotations

from pathlib import Path

COLORS = {"bert": "tab:blue", "gpt": "tab:green", "t5-span": "tab:orange", "t5": "tab:orange"}


def _moving_average(values: list[float], window: int) -> list[float]:
    out, total = [], 0.0
    for i, value in enumerate(values):
        total += value
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def draw_loss_curves(units: list[dict], path: Path) -> None:
    """Training loss (moving average over 10 steps) and validation loss of every unit, against tokens and
    against seconds of training; T5's docstring phase continues where its span-corruption phase ended."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(13, 4.6), layout="constrained")
    by_tokens, by_time = figure.subplots(1, 2)
    offsets = {"tokens": 0, "seconds": 0.0}
    for unit in units:
        start = offsets if unit["name"] == "t5" else {"tokens": 0, "seconds": 0.0}
        train = [p for p in unit["curve"] if p["split"] == "train"]
        valid = [p for p in unit["curve"] if p["split"] == "validation"]
        smoothed = _moving_average([p["loss"] for p in train], 10)
        style = "--" if unit["name"] == "t5-span" else "-"
        for ax, key, scale in ((by_tokens, "tokens", 1e-6), (by_time, "seconds", 1.0)):
            xs = [(p[key] + start[key]) * scale for p in train]
            ax.plot(xs, smoothed, style, color=COLORS[unit["name"]], label=unit["label"], linewidth=1.4)
            ax.plot([(p[key] + start[key]) * scale for p in valid], [p["loss"] for p in valid], "o",
                    color=COLORS[unit["name"]], markersize=4)
        if unit["name"] == "t5-span" and train:
            offsets = {"tokens": train[-1]["tokens"], "seconds": train[-1]["seconds"]}
    by_tokens.set_xlabel("tokens trained on (millions)")
    by_time.set_xlabel("seconds of training (wall-clock)")
    for ax in (by_tokens, by_time):
        ax.set_ylabel("loss (nats per predicted token)")
        ax.grid(alpha=0.3)
    if units:
        by_tokens.legend(fontsize=8)
    figure.suptitle("Training loss (moving average of 10 steps; dots: validation). Each objective predicts "
                    "different tokens, so compare each curve with its own start.", fontsize=10)
    figure.savefig(path, dpi=90)
