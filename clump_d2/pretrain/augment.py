"""Augmentations that respect the sky, on batches of float images in [0, 1].

Allowed (the sky has no up, no handedness and no fixed zoom; the seeing and depth vary):
horizontal/vertical flips, 90-degree rotations, a small shift and scale (bilinear resampling,
reflected border), a Gaussian PSF blur and additive Gaussian noise. Every operation treats the
bands alike, so the colour of a pixel (the ratio of its bands) is kept, except for the noise,
which is independent per pixel and band. No hue, saturation or per-band jitter: colour is physics.

All randomness comes from the ``torch.Generator`` passed in, so a seeded generator gives the
same views (used for exact resumption).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class SkyAugmentation:
    """Random sky-respecting views of a batch.

    Attributes:
        flip: random horizontal and vertical flips.
        rot90: random multiples of 90 degrees.
        max_shift: largest shift, as a fraction of the image side.
        scale: ``(low, high)`` zoom factor (1 keeps the size; > 1 zooms in).
        blur_prob: chance of a PSF blur per image.
        max_blur_sigma: largest Gaussian PSF sigma in pixels (drawn uniformly in [0, max]).
        max_noise: largest Gaussian noise sigma in [0, 1] units (drawn uniformly per image).
    """

    flip: bool = True
    rot90: bool = True
    max_shift: float = 0.05
    scale: tuple = (0.9, 1.1)
    blur_prob: float = 0.5
    max_blur_sigma: float = 1.0
    max_noise: float = 0.02

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """``x``: ``(N, C, H, W)`` float; returns a new tensor of the same shape."""
        n = x.shape[0]
        out = []
        draws = torch.rand(n, 6, generator=generator)
        for i in range(n):
            img = x[i]
            if self.flip and draws[i, 0] < 0.5:
                img = img.flip(-1)
            if self.flip and draws[i, 1] < 0.5:
                img = img.flip(-2)
            if self.rot90:
                img = torch.rot90(img, int(draws[i, 2] * 4) % 4, dims=(-2, -1))
            out.append(img)
        x = torch.stack(out)
        x = self._shift_scale(x, generator)
        x = self._blur(x, generator)
        if self.max_noise > 0:
            sigma = torch.rand(n, 1, 1, 1, generator=generator) * self.max_noise
            x = x + sigma * torch.randn(x.shape, generator=generator)
        return x

    def _shift_scale(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        n = x.shape[0]
        lo, hi = self.scale
        if self.max_shift <= 0 and lo == hi == 1:
            return x
        zoom = lo + (hi - lo) * torch.rand(n, generator=generator)
        # affine_grid works in [-1, 1] coordinates: a shift of f of the side is 2 f.
        shift = (torch.rand(n, 2, generator=generator) * 2 - 1) * self.max_shift * 2
        theta = torch.zeros(n, 2, 3)
        theta[:, 0, 0] = 1 / zoom
        theta[:, 1, 1] = 1 / zoom
        theta[:, :, 2] = shift
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        # Reflection keeps the border's colour (zeros would darken the edges' bands alike, but
        # would also invent a black frame the sky never has).
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection",
                             align_corners=False)

    def _blur(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        n, c = x.shape[:2]
        apply = torch.rand(n, generator=generator) < self.blur_prob
        sigmas = torch.rand(n, generator=generator) * self.max_blur_sigma
        if self.max_blur_sigma <= 0 or not bool(apply.any()):
            return x
        out = x.clone()
        for i in torch.nonzero(apply).flatten().tolist():
            sigma = float(sigmas[i])
            if sigma < 0.1:
                continue
            kernel = gaussian_kernel1d(sigma)
            out[i] = separable_blur(x[i:i + 1], kernel)[0]
        return out


def gaussian_kernel1d(sigma: float) -> torch.Tensor:
    """A normalised 1-D Gaussian of ``sigma`` pixels, radius ceil(3 sigma)."""
    radius = max(1, int(math.ceil(3 * sigma)))
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


def separable_blur(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Blur ``(N, C, H, W)`` with the same 1-D kernel along both axes and in every band
    (one PSF for all bands: colours of flat regions stay exact)."""
    c = x.shape[1]
    r = kernel.numel() // 2
    kx = kernel.view(1, 1, 1, -1).repeat(c, 1, 1, 1)
    ky = kernel.view(1, 1, -1, 1).repeat(c, 1, 1, 1)
    # Reflect padding needs the pad smaller than the side; replicate works for any size.
    mode = "reflect" if r < min(x.shape[-2:]) else "replicate"
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode=mode), kx, groups=c)
    return F.conv2d(F.pad(x, (0, 0, r, r), mode=mode), ky, groups=c)
