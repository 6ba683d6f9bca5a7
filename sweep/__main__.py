"""`python -m sweep`: runs the command line in sweep.cli, with the OpenMP wait policy that
does not spin set before anything imports torch (``sweep.runner.processes.wait_policy``)."""

import os

from sweep.runner.processes import wait_policy

os.environ.update(wait_policy(os.environ))

from sweep.cli import run_main

run_main()
