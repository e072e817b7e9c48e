"""``python -m zeta_sidecar``: the same as ``zeta-sidecar``."""

import sys

from zeta_sidecar.cli import main

sys.exit(main())
