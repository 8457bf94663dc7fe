"""A labelled heatmap (rows x columns, optional text in each cell) and what a result that draws one can do: give
its matplotlib figure, save it, show itself inline in a notebook.

Legend: R rows, K columns.
"""

from __future__ import annotations

from io import BytesIO
from pathlib import Path
from typing import TYPE_CHECKING

from torch import Tensor

if TYPE_CHECKING:
    from matplotlib.figure import Figure


class Picture:
    """A result drawn as one figure: ``figure()``, ``save(path)``, and a PNG in a notebook's output."""

    def figure(self) -> Figure:
        raise NotImplementedError  # pragma: no cover - each result draws itself

    def save(self, path: str | Path) -> Path:
        """Write the figure to ``path``, in the format its suffix names (.png, .svg, .pdf). Returns the path."""
        self.figure().savefig(path, dpi=100)
        return Path(path)

    def _repr_png_(self) -> bytes:
        buffer = BytesIO()
        self.figure().savefig(buffer, format="png", dpi=100)
        return buffer.getvalue()


def heatmap(values: Tensor, rows: list[str], columns: list[str], title: str, scale_label: str,
            cell_text: list[list[str]] | None = None, limits: tuple[float, float] | None = None,
            colours: str = "viridis") -> Figure:
    """``values`` (R, K) as coloured cells, row 0 at the bottom; ``cell_text`` (R x K strings) written in the
    cells; ``limits`` (low, high) of the colour scale (default: the values' range)."""
    from matplotlib.figure import Figure

    n_rows, n_columns = values.shape
    figure = Figure(figsize=(max(4.0, 0.75 * n_columns + 2.2), max(2.5, 0.4 * n_rows + 1.6)), layout="constrained")
    ax = figure.subplots()
    low, high = limits if limits is not None else (None, None)
    image = ax.imshow(values.float().numpy(), cmap=colours, vmin=low, vmax=high, aspect="auto", origin="lower")
    longest = max((len(line) for column in columns for line in column.split("\n")), default=0)
    ax.set_xticks(range(n_columns), columns, rotation=90 if longest > 6 else 0, fontsize=8)
    ax.set_yticks(range(n_rows), rows, fontsize=8)
    if cell_text is not None:
        for row, texts in enumerate(cell_text):
            for column, text in enumerate(texts):
                red, green, blue, _ = image.cmap(image.norm(float(values[row, column])))
                light = 0.299 * red + 0.587 * green + 0.114 * blue > 0.5  # the cell's luminance
                ax.text(column, row, text[:8], ha="center", va="center", fontsize=7,
                        color="black" if light else "white")
    figure.colorbar(image, ax=ax, label=scale_label)
    ax.set_title(title, fontsize=10, wrap=True)  # a figure of a few columns is narrower than its title
    return figure
