"""A tiny run for trainer, CLI and window tests: seconds on a CPU."""

from featdistill_core.config import checked, DataConfig, MonitorConfig, PairConfig, RunConfig, TeacherConfig


def tiny_config(tmp_path, **changes) -> RunConfig:
    config = RunConfig(
        name="tiny",
        seed=0,
        device="cpu",
        epochs=1,
        batch_size=32,
        output_dir=str(tmp_path / "runs"),
        teacher=TeacherConfig(arch="demo_teacher", train_epochs=1),
        data=DataConfig(name="demo", demo_train=128, demo_test=64),
        monitor=MonitorConfig(log_every=1, snapshot_every=2, probe_images=4),
        pairs=[
            PairConfig("at", ["layer2"], ["layer2"], 1000.0, "joint", {"p": 2, "normalize": "l2"}),
            PairConfig("hint", ["layer3"], ["layer3"], 1.0, "joint", {}),
        ],
    )
    for key, value in changes.items():
        setattr(config, key, value)
    return checked(config)
