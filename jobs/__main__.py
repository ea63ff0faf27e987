"""``python -m jobs --config <recipe>``: run whichever job the recipe is for (``jobs/dispatch.py``)."""

import sys

from jobs.dispatch import main

if __name__ == "__main__":
    sys.exit(main())
