"""Real images with no download, for lesson 03 (non-local means): matplotlib's sample data,
as grayscale float tensors in [0, 1], made small enough to run fast; Gaussian noise with a
fixed seed; PSNR; and a row of images drawn side by side.

    img = images.load("hopper", size=128)   # (128, 128), Grace Hopper's portrait
    noisy = images.add_noise(img, 0.1)      # the same noise every time (seed 0)
    images.psnr(img, noisy)                 # about 20 dB
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib import cbook
from matplotlib.colors import PowerNorm
from matplotlib.figure import Figure

# name: (file in matplotlib's sample data, the square crop (top, left, side) in its pixels, what it shows)
SAMPLES = {
    "hopper": ("grace_hopper.jpg", (0, 0, 512), "Grace Hopper's portrait (the top square)"),
    "mri": ("s1045.ima.gz", (0, 0, 256), "an MRI slice of a head"),
}

# ITU-R BT.601 luma: how much red, green and blue each add to the grey a person sees.
LUMA = (0.299, 0.587, 0.114)


def _read(filename: str) -> np.ndarray:
    """The raw pixels of one of matplotlib's sample files, as a 2-D float array (grey)."""
    if filename.endswith(".ima.gz"):  # raw 16-bit MRI, 256 × 256, decompressed by get_sample_data
        with cbook.get_sample_data(filename) as file:
            pixels = np.frombuffer(file.read(), np.uint16).reshape(256, 256)
        return pixels.astype(np.float64)
    with cbook.get_sample_data(filename) as file:
        pixels = plt.imread(file).astype(np.float64)
    if pixels.ndim == 3:
        pixels = pixels[..., :3] @ np.asarray(LUMA)
    return pixels


def load(name: str = "hopper", size: int = 128) -> torch.Tensor:
    """A sample image as a `(size, size)` float32 tensor in [0, 1]: grey, cropped square, downscaled.

    `name` is one of `SAMPLES`; downscaling averages blocks of pixels (area interpolation),
    which already removes a little of the sensor's own noise.
    """
    if name not in SAMPLES:
        raise ValueError(f"unknown image {name!r}; choose one of {', '.join(SAMPLES)}")
    filename, (top, left, side), _ = SAMPLES[name]
    if not 4 <= size <= side:
        raise ValueError(f"size must be between 4 and {side} for {name!r}; got {size}")
    pixels = _read(filename)[top : top + side, left : left + side]
    img = torch.from_numpy(np.ascontiguousarray(pixels)).float()  # (side, side)
    img = (img - img.min()) / (img.max() - img.min())
    small = F.interpolate(img[None, None], size=(size, size), mode="area")  # (1, 1, size, size)
    return small[0, 0].clamp(0, 1)


def add_noise(img: torch.Tensor, sigma: float, seed: int = 0) -> torch.Tensor:
    """`img` plus Gaussian noise of standard deviation `sigma`, the same for the same seed.

    Uses a private generator, so the notebook's own random state does not move. Not clipped:
    the noise stays Gaussian.
    """
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(img.shape, generator=generator, dtype=img.dtype)
    return img + sigma * noise


def psnr(clean: torch.Tensor, estimate: torch.Tensor, peak: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB, `10 log10(peak² / mean squared error)`: higher is better."""
    if clean.shape != estimate.shape:
        raise ValueError(f"psnr compares images of one shape; got {tuple(clean.shape)} and {tuple(estimate.shape)}")
    mse = float(((clean.double() - estimate.double()) ** 2).mean())
    return float("inf") if mse == 0 else 10 * float(np.log10(peak**2 / mse))


def show(
    images: Sequence,
    titles: Sequence[str] | None = None,
    *,
    cmap: str = "gray",
    vmin: float | None = 0.0,
    vmax: float | None = 1.0,
    size: float = 3.0,
    colorbar: bool = False,
    power: float | None = None,
    axes=None,
) -> Figure:
    """Grey images side by side, one colour scale for all (`vmin=None` and `vmax=None`: each its own).

    Images are shown as pictures (no ticks); attention maps between queries and keys go
    through `plots.heatmaps` instead. `power=0.5` stretches the colour scale so that small
    values show (a square-root scale). Returns the figure; pass `axes` to draw into existing ones.
    """
    arrays = [np.asarray(image.detach().cpu().float() if hasattr(image, "detach") else image) for image in images]
    if titles is not None and len(titles) != len(arrays):
        raise ValueError(f"{len(titles)} titles for {len(arrays)} images")
    if axes is None:
        fig, axes = plt.subplots(1, len(arrays), figsize=(size * len(arrays), size + 0.4), layout="constrained")
        axes = np.atleast_1d(axes)
    else:
        axes = np.atleast_1d(axes)
        fig = axes[0].figure
    for k, (ax, array) in enumerate(zip(axes, arrays)):
        if power is None:
            shown = ax.imshow(array, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
        else:
            norm = PowerNorm(power, vmin=vmin, vmax=vmax)
            shown = ax.imshow(array, cmap=cmap, norm=norm, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        if titles is not None:
            ax.set_title(titles[k], fontsize=10)
        if colorbar:
            fig.colorbar(shown, ax=ax, shrink=0.8)
    return fig
