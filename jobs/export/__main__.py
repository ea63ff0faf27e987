"""``python -m jobs.export``."""

import sys

from jobs.export.job import main

if __name__ == "__main__":
    sys.exit(main())
