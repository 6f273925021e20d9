"""python -m app == lookout."""

import sys

from app.cli import main

sys.exit(main())
