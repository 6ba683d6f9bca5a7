"""Running a study: its creation (``create``) and budget (``budget``), the ``Sweep`` handle
(``handle``), the run on this machine (``study``) and the whole-run calls the commands wrap
(``entry``: start, resume, join), the in-process trial loop (``loop``) and its signals
(``interrupts``), worker processes (``processes``), the search's stages and confirmation
runs, the objective, its Lightning callbacks and the live progress line.
"""
