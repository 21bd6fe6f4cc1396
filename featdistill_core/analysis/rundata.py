"""The data set of a run file's ``[data]``, loaded as the trainer loads it (memory or streamed)."""

from __future__ import annotations


def load_run_data(data_config, seed: int = 0):
    """``load_dataset`` with every field of a ``DataConfig`` (``loader`` and ``workers`` included)."""
    from featdistill_core.data import load_dataset

    return load_dataset(data_config.name, data_config.path or None, image_size=data_config.image_size,
                        demo_train=data_config.demo_train, demo_test=data_config.demo_test, seed=seed,
                        test_fraction=getattr(data_config, "test_fraction", 0.1),
                        loader=getattr(data_config, "loader", "auto"), workers=getattr(data_config, "workers", -1))


def close_data(data) -> None:
    """Release a streamed data set's worker processes (a data set in memory has none)."""
    close = getattr(data, "close", None)
    if callable(close):
        close()


__all__ = ["close_data", "load_run_data"]
