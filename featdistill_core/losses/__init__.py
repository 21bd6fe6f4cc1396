"""Distillation losses, one family per module, and the catalogue of feature-distillation methods.

- ``kd``: ``KDLoss``, logit distillation (Hinton et al. 2015).
- ``fitnet``: ``FeatureDistillationLoss`` / ``FitNetLoss``, the FitNets hint (Romero et al. 2015).
- ``attention``: ``AttentionTransferLoss`` and ``attention_map`` (Zagoruyko & Komodakis 2017).
- ``fsp``: ``FSPLoss`` and ``flow_matrix`` (Yim et al. 2017).
- ``methods``: ``METHODS``, ``validate_options``, ``check_pair``, ``build_pair_loss``.

Every loss computes its math in float32 (also under autocast) and detaches the teacher's inputs.
"""

from .attention import NORMALIZATIONS, AttentionTransferLoss, attention_map, normalized_attention, pool_to_common_size
from .fitnet import REGRESSOR_KINDS, FeatureDistillationLoss, FitNetLoss, ResizeTo, build_regressor
from .fsp import FSPLoss, flow_matrix
from .kd import KDLoss
from .methods import (
    METHODS,
    MethodInfo,
    OptionSpec,
    PairCheck,
    PairLoss,
    build_pair_loss,
    check_pair,
    validate_options,
)

__all__ = [
    "AttentionTransferLoss",
    "FSPLoss",
    "FeatureDistillationLoss",
    "FitNetLoss",
    "KDLoss",
    "METHODS",
    "MethodInfo",
    "NORMALIZATIONS",
    "OptionSpec",
    "PairCheck",
    "PairLoss",
    "REGRESSOR_KINDS",
    "ResizeTo",
    "attention_map",
    "build_pair_loss",
    "build_regressor",
    "check_pair",
    "flow_matrix",
    "normalized_attention",
    "pool_to_common_size",
    "validate_options",
]
