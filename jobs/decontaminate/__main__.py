"""``python -m jobs.decontaminate``."""

import sys

from jobs.decontaminate.job import main

if __name__ == "__main__":
    sys.exit(main())
