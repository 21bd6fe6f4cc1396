"""The embedded demo dataset: shapes on clutter, drawn procedurally, so nothing is ever downloaded.

Each image (32×32 by default) holds one object whose SHAPE is the class, at a random position, size,
small rotation, aspect ratio and colour, drawn over a cluttered background:

* a smooth random colour field (coarse noise, bilinearly upsampled) with, on half the images,
  faint coloured stripes of random frequency and orientation;
* up to three thin strokes of random colour (line segments);
* up to two smaller, semi-transparent shapes of *other* classes (distractors).

The object is drawn last, opaque and at least ``5.5 / 32`` of the image in radius, while
distractors are at most ``4.5 / 32`` and faint, so the object is the thing that matters and an
attention map has something real to find: a network has to tell the large opaque shape from the
small faint ones and from the strokes. Pixel noise (uniform, standard deviation 0.04) is added last.

Everything is vectorised numpy on coordinate grids: a shape is a predicate on normalised coordinates
``(u, v)`` (the pixel's offset from the shape's centre, rotated and divided by its radius), evaluated
for all images of one class at once. 10,000 images take about half a second of one CPU core. The same seed gives
identical bytes on any machine with the same numpy; a different seed gives different images.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence, Union

import numpy as np

from .splits import DatasetError, ImageSplits

CLASS_NAMES = (
    "circle", "square", "triangle", "cross", "ring",
    "diamond", "star", "horizontal bar", "vertical bar", "L-shape",
)

Seed = Union[int, Sequence[int]]

_CHUNK = 1024                       # images generated together (bounds the float working memory)
_OBJECT_RADIUS = (5.5, 11.0)        # in pixels of a 32-pixel image
_DISTRACTOR_RADIUS = (2.5, 4.5)
_DISTRACTOR_ALPHA = (0.3, 0.65)
_MAX_ROTATION = np.deg2rad(12.0)    # keeps square and diamond (45 degrees apart) distinct
_ASPECT = (0.85, 1.18)
_NOISE_SIGMA = 0.04


# --- shapes: predicates on normalised coordinates (u to the right, v downwards, radius 1) ---------

def _circle(u, v):
    return u * u + v * v <= 1.0


def _square(u, v):
    return np.maximum(np.abs(u), np.abs(v)) <= 0.8


def _triangle(u, v):
    # apex up at v = -0.95, base at v = 0.75
    return (v <= 0.75) & (np.abs(u) <= (v + 0.95) * 0.55)


def _cross(u, v):
    au, av = np.abs(u), np.abs(v)
    return ((au <= 0.28) & (av <= 0.95)) | ((av <= 0.28) & (au <= 0.95))


def _ring(u, v):
    d2 = u * u + v * v
    return (d2 <= 1.0) & (d2 >= 0.55 ** 2)


def _diamond(u, v):
    return np.abs(u) + np.abs(v) <= 1.0


def _star(u, v):
    # five points, one pointing up: radius 0.4 in the notches, 1.0 at the tips
    rho = np.sqrt(u * u + v * v)
    theta = np.arctan2(v, u)
    spikes = ((1.0 + np.cos(5.0 * (theta + np.pi / 2))) / 2.0) ** 3
    return rho <= 0.4 + 0.6 * spikes


def _horizontal_bar(u, v):
    return (np.abs(u) <= 0.95) & (np.abs(v) <= 0.3)


def _vertical_bar(u, v):
    return (np.abs(v) <= 0.95) & (np.abs(u) <= 0.3)


def _l_shape(u, v):
    stem = (u >= -0.8) & (u <= -0.25) & (np.abs(v) <= 0.9)
    foot = (v >= 0.35) & (v <= 0.9) & (u >= -0.8) & (u <= 0.8)
    return stem | foot


SHAPES: tuple[Callable[[np.ndarray, np.ndarray], np.ndarray], ...] = (
    _circle, _square, _triangle, _cross, _ring,
    _diamond, _star, _horizontal_bar, _vertical_bar, _l_shape,
)


@dataclass(frozen=True)
class DemoImages:
    """``images`` uint8 (N, 3, H, W); ``labels`` int64 (N,); ``masks`` bool (N, H, W), the object's pixels."""

    images: np.ndarray
    labels: np.ndarray
    masks: np.ndarray


def make_demo_images(count: int, *, seed: Seed = 0, image_size: int = 32) -> DemoImages:
    """Draw ``count`` demo images, deterministically from ``seed`` (an int or a sequence of ints).

    Classes are balanced within every block of 1024 images (each class appears ``count // 10`` or
    ``count // 10 + 1`` times per block) and shuffled.
    """
    if count < 0:
        raise DatasetError(f"demo dataset: the number of images must be >= 0; got {count}")
    if image_size < 8:
        raise DatasetError(f"demo dataset: image_size must be at least 8; got {image_size}")
    entropy = [int(seed)] if np.isscalar(seed) else [int(s) for s in seed]
    if any(value < 0 for value in entropy):
        raise DatasetError(f"demo dataset: the seed must be a non-negative integer; got {seed}")
    chunk_counts = [min(_CHUNK, count - start) for start in range(0, count, _CHUNK)]
    streams = np.random.SeedSequence(entropy).spawn(len(chunk_counts))
    parts = [_draw_chunk(np.random.default_rng(stream), n, image_size) for stream, n in zip(streams, chunk_counts)]
    if not parts:
        return DemoImages(np.zeros((0, 3, image_size, image_size), np.uint8), np.zeros(0, np.int64),
                          np.zeros((0, image_size, image_size), bool))
    return DemoImages(
        images=np.concatenate([p.images for p in parts]),
        labels=np.concatenate([p.labels for p in parts]),
        masks=np.concatenate([p.masks for p in parts]),
    )


def load_demo(train_count: int = 5000, test_count: int = 2000, *, seed: int = 0, image_size: int = 32) -> ImageSplits:
    """The demo dataset's train and test splits, drawn from independent streams of ``seed``."""
    if train_count < 1 or test_count < 1:
        raise DatasetError(f"demo dataset: needs at least one train and one test image; got {train_count} and {test_count}")
    train = make_demo_images(train_count, seed=(seed, 0), image_size=image_size)
    test = make_demo_images(test_count, seed=(seed, 1), image_size=image_size)
    return ImageSplits(train.images, train.labels, test.images, test.labels, list(CLASS_NAMES))


# --- drawing (float32 throughout: it halves the memory traffic) -------------------------------------

def _uniform(rng: np.random.Generator, low: float, high: float, shape) -> np.ndarray:
    return np.float32(low) + np.float32(high - low) * rng.random(shape, dtype=np.float32)


def _frame_coordinates(pixels, centre, angle, scale_u, scale_v):
    """Each pixel's coordinates in a rotated, scaled frame around ``centre``, one frame per image.

    ``u = ( cos(a) (x - cx) + sin(a) (y - cy)) / scale_u`` and
    ``v = (-sin(a) (x - cx) + cos(a) (y - cy)) / scale_v``, shapes (n, S, S). Each is a sum of a term
    in ``x`` only (n, 1, S) and one in ``y`` only (n, S, 1), so a full-size array is made once.
    """
    cos = np.cos(angle)[:, None, None]
    sin = np.sin(angle)[:, None, None]
    dx = pixels[None, None, :] - centre[:, 0, None, None]     # (n, 1, S)
    dy = pixels[None, :, None] - centre[:, 1, None, None]     # (n, S, 1)
    su = scale_u[:, None, None]
    sv = scale_v[:, None, None]
    u = (cos / su) * dx + (sin / su) * dy
    v = (cos / sv) * dy - (sin / sv) * dx
    return u, v


def _draw_chunk(rng: np.random.Generator, count: int, size: int) -> DemoImages:
    scale = np.float32(size / 32.0)
    pixels = np.arange(size, dtype=np.float32) + np.float32(0.5)    # pixel centres
    num_classes = len(SHAPES)

    canvas, base_colour = _background(rng, count, pixels)
    _draw_strokes(rng, canvas, pixels, scale)

    # the object's class, balanced within the chunk
    labels = rng.permutation(np.arange(count) % num_classes).astype(np.int64)

    # distractors: smaller, faint shapes of other classes
    for _ in range(2):
        present = rng.random(count) < 0.6
        classes = (labels + rng.integers(1, num_classes, count)) % num_classes
        radius = _uniform(rng, *_DISTRACTOR_RADIUS, count) * scale
        centre = _uniform(rng, 0, size, (count, 2))
        colour = rng.random((count, 3), dtype=np.float32)
        alpha = _uniform(rng, *_DISTRACTOR_ALPHA, count) * present
        _draw_shapes(rng, canvas, pixels, classes, centre, radius, colour, alpha)

    # the object: opaque, large, contrasting with the background's base colour
    radius = _uniform(rng, *_OBJECT_RADIUS, count) * scale
    margin = np.float32(0.8) * radius
    centre = margin[:, None] + rng.random((count, 2), dtype=np.float32) * (size - 2 * margin)[:, None]
    colour = rng.random((count, 3), dtype=np.float32)
    far_colour = np.where(base_colour < 0.5, base_colour + np.float32(0.45), base_colour - np.float32(0.45))
    too_close = np.abs(colour - base_colour).max(axis=1) < 0.35
    colour[too_close] = far_colour[too_close]
    masks = _draw_shapes(rng, canvas, pixels, labels, centre, radius, colour, np.ones(count, np.float32))

    # uniform noise of standard deviation _NOISE_SIGMA (uniform on [-a, a] has sd a / sqrt(3))
    noise = rng.random(canvas.shape, dtype=np.float32) - np.float32(0.5)
    canvas += noise * np.float32(2 * np.sqrt(3) * _NOISE_SIGMA)
    canvas *= np.float32(255.0)
    canvas += np.float32(0.5)                       # round to nearest when truncating below
    np.clip(canvas, 0, 255, out=canvas)
    return DemoImages(canvas.astype(np.uint8), labels, masks)


def _background(rng: np.random.Generator, count: int, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A smooth random colour field plus, on half the images, faint coloured stripes.

    The field is ``base + U @ coarse @ U^T`` per channel, ``coarse`` a 5×5 Gaussian noise and ``U``
    the bilinear upsampling matrix; the stripes are ``amplitude * colour * sin(2 pi f (x cos a + y sin a) + phase)``.
    """
    size = len(pixels)
    base_colour = _uniform(rng, 0.15, 0.85, (count, 3))
    coarse = rng.standard_normal((count, 3, 5, 5), dtype=np.float32) * np.float32(0.15)
    upsample = _bilinear_matrix(5, size)
    canvas = upsample @ (coarse @ upsample.T)                  # (count, 3, S, S)
    canvas += base_colour[:, :, None, None]

    angle = _uniform(rng, 0, np.pi, count)
    frequency = _uniform(rng, 1 / 8, 1 / 3, count) * np.float32(32.0 / size)      # cycles per pixel
    phase = _uniform(rng, 0, 2 * np.pi, count)
    amplitude = _uniform(rng, 0.05, 0.2, count) * (rng.random(count) < 0.5)
    stripe_colour = _uniform(rng, -1.0, 1.0, (count, 3))
    cycles = np.float32(2 * np.pi) * frequency
    term_x = (cycles * np.cos(angle))[:, None, None] * pixels[None, None, :]
    term_y = (cycles * np.sin(angle))[:, None, None] * pixels[None, :, None] + phase[:, None, None]
    wave = np.sin(term_x + term_y)
    canvas += (amplitude[:, None] * stripe_colour)[:, :, None, None] * wave[:, None]
    return canvas, base_colour


def _bilinear_matrix(source: int, target: int) -> np.ndarray:
    """(target, source) matrix of bilinear interpolation weights with aligned corners."""
    positions = np.linspace(0, source - 1, target)
    low = np.clip(np.floor(positions).astype(int), 0, source - 2)
    frac = positions - low
    matrix = np.zeros((target, source), np.float32)
    matrix[np.arange(target), low] = 1 - frac
    matrix[np.arange(target), low + 1] += frac
    return matrix


def _draw_strokes(rng: np.random.Generator, canvas: np.ndarray, pixels: np.ndarray, scale: np.float32) -> None:
    """Up to three opaque strokes per image: thin rotated rectangles, 1 to 2.4 pixels wide (at 32 pixels)."""
    count, _, size, _ = canvas.shape
    for _ in range(3):
        present = rng.random(count) < 0.7
        start = _uniform(rng, 0, size, (count, 2))
        end = _uniform(rng, 0, size, (count, 2))
        half_width = _uniform(rng, 0.5, 1.2, count) * scale
        colour = rng.random((count, 3), dtype=np.float32)
        direction = end - start
        half_length = np.maximum(np.hypot(direction[:, 0], direction[:, 1]) / 2, np.float32(0.5))
        angle = np.arctan2(direction[:, 1], direction[:, 0])
        u, v = _frame_coordinates(pixels, (start + end) / 2, angle, half_length, half_width)
        on_stroke = (np.maximum(np.abs(u), np.abs(v)) <= 1.0) & present[:, None, None]
        np.copyto(canvas, colour[:, :, None, None], where=on_stroke[:, None])


def _draw_shapes(
    rng: np.random.Generator,
    canvas: np.ndarray,
    pixels: np.ndarray,
    classes: np.ndarray,
    centre: np.ndarray,
    radius: np.ndarray,
    colour: np.ndarray,
    alpha: np.ndarray,
) -> np.ndarray:
    """Alpha-blend one shape into each image: ``canvas = canvas + alpha * mask * (colour - canvas)``.

    Each shape gets a random rotation in +-12 degrees and an aspect ratio (its ``u`` radius is
    ``radius * aspect``, its ``v`` radius ``radius / aspect``); returns the masks (N, H, W).
    """
    count = len(classes)
    size = len(pixels)
    angle = _uniform(rng, -_MAX_ROTATION, _MAX_ROTATION, count)
    aspect = _uniform(rng, *_ASPECT, count)
    masks = np.zeros((count, size, size), dtype=bool)
    for label, shape in enumerate(SHAPES):
        index = np.flatnonzero(classes == label)
        if len(index) == 0:
            continue
        r, a = radius[index], aspect[index]
        u, v = _frame_coordinates(pixels, centre[index], angle[index], r * a, r / a)
        masks[index] = shape(u, v)
    image, row, col = np.nonzero(masks)       # blend only the covered pixels
    pixels_rgb = canvas[image, :, row, col]    # (K, 3)
    canvas[image, :, row, col] = pixels_rgb + alpha[image, None] * (colour[image] - pixels_rgb)
    return masks
