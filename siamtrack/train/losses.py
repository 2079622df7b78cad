"""The training losses: SiamMask's three (score cross-entropy, box smooth L1, per-pixel mask logistic),
the IoU box loss of anchor-free heads, and a distillation loss to a frozen copy of a head."""

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


def iou_box_loss(loc: torch.Tensor, deltas: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """1 - IoU of l/t/r/b boxes around the same point (SiamBAN/NanoTrack), weighted per point, per sample.

    ``loc`` (B, 4, S, S) and ``deltas`` (B, 4, S*S) are distances in crop pixels; both boxes
    share their point, so the overlap is the product of the smaller distances' sums.
    """
    b = loc.shape[0]
    pred = loc.reshape(b, 4, -1).float().clamp(min=0)
    tgt = deltas.float()
    inter = (torch.minimum(pred[:, 0], tgt[:, 0]) + torch.minimum(pred[:, 2], tgt[:, 2])) * \
        (torch.minimum(pred[:, 1], tgt[:, 1]) + torch.minimum(pred[:, 3], tgt[:, 3]))
    area_p = (pred[:, 0] + pred[:, 2]) * (pred[:, 1] + pred[:, 3])
    area_t = (tgt[:, 0] + tgt[:, 2]) * (tgt[:, 1] + tgt[:, 3])
    iou = inter / (area_p + area_t - inter).clamp(min=1e-6)
    return ((1 - iou) * weight).sum() / b


BOX_LOSSES = {"anchors": box_loss, "points": iou_box_loss}  # by NetworkSpec.head_type


def distill_loss(cls: torch.Tensor, loc: torch.Tensor, teacher_cls: torch.Tensor, teacher_loc: torch.Tensor,
                 stride: float) -> torch.Tensor:
    """How far a head's outputs moved from its frozen copy's on the same inputs.

    Scores: KL divergence of the per-point two-class softmax, mean over points. Boxes: L1 of
    the distances in units of the map's stride, weighted by the copy's foreground probability
    (only where the copy sees the target do its boxes mean anything).
    """
    b = cls.shape[0]
    logp = F.log_softmax(cls.float().reshape(b, 2, -1), dim=1)
    t_logp = F.log_softmax(teacher_cls.float().reshape(b, 2, -1), dim=1)
    kl = (t_logp.exp() * (t_logp - logp)).sum(1).mean()
    fg = t_logp[:, 1].exp()
    moved = (loc.float() - teacher_loc.float()).abs().reshape(b, 4, -1).sum(1) / stride
    l1 = (moved * fg).sum() / fg.sum().clamp(min=1e-6)
    return kl + l1
