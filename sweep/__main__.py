"""`python -m sweep`: runs the command line in sweep.cli."""

import sys

from sweep.cli import main

sys.exit(main())
