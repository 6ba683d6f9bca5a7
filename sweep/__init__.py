"""The sweep service: search space, storage, Optuna study runner and command line.

``sweep.start``, ``sweep.resume`` and ``sweep.join`` run studies from Python exactly as the
commands of the same names do (see ``sweep.study``).
"""

from sweep.study import join, resume, start

__all__ = ["join", "resume", "start"]
