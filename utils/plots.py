"""Plots shared by every lesson. One contract for attention maps: `heatmaps` draws
labelled query × key matrices, one of them or a grid of heads and layers."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from utils.course import FIGURES


def _as_numpy(values) -> np.ndarray:
    if hasattr(values, "detach"):
        values = values.detach().to("cpu").float().numpy()
    return np.asarray(values, dtype=float)


def _grid(matrices) -> np.ndarray:
    """`(n, m)`, `(c, n, m)` or `(r, c, n, m)` as an `(r, c, n, m)` grid."""
    array = _as_numpy(matrices)
    if array.ndim < 2 or array.ndim > 4:
        raise ValueError(f"heatmaps takes an (n, m) matrix or a grid (rows, cols, n, m); got shape {array.shape}")
    while array.ndim < 4:
        array = array[None]
    return array


def _titles(titles, rows: int, cols: int) -> list[list[str | None]]:
    if titles is None:
        return [[None] * cols for _ in range(rows)]
    if isinstance(titles, str):
        titles = [titles]
    flat = list(np.ravel(np.asarray(titles, dtype=object)))
    if len(flat) != rows * cols:
        raise ValueError(f"got {len(flat)} titles for {rows * cols} maps")
    return [flat[r * cols : (r + 1) * cols] for r in range(rows)]


def heatmaps(
    matrices,
    row_labels: Sequence[str] | None = None,
    col_labels: Sequence[str] | None = None,
    *,
    titles=None,
    xlabel: str = "keys",
    ylabel: str = "queries",
    annotate: bool | None = None,
    vmin: float | None = 0.0,
    vmax: float | None = None,
    cmap: str = "Reds",
    cell_size: float = 0.45,
    colorbar: bool = True,
    suptitle: str | None = None,
) -> Figure:
    """Draw attention maps, rows = queries and columns = keys, labelled with tokens.

    `matrices` is one `(n, m)` matrix, a row of maps `(c, n, m)` (one per head), or a
    grid `(r, c, n, m)` (layers × heads). All maps share one colour scale. Used by every
    lesson from 01 on; returns the figure without showing it (see `show_heatmaps`).
    """
    grid = _grid(matrices)
    rows, cols, n, m = grid.shape
    for labels, size, axis in ((row_labels, n, "row"), (col_labels, m, "column")):
        if labels is not None and len(labels) != size:
            raise ValueError(f"{len(labels)} {axis} labels for {size} {axis}s")
    if annotate is None:
        annotate = n * m <= 144
    vmax = float(np.nanmax(grid)) if vmax is None else vmax
    vmin = float(np.nanmin(grid)) if vmin is None else vmin
    width = max(2.5, cell_size * m + 1.2) * cols + (0.8 if colorbar else 0)
    height = max(2.2, cell_size * n + 1.0) * rows + (0.4 if suptitle else 0)
    fig, axes = plt.subplots(rows, cols, figsize=(width, height), squeeze=False, layout="constrained")
    names = _titles(titles, rows, cols)
    for r in range(rows):
        for c in range(cols):
            ax = axes[r, c]
            image = ax.imshow(grid[r, c], cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
            ax.set_xticks(
                range(m),
                col_labels if col_labels is not None else range(m),
                rotation=60 if col_labels is not None else 0,
                ha="right" if col_labels is not None else "center",
            )
            ax.set_yticks(range(n), row_labels if row_labels is not None else range(n))
            if r == rows - 1:
                ax.set_xlabel(xlabel)
            if c == 0:
                ax.set_ylabel(ylabel)
            if names[r][c]:
                ax.set_title(names[r][c])
            if annotate:
                middle = (vmin + vmax) / 2
                for i in range(n):
                    for j in range(m):
                        value = grid[r, c, i, j]
                        ax.text(
                            j,
                            i,
                            f"{value:.2f}",
                            ha="center",
                            va="center",
                            fontsize=7,
                            color="white" if value > middle else "black",
                        )
    if colorbar:
        fig.colorbar(image, ax=axes, shrink=0.8)
    if suptitle:
        fig.suptitle(suptitle)
    return fig


def show_heatmaps(*args, **kwargs) -> None:
    """`heatmaps(...)`, shown at once (works inside a widget's output too)."""
    heatmaps(*args, **kwargs)
    plt.show()


def vectors(
    X,
    tokens: Sequence[str],
    features: Sequence[str] | None = None,
    *,
    title: str | None = None,
    ax=None,
    limit: float | None = None,
) -> Figure:
    """Word vectors `(n, d)` as a table of colours: one row per token, one column per feature (lesson 01 on)."""
    values = _as_numpy(X)
    if ax is None:
        fig, ax = plt.subplots(
            figsize=(max(3.0, 0.55 * values.shape[1] + 1.5), max(1.5, 0.35 * values.shape[0] + 1.0)),
            layout="constrained",
        )
    else:
        fig = ax.figure
    limit = max(float(np.abs(values).max()), 1e-9) if limit is None else limit
    image = ax.imshow(values, cmap="RdBu_r", vmin=-limit, vmax=limit, aspect="auto")
    ax.set_yticks(range(len(tokens)), tokens)
    columns = features if features is not None else range(values.shape[1])
    ax.set_xticks(
        range(values.shape[1]),
        columns,
        rotation=45 if features is not None else 0,
        ha="right" if features is not None else "center",
    )
    if title:
        ax.set_title(title)
    fig.colorbar(image, ax=ax, shrink=0.8)
    return fig


def save_figure(fig: Figure, name: str) -> str:
    """Save a figure under `figures/` as `name.png` (reproducibly: no timestamps); returns its path."""
    FIGURES.mkdir(exist_ok=True)
    path = FIGURES / f"{name}.png"
    fig.savefig(path, dpi=110, metadata={"Software": None})
    return str(path)


def show_figure(name: str):
    """A static picture from `figures/`, found from anywhere (also on Colab)."""
    from IPython.display import Image

    return Image(filename=str(FIGURES / f"{name}.png"))


def arcs(tokens: Sequence[str], weights, query: int, *, ax=None, title: str | None = None) -> Figure:
    """One query's weights as arcs over the sentence: the thicker, the more it takes in (lesson 02 on)."""
    weights = _as_numpy(weights)
    if weights.shape != (len(tokens),):
        raise ValueError(f"arcs takes one weight per token: {len(tokens)} tokens, weights of shape {weights.shape}")
    if ax is None:
        fig, ax = plt.subplots(figsize=(max(4.0, 0.9 * len(tokens)), 2.2), layout="constrained")
    else:
        fig = ax.figure
    top = max(float(weights.max()), 1e-9)
    for j, weight in enumerate(weights):
        if weight <= 1e-3:
            continue
        middle, half = (query + j) / 2, abs(query - j) / 2
        t = np.linspace(0, np.pi, 50)
        height = 0.25 + 0.15 * half
        if j == query:  # a small loop: the query keeping some of itself
            t = np.linspace(0, 2 * np.pi, 60)
            x, y = j + 0.16 * np.sin(t), 0.42 - 0.2 * np.cos(t)
        else:
            x, y = middle + half * np.cos(t), 0.15 + height * np.sin(t)
        ax.plot(
            x, y, color="tab:red", lw=0.5 + 6 * weight / top, alpha=0.35 + 0.65 * weight / top, solid_capstyle="round"
        )
        ax.text(j, -0.35, f"{weight:.2f}", ha="center", va="top", fontsize=8, color="tab:red")
    for j, token in enumerate(tokens):
        ax.text(
            j,
            0,
            token,
            ha="center",
            va="center",
            fontsize=11,
            fontweight="bold" if j == query else "normal",
            bbox=dict(boxstyle="round", fc="#fde2e2" if j == query else "white", ec="0.7"),
        )
    ax.set_xlim(-0.7, len(tokens) - 0.3)
    ax.set_ylim(-0.7, 1.6)
    ax.axis("off")
    if title:
        ax.set_title(title)
    return fig
