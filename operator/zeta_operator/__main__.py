"""``python -m zeta_operator``: the same as ``zeta-operator``."""

import sys

from zeta_operator.cli import main

sys.exit(main())
