"""The sweep service: search space, storage, Optuna study runner and command line.

As in Optuna: ``sweep.create_study`` makes a study and ``sweep.load_study`` opens one, each
returning a ``Sweep`` (``sweep.runner.handle``) whose ``optimize`` runs it and whose
``recommended_trial``, ``answer()`` and ``model()`` read the answer. ``sweep.start`` is the
two in one call (what ``python -m sweep start`` runs); ``sweep.resume`` and ``sweep.join``
run a study as the commands of the same names do (``sweep.runner.entry``).
"""

from sweep.runner.create import create_study
from sweep.runner.entry import join, resume, start
from sweep.runner.handle import Sweep, load_study
from sweep.runner.study import RunOptions

__all__ = ["RunOptions", "Sweep", "create_study", "join", "load_study", "resume", "start"]
