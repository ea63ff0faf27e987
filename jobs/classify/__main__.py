"""``python -m jobs.classify``."""

import sys

from jobs.classify.job import main

if __name__ == "__main__":
    sys.exit(main())
