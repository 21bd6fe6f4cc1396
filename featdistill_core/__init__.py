"""featdistill_core: feature distillation for PyTorch, without Qt.

The public names are importable from the package itself (``from featdistill_core import Trainer``);
each is loaded on first use, so ``import featdistill_core`` is instant and torch is imported only
when something needs it. The desktop window uses these names only (an import-linter contract in
``pyproject.toml`` holds it to that).

Start with a run file::

    from featdistill_core import Trainer, load_config, validate_run
    run = validate_run(load_config("run.toml"))   # every problem at once, as a ConfigError
    Trainer(run).run()

A run that was stopped, failed or killed continues from its last checkpoint with
``Trainer.resume_from(run_dir).run()``; ``run_status(run_dir)`` says what a run folder is, and
``RunFollower(run_dir).poll()`` reads one that another process is writing.

The methods live in :mod:`featdistill_core.losses` (one file each), the model registry in
:mod:`featdistill_core.models`, the data sets in :mod:`featdistill_core.data`.
"""

from __future__ import annotations

import importlib

__version__ = "0.2.0"

_PUBLIC = {
    "featdistill_core.config": (
        "AUTO_WEIGHT", "BalanceConfig", "CheckpointConfig", "DataConfig", "KD_METHOD", "KDConfig", "MonitorConfig",
        "OPTIMIZERS", "OptimConfig", "PAIR_STAGES", "PairConfig",
        "RunConfig", "SCHEDULES", "StudentConfig", "TeacherConfig", "check_values", "checked", "config_from_dict",
        "config_from_toml", "config_to_toml", "load_config", "save_config", "term_names",
    ),
    "featdistill_core.errors": ("ConfigError", "Problem", "Problems", "field_parts"),
    "featdistill_core.stages": ("PlannedStage", "Stage", "plan_stages"),
    "featdistill_core.events": (
        "AttentionSnapshot", "Checkpointed", "EpochEvent", "Failed", "Finished", "LossBalance", "PairMaps", "Resumed",
        "StageStarted", "StepEvent", "TermBalance",
    ),
    "featdistill_core.losses": (
        "LayerCount", "METHODS", "Method", "OptionSpec", "PairCheck", "Taps", "check_pair", "get_method",
        "register_method", "validate_options",
    ),
    "featdistill_core.validate": (
        "TermPlan", "ValidatedRun", "check_files", "check_term_layers", "initial_student", "model_layers",
        "validate_run",
    ),
    "featdistill_core.data": (
        "DATASETS", "DATASET_TITLES", "DatasetError", "FIXED_IMAGE_SIZES", "NEEDS_PATH", "SPLIT_RULES", "dataset_classes",
        "dataset_info", "load_dataset",
    ),
    "featdistill_core.models": ("create_model", "list_models", "load_weights", "register_model", "save_weights"),
    "featdistill_core.layers": ("LayerInfo", "list_layers", "stage_outputs", "suggest_pairs"),
    "featdistill_core.placement": ("PlacementError", "place_method"),
    "featdistill_core.device": ("DeviceOption", "available_devices", "resolve_device"),
    "featdistill_core.launch": (
        "DeviceChoice", "LaunchCommand", "PAUSE", "RESUME", "RunProcess", "STOP", "device_choices", "gpu_count",
        "new_run_folder", "obey_commands", "remote_commands", "start_training_process", "train_command",
    ),
    "featdistill_core.runfolder": (
        "FollowUpdate", "RUN_STATES", "RunFolderError", "RunFollower", "RunRecord", "RunStatus", "load_run",
        "read_balance", "run_folders", "run_state", "run_status",
    ),
    "featdistill_core.checkpoint": ("CheckpointError",),
    "featdistill_core.guard": ("NonFiniteError",),
    "featdistill_core.atomic": ("WriteError",),
    "featdistill_core.balance": ("measure_run",),
    "featdistill_core.compare": (
        "BASELINE", "RECIPE", "WEIGHT_MODES", "Candidate", "CompareEntry", "CompareFolderError", "ComparePlan",
        "CompareResult", "CompareRunner", "EntryFinished", "EntryStarted", "LeaderboardRow", "SweepEstimator",
        "SweepFinished", "leaderboard", "leaderboard_csv", "leaderboard_markdown", "parse_methods", "parse_seeds",
        "plan_compare", "read_compare",
    ),
    "featdistill_core.trainer": ("Trainer",),
    "featdistill_core.demo": ("baseline_config", "demo_config", "run_demo"),
    "featdistill_core.progress": ("Progress", "ProgressEstimator", "format_duration", "step_event_due"),
    "featdistill_core.runstate": ("RunState",),
    "featdistill_core.analysis": (
        "AlignedPair", "AnalysisCancelled", "CKALayer", "CKAResult", "Evaluation", "LAYER_SELECTIONS", "PairCKA",
        "PairSimilarity", "RunCKA", "RunEvaluation", "align_layers", "cka_map_for", "evaluate_run", "check_alignable", "cka_map", "cka_map_of_run", "default_pair_count",
        "evaluate_model", "probe_images", "pairs_as_toml",
        "per_class_accuracy", "read_pair_cka", "render_cka", "render_confusion", "suggest_pairs_by_cka",
    ),
    "featdistill_core.export": ("ExportError", "ExportResult", "FORMATS", "export_student", "onnx_available"),
    "featdistill_core.cli": ("cli_main",),
}
_WHERE = {name: module for module, names in _PUBLIC.items() for name in names}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'featdistill_core' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
