"""Images per second of the streamed image-folder loader, on a generated ImageNet-like folder.

Writes ``--images`` JPEGs of photo-like content (smooth colour fields, edges and grain) at ImageNet's
typical sizes (short side 333-500, aspect 3:4 to 4:3, quality 90: ~100-200 kB each) into a
temporary ``train/CLASS/*.JPEG`` + ``val/CLASS/*.JPEG`` tree, then times full epochs of
:class:`featdistill_core.data.StreamLoader` (random-resized crop + flip at ``--size`` for training,
centre crop for evaluation) for each ``--workers`` count. Each figure is the median over
``--epochs`` epochs after one warm-up epoch (which also fills the page cache, so the disk is out of
the measurement: this is decoding + cropping + batching + normalising).

    python benchmarks/bench_stream_loader.py [--images 512] [--size 224] [--batch 64] [--workers 0 2]

The in-memory loader on the same images (already decoded) is timed too, for scale.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from featdistill_core.data import load_dataset  # noqa: E402


def make_tree(root: Path, count: int, classes: int = 8, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    per_split = {"train": count, "val": max(classes, count // 4)}
    for split, n in per_split.items():
        for i in range(n):
            name = f"c{i % classes:02d}"
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            short = int(rng.integers(333, 501))
            aspect = float(np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3))))
            w, h = (int(short * aspect), short) if aspect >= 1 else (short, int(short / aspect))
            coarse = rng.uniform(0, 255, (6, 8, 3)).astype(np.uint8)
            field = np.asarray(Image.fromarray(coarse).resize((w, h), Image.Resampling.BICUBIC), dtype=np.float32)
            y, x = np.mgrid[0:h, 0:w]
            edges = 40.0 * (np.sin(x / rng.uniform(5, 40)) * np.cos(y / rng.uniform(5, 40)) > 0.3)
            grain = rng.normal(0, 12, (h, w, 3))
            pixels = np.clip(field + edges[..., None] + grain, 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{i:06d}.JPEG", quality=90)


def time_epochs(loader, epochs: int) -> tuple[float, int]:
    """Median seconds per epoch after one warm-up epoch, and images per epoch."""
    for _ in loader.epoch_batches(0):
        pass
    times = []
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        count = 0
        for batch in loader.epoch_batches(epoch):
            count += len(batch.labels)
        times.append(time.perf_counter() - start)
    return statistics.median(times), count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=512, help="training images to generate")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--folder", help="an existing image folder to read instead of a generated one")
    args = parser.parse_args()
    torch.set_num_threads(1)

    with tempfile.TemporaryDirectory(prefix="featdistill-stream-") as tmp:
        root = Path(args.folder) if args.folder else Path(tmp)
        if not args.folder:
            start = time.perf_counter()
            make_tree(root, args.images)
            sizes = [p.stat().st_size for p in root.rglob("*.JPEG")]
            print(f"generated {len(sizes)} JPEGs ({np.mean(sizes) / 1e3:.0f} kB each on average) "
                  f"in {time.perf_counter() - start:.1f} s")
        try:
            load = os.getloadavg()
            load_text = f"load average {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}"
        except OSError:
            load_text = "load average unknown"
        print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {load_text}, python "
              f"{platform.python_version()}, torch {torch.__version__}, Pillow {Image.__version__}")
        print(f"image size {args.size}, batch {args.batch}, median of {args.epochs} epochs after a warm-up")
        for workers in args.workers:
            bundle = load_dataset("imagefolder", str(root), image_size=args.size, loader="stream", workers=workers)
            train = bundle.train_loader(args.batch, seed=0)
            test = bundle.test_loader(args.batch)
            seconds, count = time_epochs(train, args.epochs)
            print(f"  stream, {workers} worker{'s' if workers != 1 else ''}: training {count / seconds:7.1f} images/s", end="")
            seconds, count = time_epochs(test, args.epochs)
            print(f"   evaluation {count / seconds:7.1f} images/s")
            train.close()
            bundle.close()
        memory = load_dataset("imagefolder", str(root), image_size=args.size, loader="memory")
        seconds, count = time_epochs(memory.train_loader(args.batch, seed=0), args.epochs)
        print(f"  memory (decoded once, pad-crop + flip): training {count / seconds:7.1f} images/s")


if __name__ == "__main__":
    main()
