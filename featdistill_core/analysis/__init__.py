"""Analyses of trained (or untrained) networks, Qt-free: layer similarity, pair choice, evaluation.

* :mod:`.cka` — linear CKA with the mini-batch unbiased HSIC estimator (Nguyen, Raghu & Kornblith,
  ICLR 2021): plain tensor code;
* :mod:`.similarity` — :func:`cka_map`, the CKA between every chosen teacher and student layer on a
  probe set, as a :class:`CKAResult` (layer names, shapes, matrix);
* :mod:`.alignment` — :func:`align_layers`: k pairs of greatest summed CKA keeping depth order,
  among those a method's shape check accepts; :func:`suggest_pairs_by_cka` in ``place_method``'s form;
* :mod:`.pairs` — the before/after CKA of each distilled pair, written by the trainer at the end of
  a run (``pair_cka.json``) and read back by :func:`read_pair_cka`;
* :mod:`.evaluation` — :func:`evaluate_model`: top-1, top-5, per-class accuracy, confusion matrix;
* :mod:`.heatmap` — heat-map PNGs drawn with Pillow;
* :mod:`.runs` — one call per question about a run: :func:`cka_map_for` (a run's CKA map, its trained
  networks where a run folder is given), :func:`evaluate_run` (teacher and student per class).
"""

from .alignment import (
    AlignedPair, align_layers, best_alignment, check_alignable, default_pair_count, pairable, pairs_as_toml,
    suggest_pairs_by_cka,
)
from .cka import MIN_BATCH, MinibatchCKA, linear_cka, linear_gram, unbiased_hsic_matrix, unbiased_hsic_self
from .evaluation import Evaluation, evaluate_model, per_class_accuracy
from .heatmap import render_cka, render_confusion, render_heatmap
from .pairs import PAIR_CKA_FILE, PairCKA, PairSimilarity, measure_pair_cka, read_pair_cka, record_pair_cka
from .runs import RunCKA, RunEvaluation, cka_map_for, evaluate_run, run_weights
from .similarity import (
    DEFAULT_BATCH, LAYER_SELECTIONS, AnalysisCancelled, CKALayer, CKAResult, choose_layers, cka_map, cka_map_of_run,
    cka_matrices, probe_images,
)

__all__ = [
    "AlignedPair", "AnalysisCancelled", "RunCKA", "RunEvaluation", "cka_map_for", "evaluate_run", "run_weights", "CKALayer", "CKAResult", "DEFAULT_BATCH", "Evaluation", "LAYER_SELECTIONS",
    "MIN_BATCH", "MinibatchCKA", "PAIR_CKA_FILE", "PairCKA", "PairSimilarity", "align_layers", "best_alignment", "check_alignable",
    "choose_layers", "cka_map", "cka_map_of_run", "cka_matrices", "default_pair_count", "evaluate_model", "linear_cka", "linear_gram", "measure_pair_cka",
    "pairable", "pairs_as_toml", "per_class_accuracy", "probe_images", "read_pair_cka", "record_pair_cka", "render_cka",
    "render_confusion", "render_heatmap", "suggest_pairs_by_cka", "unbiased_hsic_matrix", "unbiased_hsic_self",
]
