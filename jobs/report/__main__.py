"""``python -m jobs.report``."""

import sys

from jobs.report.job import main

if __name__ == "__main__":
    sys.exit(main())
