"""``python -m jobs.dedup``."""

import sys

from jobs.dedup.job import main

if __name__ == "__main__":
    sys.exit(main())
