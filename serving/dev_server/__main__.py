"""``python -m serving.dev_server``."""

import sys

from . import main

sys.exit(main())
