"""Run under torchrun by tests/test_ddp.py: train a run file through the Python API as one rank, then
save what this rank holds (student, adapters, metrics, the loss components it computed itself
before any all-reduce) as ``OUT/rank<R>.pt``.

    python -m torch.distributed.run --nproc_per_node=2 tests/_ddp_worker.py RUN.toml OUT
"""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from featdistill_core import distributed  # noqa: E402
from featdistill_core.config import load_config  # noqa: E402
from featdistill_core.trainer import Trainer  # noqa: E402


def main(run_file: str, out: str) -> None:
    dist = distributed.start(distributed.launch_env(), cuda=False)
    trainer = Trainer(load_config(run_file))
    local = []                          # this rank's own loss components, step by step
    reduce = trainer._across_ranks

    def recording(losses, total, logits, labels):
        local.append({name: float(value) for name, value in losses.items()} | {"images": len(labels)})
        return reduce(losses, total, logits, labels)

    trainer._across_ranks = recording
    finished = trainer.run()
    torch.save({"student": trainer.student.state_dict(), "terms": trainer.distiller.term_losses.state_dict(),
                "metrics": dict(finished.metrics), "run_dir": str(trainer.run_dir), "local": local,
                "world_size": dist.world_size}, Path(out) / f"rank{dist.rank}.pt")
    distributed.stop()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
