"""featdistill_core: feature distillation for PyTorch, without Qt.

Start with :class:`featdistill_core.trainer.Trainer` and a run file read by
:func:`featdistill_core.config.load_config`; the losses live in :mod:`featdistill_core.losses`,
the model registry in :mod:`featdistill_core.models`.
"""

__version__ = "0.1.0"
