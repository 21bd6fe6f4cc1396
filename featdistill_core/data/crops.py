"""Which region of an image file becomes a sample: the ImageNet training and evaluation crops.

Both are given as a *box* on the upright image, ``(left, top, right, bottom)`` in pixels, which
:func:`~.imagefolder.read_image` resizes to the run's ``image_size`` (bilinear) while decoding, so the
whole transform is one resize of one region and no full-size intermediate is made.

* Training — the random-resized crop of Szegedy et al., "Going Deeper with Convolutions" (CVPR 2015),
  in the form torchvision's ``RandomResizedCrop`` gives it and the ImageNet distillation recipes
  (RepDistiller, CRD, mdistiller, ReviewKD) use: a region of ``scale`` = 8-100 % of the image's
  area and aspect ratio 3/4-4/3 (log-uniform), placed uniformly; up to ten draws, and if none fits, a
  centre crop at the nearest allowed aspect ratio. Then a horizontal flip with probability 1/2.
* Evaluation — "resize the shorter side to 256, centre-crop 224" (He et al. 2016 and every recipe
  since), for any ``image_size`` S: the centred square of side ``0.875 * min(width, height)``
  resized to S, which is the two-step form in one resize (224 / 256 = 0.875 at every S).

Randomness is drawn per sample from ``numpy.random.default_rng((seed, epoch, index))``, so an image's
crop in an epoch does not depend on worker processes, batch size, ranks or resuming.
"""

from __future__ import annotations

import math

import numpy as np

SCALE = (0.08, 1.0)
RATIO = (3.0 / 4.0, 4.0 / 3.0)
EVAL_CROP_FRACTION = 0.875     # 224 / 256


def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator of one sample's augmentation in one epoch."""
    return np.random.default_rng((int(seed), int(epoch), int(index)))


def random_resized_box(width: int, height: int, rng: np.random.Generator, *,
                       scale: tuple[float, float] = SCALE, ratio: tuple[float, float] = RATIO,
                       attempts: int = 10) -> tuple[float, float, float, float]:
    """A random region of a ``width`` x ``height`` image (see the module docstring), as a box."""
    area = width * height
    log_low, log_high = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(attempts):
        target = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(log_low, log_high))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            return (float(left), float(top), float(left + w), float(top + h))
    aspect = width / height                        # nothing fitted: centre crop, aspect clamped
    if aspect < ratio[0]:
        w, h = width, int(round(width / ratio[0]))
    elif aspect > ratio[1]:
        w, h = int(round(height * ratio[1])), height
    else:
        w, h = width, height
    left, top = (width - w) // 2, (height - h) // 2
    return (float(left), float(top), float(left + w), float(top + h))


def eval_box(width: int, height: int, fraction: float = EVAL_CROP_FRACTION) -> tuple[float, float, float, float]:
    """The centred square of side ``fraction * min(width, height)``."""
    side = fraction * min(width, height)
    left, top = (width - side) / 2, (height - side) / 2
    return (left, top, left + side, top + side)
