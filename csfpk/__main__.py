"""``python -m csfpk``: the ``csfpk`` command line (``csfpk.cli.main``)."""

import sys

from csfpk.cli import main

if __name__ == "__main__":
    sys.exit(main())
