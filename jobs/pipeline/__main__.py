"""``python -m jobs.pipeline``."""

import sys

from jobs.pipeline.job import main

if __name__ == "__main__":
    sys.exit(main())
