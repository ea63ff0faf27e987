"""``python -m jobs.synthesize``."""

import sys

from jobs.synthesize.job import main

if __name__ == "__main__":
    sys.exit(main())
