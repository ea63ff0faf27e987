"""``python -m jobs.curate``."""

import sys

from jobs.curate.job import main

if __name__ == "__main__":
    sys.exit(main())
