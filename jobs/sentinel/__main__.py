"""``python -m jobs.sentinel``."""

import sys

from jobs.sentinel.job import main

if __name__ == "__main__":
    sys.exit(main())
