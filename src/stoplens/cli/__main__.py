"""`python -m stoplens.cli ...` (used by torchrun / accelerate launch).

Owns: the module entry point. Must not: do anything but call the app.
"""

import sys

from stoplens.cli import main

sys.exit(main())
