"""`python -m stoplens.cli ...` (used by torchrun / accelerate launch)."""

import sys

from stoplens.cli import main

sys.exit(main())
