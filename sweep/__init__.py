"""The sweep service: search space, storage, Optuna study runner and command line.

``sweep.start``, ``sweep.resume`` and ``sweep.join`` run studies from Python exactly as the
commands of the same names do (see ``sweep.runner.study``), and return a ``Sweep`` to read the
answer from (``sweep.runner.handle``); ``sweep.load`` opens one without running anything.
"""

from sweep.runner.handle import Sweep, load
from sweep.runner.study import RunOptions, join, resume, start

__all__ = ["RunOptions", "Sweep", "join", "load", "resume", "start"]
