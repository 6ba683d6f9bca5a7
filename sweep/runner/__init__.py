"""Running a study: the Python API (``study``) and its ``Sweep`` handle (``handle``),
the in-process trial loop (``loop``) and its signals (``interrupts``), worker
processes (``processes``), the search's stages and confirmation runs, the
objective, its Lightning callbacks and the live progress line.
"""
