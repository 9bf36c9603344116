"""``python -m reglab``: the reglab command."""

import sys

from reglab.lab.cli import main

sys.exit(main())
