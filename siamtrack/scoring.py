"""The network work of a frame: crops -> trunk -> heads -> decoded candidates (and masks on demand).

The normal step and the lost-object search both score crops this way; ``CropScorer`` keeps that
in one place, with the fp32 re-decision of half-precision near-ties and the stage timings.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from siamtrack import geometry as geo
from siamtrack.decoders import HeadDecoder
from siamtrack.lost import finite
from siamtrack.presets import Preset
from siamtrack.runtime import Runtime, StageTimer
from siamtrack.state import select_rows
from siamtrack.styles import Style


class CropScorer:
    """Scores crops for objects with a prepared network and its head decoder."""

    def __init__(self, net: Runtime, decoder: HeadDecoder, timer: StageTimer) -> None:
        self.net, self.decoder, self.timer = net, decoder, timer
        self.exact_decisions = 0  # crops whose half-precision near-tie was decided again in fp32

    def evaluate(self, frame: np.ndarray, kernels: Any, n_objects: int, owners: list[int], centers: list[np.ndarray],
                 sides: list[float], sizes: list[np.ndarray], pad: np.ndarray, style: Style, preset: Preset
                 ) -> tuple[list[tuple], np.ndarray, list[bool], Any]:
        """Score crops of ``frame`` for objects ``owners`` (rows of ``kernels``, which holds
        ``n_objects``) at ``centers``/``sides``: one pick per crop (the candidate and the state update
        of a target of ``sizes``), the correlation vectors at the picks (K, C), whether each crop's
        outputs are finite, and the search features (for ``masks``).

        A half-precision near-tie (the runtime's ``decision_margin``) is decided again in fp32.
        """
        if owners != list(range(n_objects)):
            kernels = select_rows(kernels, torch.tensor(owners, device=self.net.device))
        x = self.net.crops(frame, centers, sides, geo.INSTANCE_SIZE, pad, style)
        self.timer.mark("crop")
        with self.net.inference():
            score, delta, search = self._heads(x, kernels, self.net.backbone, ("backbone", "heads"))
            picks = [self.decoder.select(c, s, score[j], delta[j], preset)
                     for j, (c, s) in enumerate(zip(centers, sizes, strict=True))]
            margin = getattr(self.net, "decision_margin", None)
            cells = self.decoder.shape[1] * self.decoder.shape[2]
            redo = [j for j, pk in enumerate(picks) if margin and geo.decision_margin(pk[6][0], cells) < margin]
            if redo:
                exact = self._heads(x[redo], select_rows(kernels, torch.tensor(redo, device=self.net.device)),
                                    self.net.exact_backbone, ("exact", "exact"))
                for n, j in enumerate(redo):
                    score[j], delta[j] = exact[0][n], exact[1][n]
                    picks[j] = self.decoder.select(centers[j], sizes[j], score[j], delta[j], preset)
                for mine, theirs in zip(search, exact[2], strict=True):
                    mine[redo] = theirs
                self.exact_decisions += len(redo)
            rows, cols = (torch.tensor([pk[k] for pk in picks], device=self.net.device) for k in (1, 2))
            looks = search.corr[torch.arange(len(picks), device=self.net.device), :, rows, cols]
            looks = looks.detach().float().cpu().numpy()
        usable = [finite(score[j], delta[j], looks[j]) for j in range(len(picks))]
        return picks, looks, usable, search

    def _heads(self, x: Any, kernels: Any, backbone: Any, stages: tuple[str, str]
               ) -> tuple[np.ndarray, np.ndarray, Any]:
        """Foreground probabilities (K, N), box outputs (K, 4, N) and search features of crops ``x``."""
        feats = backbone(x)
        self.timer.mark(stages[0])
        cls, loc, search = self.net.heads(feats, kernels)
        k = cls.shape[0]
        score = torch.softmax(cls.detach().float().reshape(k, 2, -1), dim=1)[:, 1].cpu().numpy()
        delta = loc.detach().float().reshape(k, 4, -1).cpu().numpy()
        self.timer.mark(stages[1])
        return score, delta, search

    def masks(self, search: Any, picks: list[tuple], crops: list[int]) -> list[np.ndarray | None]:
        """Mask probabilities (127x127) refined at the mask cells of the picks of crops ``crops`` (the
        decoder's ``mask_cell``); None each for a box-only head."""
        if not self.decoder.masks:
            return [None] * len(crops)
        rows, cols, batch = (torch.tensor(v, device=self.net.device) for v in
                             ([picks[c][7][0] for c in crops], [picks[c][7][1] for c in crops], crops))
        with self.net.inference():
            logits = self.net.refine(search, rows, cols, batch)
        return list(torch.sigmoid(logits.detach().float()).cpu().numpy())
