"""Distillation losses, one family per module; each module registers its method with :mod:`.registry`.

Importing this package registers every method in :data:`METHODS` (``featdistill methods`` lists
them, with their papers, layers and reference weights). Adding a method is adding one module — its
loss, formula and paper in the docstring, and a ``register_method(Method(...))`` call — and its import
line below; nothing else in featdistill names it.

Every loss computes its math in float32 (also under autocast) and detaches the teacher's inputs.
"""

from .registry import (
    METHODS,
    BuildContext,
    LayerCount,
    Method,
    OptionSpec,
    PairCheck,
    PrepareContext,
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
from .pkt import PKTLoss
from .rkd import RKDLoss
from .sp import SPLoss
from .cc import CCLoss
from .vid import VIDLoss
from .crd import CRDLoss
from .dist import DISTLoss
from .ab import ABLoss
from .ft import FTLoss
from .ofd import OFDLoss
from .reviewkd import ReviewKDLoss

__all__ = sorted(name for name, value in dict(globals()).items()
                 if not name.startswith("_") and not isinstance(value, type(registry)))
