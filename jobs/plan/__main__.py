"""``python -m jobs.plan``."""

import sys

from jobs.plan.job import main

if __name__ == "__main__":
    sys.exit(main())
