"""The three SiamMask losses: score (cross-entropy), box (smooth L1), mask (per-pixel logistic)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def score_loss(cls: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Balanced cross-entropy over sampled anchors: mean over positives and negatives, averaged.

    ``cls`` is the (B, 2A, S, S) head output (background channels first), ``labels`` (B, A*S*S)
    with 1 / 0 / -1 (ignored), flat index anchor*S*S + row*S + col.
    """
    b = cls.shape[0]
    logits = cls.reshape(b, 2, -1).permute(0, 2, 1).reshape(-1, 2)
    labels = labels.reshape(-1)
    logp = F.log_softmax(logits.float(), dim=1)
    total = logits.new_zeros((), dtype=torch.float32)
    for value in (1, 0):
        sel = labels == value
        if sel.any():
            total = total + 0.5 * F.nll_loss(logp[sel], labels[sel])
    return total


def box_loss(loc: torch.Tensor, deltas: torch.Tensor, weight: torch.Tensor, beta: float = 1.0 / 9) -> torch.Tensor:
    """Smooth L1 on normalised deltas, weighted per anchor (1/num_pos at positives), per sample."""
    b = loc.shape[0]
    pred = loc.reshape(b, 4, -1).float()
    diff = F.smooth_l1_loss(pred, deltas, beta=beta, reduction="none").sum(dim=1)
    return (diff * weight).sum() / b


def mask_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Binary logistic loss per pixel (the official soft-margin loss), mean over pixels and cells."""
    if logits.numel() == 0:
        return logits.sum() * 0.0
    return F.soft_margin_loss(logits.float().reshape(logits.shape[0], -1),
                              (target.reshape(target.shape[0], -1) * 2 - 1).float())


def mask_iou(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean IoU of thresholded predictions (logit > 0) with the targets, for logging."""
    if logits.numel() == 0:
        return logits.new_zeros(())
    pred = logits.reshape(logits.shape[0], -1) > 0
    tgt = target.reshape(target.shape[0], -1) > 0.5
    inter = (pred & tgt).sum(1).float()
    union = (pred | tgt).sum(1).float().clamp(min=1)
    return (inter / union).mean()
