"""``python -m serving.dev_server``."""

import sys

from serving.dev_server import main

sys.exit(main())
