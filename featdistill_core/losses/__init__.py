"""Distillation losses, one family per module; each module registers its method with :mod:`.registry`.

Importing this package registers every method below in :data:`METHODS`. Adding a method is adding
one module and its import line here:

- ``kd``: ``KDLoss``, logit distillation (Hinton et al. 2015).
- ``fitnet``: ``FeatureDistillationLoss`` / ``FitNetLoss``, the FitNets hint (Romero et al. 2015).
- ``attention``: ``AttentionTransferLoss`` and ``attention_map`` (Zagoruyko & Komodakis 2017).
- ``fsp``: ``FSPLoss`` and ``flow_matrix`` (Yim et al. 2017).
- ``nst``: ``NSTLoss``, neuron selectivity transfer (Huang & Wang 2017).
- ``dkd``: ``DKDLoss``, decoupled KD (Zhao et al. 2022).

Every loss computes its math in float32 (also under autocast) and detaches the teacher's inputs.
"""

from .registry import (
    METHODS,
    BuildContext,
    LayerCount,
    Method,
    OptionSpec,
    PairCheck,
    Refusal,
    StepContext,
    Taps,
    TermLoss,
    TrainingProgress,
    build_term,
    check_pair,
    get_method,
    register_method,
    validate_options,
)

# One line per method family: importing the module registers its method.
from .kd import KDLoss
from .fitnet import REGRESSOR_KINDS, FeatureDistillationLoss, FitNetLoss, ResizeTo, build_regressor
from .attention import NORMALIZATIONS, AttentionTransferLoss, attention_map, normalized_attention, pool_to_common_size
from .fsp import FSPLoss, flow_matrix
from .nst import NSTLoss
from .dkd import DKDLoss

__all__ = [
    "AttentionTransferLoss",
    "BuildContext",
    "DKDLoss",
    "FSPLoss",
    "FeatureDistillationLoss",
    "FitNetLoss",
    "KDLoss",
    "LayerCount",
    "METHODS",
    "Method",
    "NORMALIZATIONS",
    "NSTLoss",
    "OptionSpec",
    "PairCheck",
    "REGRESSOR_KINDS",
    "Refusal",
    "ResizeTo",
    "StepContext",
    "Taps",
    "TermLoss",
    "TrainingProgress",
    "attention_map",
    "build_regressor",
    "build_term",
    "check_pair",
    "flow_matrix",
    "get_method",
    "normalized_attention",
    "pool_to_common_size",
    "register_method",
    "validate_options",
]
