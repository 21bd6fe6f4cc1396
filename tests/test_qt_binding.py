"""The installed Qt binding must not leak or drop references on signal emission.

PySide6-Essentials 6.12.0 on Python 3.11 drops a reference to True on every emit and to None on
every processEvents(); a live window then aborts with "bool_dealloc" after a few thousand emits.
"""

import sys

from PySide6 import QtCore


class _Emitter(QtCore.QObject):
    fired = QtCore.Signal()
    valued = QtCore.Signal(object)


def test_emit_and_process_events_keep_reference_counts(qapp):
    emitter = _Emitter()
    received = []
    emitter.valued.connect(received.append)
    true_before, none_before = sys.getrefcount(True), sys.getrefcount(None)
    for _ in range(300):
        emitter.fired.emit()
        emitter.valued.emit(None)
        qapp.processEvents()
    received.clear()
    assert abs(sys.getrefcount(True) - true_before) < 50
    assert abs(sys.getrefcount(None) - none_before) < 50
