"""Write the generated digit folder and its run file for the README's loss-balance measurement.

    python benchmarks/make_glyph_run.py /tmp/glyphs        # writes /tmp/glyphs/images/ and /tmp/glyphs/run.toml
    featdistill compare /tmp/glyphs/run.toml --methods recipe,kd,at --weights both --seeds 0,1,2

The folder (``tests/_glyphs.py``): 1 258 grey 28×28 images of printed digits, 10 classes, no
train/test sub-folders (so ``data.test_fraction`` = 0.1 holds out 10 % of each class, whatever the
seed). The run: the demo's networks, optimiser and terms (AT ×2 at weight 10, hints ×2 at weight 1),
the teacher trained for 15 epochs, the student for 3 — a strong teacher and a student short of
epochs, the situation of issue 8.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from featdistill_core.config import DataConfig, save_config  # noqa: E402
from featdistill_core.demo import demo_config  # noqa: E402
from tests._glyphs import make_glyph_folder  # noqa: E402


def main(target: str) -> None:
    root = Path(target)
    images = make_glyph_folder(root / "images", count=1258, seed=0)
    config = demo_config(0, str(root / "runs"))
    config.name = "glyphs"
    config.data = DataConfig(name="imagefolder", path=str(images), image_size=32, augment=False, test_fraction=0.1)
    config.teacher.train_epochs = 15
    config.epochs = 3
    print(save_config(config, root / "run.toml"))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "glyphs")
