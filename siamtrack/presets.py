"""Tracking hyper-parameters: ``Preset``, the built-in ``PRESETS`` and the presets checkpoints store.

Values come from ``siamtrack.choices.PRESET_VALUES`` (one list for the code and the commands);
the lost-target thresholds' provenance is ``LOST_TUNING`` / ``NANO_LOST_TUNING``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

from siamtrack.choices import PRESET_VALUES
from siamtrack.errors import SiamtrackError
from siamtrack.lost import StateMachine

if TYPE_CHECKING:
    from siamtrack.weights.loading import LoadedCheckpoint

__all__ = ["DEFAULT_PRESET", "PRESETS", "Preset", "checkpoint_preset", "make_preset"]


@dataclass(frozen=True)
class Preset:
    """Tracking hyper-parameters (the official configs' ``hp`` section plus fixed defaults)."""

    name: str
    penalty_k: float
    window_influence: float
    lr: float
    seg_thr: float
    context_amount: float = 0.5
    # The arithmetic conventions (siamtrack.styles.STYLES): "official" (foolwood/SiamMask
    # tools/test.py), "pysot" (PySOT's trackers), "opencv" (OpenCV's TrackerNano, measured against cv2 5.1).
    style: str = "official"
    # Lost-target handling (siamtrack's, not the official code's; see siamtrack.lost): a score
    # below lost_score, or an appearance below lost_look with a score below found_score, on
    # lost_after frames in a row makes an object lost (no mask, no box); a score below
    # uncertain_score flags it. While lost, up to redetect_crops crops a frame at the target's
    # scale search the frame; found_after candidates in a row at >= found_score and >= found_look,
    # each within a target size of the last, bring it back (at the border it left by, >= lost_look
    # is enough). lost_state=False: always "tracked" and drawn, as the official code does.
    # Provenance of the values: LOST_TUNING.
    lost_state: bool = True
    lost_score: float = 0.3
    uncertain_score: float = 0.6
    lost_after: int = 2
    found_score: float = 0.9
    found_after: int = 2
    lost_look: float = 0.75
    found_look: float = 0.8
    redetect: bool = True
    redetect_crops: int = 4
    # The axis-aligned box: the mask's bounding box where the mean mask probability over the mask
    # reaches mask_box (a confident mask), else the regression's; None: always the regression's.
    mask_box: float | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preset:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def state_machine(self) -> StateMachine | None:
        """A fresh object's lost-target state machine with these thresholds (None: ``lost_state`` off)."""
        if not self.lost_state:
            return None
        return StateMachine(self.lost_score, self.uncertain_score, self.lost_after, self.found_score,
                            self.found_after, self.lost_look, self.found_look)


PRESETS: dict[str, Preset] = {name: Preset(name, **values) for name, values in PRESET_VALUES.items()}
LOST_TUNING = (
    "scripts/lost_target.py, training data only: score and appearance traces of the normal step on "
    "generated occlusion/exit/distractor clips and on the training sequences hike, soccerball, swing "
    "(clean and with a painted occluder) and motocross-bumps, bmx-bumps, dance-jump, breakdance-flare, "
    "dog-agility, rollerblade, hockey, kite-walk (clean); lost_look 0.75 gated by found_score calls "
    "1.7% of clean training frames misses (without the gate: 10%); found_look 0.8 over 0.7 on generated "
    "clips with seeds 100-105: hidden frames flagged 0.985 vs 0.763, re-acquired within 10 frames "
    "16/18 vs 14/18; a candidate at the border an object left by needs only lost_look: exit clips with "
    "seeds 100-113 re-acquired within 10 frames 14/14 vs 8/14 (seeds 100-105, all kinds: 18/18 vs 16/18, "
    "flagged 0.985 both)"
)

NANO_LOST_TUNING = (
    "nanotrack-v3 (its other thresholds are the defaults above): score and appearance traces of the normal "
    "step (scripts/lost_target.py tune --model nanotrack-v3 and the same traces per score threshold), "
    "training data only: generated clips with seeds 100-103 and the painted hike, soccerball, swing "
    "(hidden frames), the clean training sequences of LOST_TUNING. Its score stays high on what hides the "
    "target (median 0.91 on hidden frames): lost_score 0.3 -> 0.7 calls 31% of hidden frames misses instead "
    "of 18%, at 1.5% of clean frames instead of 1.2%"
)


# The built-in preset for a checkpoint that carries none (and for a network without a checkpoint).
DEFAULT_PRESET = {"siammask_sharp": "davis", "siammask_lite": "lite-untuned", "nanotrack_v3": "nanotrack-v3",
                  "nanotrack_v2": "nanotrack-v2", "siammask_nano": "siammask-nano"}


def make_preset(preset: str | Preset | dict) -> Preset:
    """A ``Preset`` from one, from its values, or from a built-in name (an unknown name is a user error)."""
    if isinstance(preset, Preset):
        return preset
    if isinstance(preset, dict):
        return Preset.from_dict(preset)
    if preset not in PRESETS:
        raise SiamtrackError(f"unknown preset {preset!r}; known: {', '.join(PRESETS)}")
    return PRESETS[preset]


def checkpoint_preset(loaded: LoadedCheckpoint, model_name: str) -> Preset | None:
    """The preset stored in a checkpoint, named after its model: ``<model>-tuned`` when the checkpoint
    records how it was tuned (``preset_tuning``), else ``<model>-checkpoint``; None if it stores none.

    The stored name is not kept: it may repeat a built-in name with other values.
    """
    return stored_preset(loaded.meta, model_name)


def stored_preset(meta: dict[str, Any], model_name: str) -> Preset | None:
    if not isinstance(meta.get("preset"), dict):
        return None
    origin = "tuned" if "preset_tuning" in meta else "checkpoint"
    return Preset.from_dict({**meta["preset"], "name": f"{model_name}-{origin}"})
