"""Model zoo: a registry of CIFAR-size and ImageNet architectures, user/torchvision/timm factories, weights I/O.

>>> from featdistill_core.models import create_model, list_models, load_weights
>>> teacher = create_model("resnet32x4", num_classes=100)
>>> student = create_model("mypackage.nets:tiny_cnn", num_classes=100)   # your own factory

Every model's ``forward(x)`` returns logits only; intermediate features are captured with forward
hooks on named modules (``layer1``, ``layer2.1.conv1``, ...). Built-in architectures list their
main stage modules, in order, in the class attribute ``stage_names``.
"""

from featdistill_core.models.external import ModelFactoryError
from featdistill_core.models.registry import ModelInfo, UnknownModelError, create_model, list_models, register_model
from featdistill_core.models.weights import (
    LoadReport, WeightsError, check_weights_file, load_weights, read_state_dict, save_weights,
)

# Importing the architecture modules registers their models.
from featdistill_core.models import (  # noqa: E402,F401  isort: skip
    demo_nets,
    mobilenetv1,
    mobilenetv2,
    resnet,
    resnet_imagenet,
    shufflenetv1,
    shufflenetv2,
    vgg,
    wrn,
)

__all__ = [
    "create_model",
    "list_models",
    "register_model",
    "ModelInfo",
    "UnknownModelError",
    "ModelFactoryError",
    "load_weights",
    "save_weights",
    "read_state_dict",
    "LoadReport",
    "WeightsError",
    "check_weights_file",
]
