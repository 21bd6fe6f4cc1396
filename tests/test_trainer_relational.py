"""PKT, RKD, SP, CC, VID and CRD through the trainer: each placed at its reference placement on the demo
networks, one tiny epoch, every term's loss in the step events, finite, and what it trained saved."""

import math

import pytest
import torch

from featdistill_core.config import PairConfig
from featdistill_core.events import Finished, StepEvent
from featdistill_core.models import read_state_dict
from featdistill_core.placement import place_method
from featdistill_core.trainer import Trainer
from featdistill_core.validate import model_layers

from tests._tiny import tiny_config

METHODS = ["pkt", "rkd", "sp", "cc", "vid", "crd"]


@pytest.mark.parametrize("key", METHODS)
def test_one_epoch_at_the_reference_placement(key, tmp_path):
    terms = place_method(key, model_layers("demo_teacher", 10), model_layers("demo_student", 10))
    config = tiny_config(tmp_path, pairs=[PairConfig(key, t, s) for t, s in terms])
    trainer = Trainer(config)
    events = []
    trainer.subscribe(events.append)
    finished = trainer.run()
    assert isinstance(events[-1], Finished) and not finished.stopped
    steps = [e for e in events if isinstance(e, StepEvent) and e.stage == "student"]
    assert len(steps) == 4                                        # 128 images / 32
    names = [name for name in steps[0].losses if name != "ce"]
    assert len(names) == len(terms) and all(name.startswith(f"{key}:") for name in names)
    assert all(math.isfinite(v) for step in steps for v in step.losses.values())
    path = trainer.run_dir / "adapters.safetensors"
    if key in ("pkt", "rkd", "sp"):
        assert not path.exists()                                   # nothing trained besides the student
        return
    adapters = read_state_dict(path)
    assert adapters
    if key == "crd":
        # one epoch visits every image once: each memory row was written back, renormalised
        for side in ("student", "teacher"):
            (memory,) = [v for name, v in adapters.items() if name.endswith(f"memory_{side}")]
            assert memory.shape == (128, 128)
            assert torch.allclose(memory.norm(dim=1), torch.ones(128), atol=1e-5)
        (z,) = [v for name, v in adapters.items() if name.endswith("normalizers")]
        assert (z > 0).all()
