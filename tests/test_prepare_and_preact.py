"""The one-off term preparation through the trainer (FT, OFD), the ``preact`` taps of the built-in
networks and the placements that use them (``stage_preacts``, ``last_stage``)."""

import pytest
import torch

from featdistill_core.config import PairConfig
from featdistill_core.events import StageStarted, StepEvent
from featdistill_core.layers import FeatureHooks, format_layer_table, list_layers
from featdistill_core.losses.ofd import margin_from_batchnorm
from featdistill_core.models import create_model, read_state_dict
from featdistill_core.placement import PlacementError, place_method, preactivation_path
from featdistill_core.trainer import Trainer
from featdistill_core.validate import model_layers

from tests._tiny import tiny_config


# ---- preact modules ---------------------------------------------------------------------------


@pytest.mark.parametrize("arch, path", [("resnet8", "layer2.0.preact"), ("demo_student", "layer3.0.preact"),
                                        ("shufflenetv1", "layer2.7.preact")])
def test_a_preact_module_gives_the_value_entering_the_final_relu_and_adds_no_state(arch, path):
    model = create_model(arch, 10).eval()
    block_path = path.rsplit(".", 1)[0]
    assert not any("preact" in key for key in model.state_dict())
    assert sum(1 for _ in model.modules() if type(_).__name__ == "PreActivation") > 0
    with FeatureHooks(model, [path, block_path]) as hooks, torch.no_grad():
        model(torch.randn(2, 3, 32, 32))
        preact, block = hooks.features[path], hooks.features[block_path]
    assert (preact < 0).any()
    assert torch.equal(torch.relu(preact), block)


def test_featdistill_layers_lists_the_preact_modules():
    table = format_layer_table(list_layers(create_model("demo_teacher", 10)))
    assert "layer2.0.preact" in table and "PreActivation" in table


def test_the_preactivation_of_a_stage_is_the_last_marker_or_batchnorm_of_its_shape():
    def find(arch, stage):
        return preactivation_path(stage, model_layers(arch, 10))

    assert find("resnet20", "layer2") == "layer2.2.preact"
    assert find("vgg13", "layer2") == "layer2.bn2"
    assert find("wrn_16_1", "layer2") == "layer2.1.bn2"
    assert find("shufflenetv1", "layer1") == "layer1.3.preact"
    assert find("shufflenetv2", "layer1") is None


def test_placements_of_the_pre_activation_and_last_stage_methods():
    teacher, student = model_layers("resnet32", 10), model_layers("resnet8", 10)
    preacts = ["layer1.4.preact", "layer2.4.preact", "layer3.4.preact"]
    assert place_method("ofd", teacher, student) == [(preacts, ["layer1.0.preact", "layer2.0.preact", "layer3.0.preact"])]
    assert place_method("ab", teacher, student)[0][0] == preacts
    assert place_method("ft", teacher, student) == [(["layer3"], ["layer3"])]
    assert place_method("reviewkd", teacher, student) == [(["layer1", "layer2", "layer3"], ["layer1", "layer2", "layer3"])]
    with pytest.raises(PlacementError, match="pre-ReLU"):
        place_method("ofd", model_layers("shufflenetv2", 10), model_layers("shufflenetv2", 10))


# ---- preparation through the trainer ----------------------------------------------------------


def test_the_trainer_prepares_ft_and_ofd_once_after_the_teacher_is_trained(tmp_path):
    config = tiny_config(tmp_path)
    preacts = ["layer1.0.preact", "layer2.0.preact", "layer3.0.preact"]
    config.pairs = [PairConfig("ft", ["layer3"], ["layer3"], 200.0, "student", {"prepare_epochs": 1}),
                    PairConfig("ofd", preacts, preacts, 0.001, "student", {})]
    config.data.augment = False
    trainer = Trainer(config)
    events, before = [], {}

    def listen(event):
        events.append(event)
        if isinstance(event, StageStarted) and event.stage == "student":     # emitted before the preparation
            before["weight"] = trainer.distiller.term_losses[0].loss.paraphraser.encoder[0].weight.clone()
            before["prepared"] = trainer.distiller.term_losses[0].is_prepared

    trainer.subscribe(listen)
    finished = trainer.run()
    assert [e.stage for e in events if isinstance(e, StageStarted)] == ["teacher", "student"]
    steps = [e for e in events if isinstance(e, StepEvent) and e.stage == "student"]
    assert {"ft:layer3<-layer3", "ofd:" + "+".join(preacts) + "<-" + "+".join(preacts)} <= set(steps[0].losses)
    ft, ofd = trainer.distiller.term_losses
    assert ft.is_prepared and ofd.is_prepared
    for index, path in enumerate(preacts):           # margins of the teacher as trained in this run
        bn = dict(trainer.teacher.named_modules())[path.replace("preact", "bn2")]
        assert torch.allclose(getattr(ofd.loss, f"margin{index}"), margin_from_batchnorm(bn.weight, bn.bias))
    saved = read_state_dict(finished.run_dir + "/adapters.safetensors")
    assert bool(saved["0.prepared"]) and bool(saved["1.prepared"])
    assert before["prepared"] is False
    assert not torch.equal(saved["0.loss.paraphraser.encoder.0.weight"], before["weight"])   # pre-trained
    state = trainer.state.state_dict()
    assert bool(state["terms"]["0.prepared"])                               # part of a resumable run state


def test_a_stop_requested_during_the_preparation_stops_the_run_cleanly(tmp_path):
    config = tiny_config(tmp_path)
    config.pairs = [PairConfig("ft", ["layer3"], ["layer3"], 200.0, "student", {"prepare_epochs": 3})]
    trainer = Trainer(config)
    trainer.subscribe(lambda e: trainer.request_stop() if isinstance(e, StageStarted) and e.stage == "student" else None)
    steps = []
    trainer.subscribe(lambda e: steps.append(e) if isinstance(e, StepEvent) and e.stage == "student" else None)
    finished = trainer.run()
    assert finished.stopped and not steps
    assert not trainer.distiller.term_losses[0].is_prepared
