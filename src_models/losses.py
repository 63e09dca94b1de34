"""Normalized Focal Loss (Sofiiuk et al., 2019), as used by RITM / SimpleClick / iCMFormer."""

from __future__ import annotations

import torch
import torch.nn as nn


class NormalizedFocalLoss(nn.Module):
    """Focal loss whose per-image focal weights are rescaled to sum to the number of pixels.

    alpha 0.5, gamma 2 (docs/protocols.md §3). Pixels equal to ``ignore_label`` in the target do not count.
    Returns the mean over the batch of each image's normalised loss.
    """

    def __init__(self, alpha: float = 0.5, gamma: float = 2.0, ignore_label: float = -1, eps: float = 1e-12):
        super().__init__()
        self.alpha, self.gamma, self.ignore_label, self.eps = alpha, gamma, ignore_label, eps

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if logits.shape != target.shape:
            raise ValueError(f"logits {tuple(logits.shape)} and target {tuple(target.shape)} differ")
        dims = tuple(range(1, logits.ndim))
        valid = (target != self.ignore_label).float()
        positive = target > 0.5
        prob = torch.sigmoid(logits.float())
        pt = torch.where(positive, prob, 1 - prob)
        pt = torch.where(valid > 0, pt, torch.ones_like(pt))
        beta = (1 - pt) ** self.gamma
        with torch.no_grad():
            scale = valid.sum(dim=dims, keepdim=True) / (beta.sum(dim=dims, keepdim=True) + self.eps)
        alpha = torch.where(positive, torch.full_like(pt, self.alpha), torch.full_like(pt, 1 - self.alpha))
        loss = -alpha * beta * scale * torch.log(torch.clamp(pt + self.eps, max=1.0)) * valid
        per_image = loss.sum(dim=dims) / (valid.sum(dim=dims) + self.eps)
        return per_image.mean()
