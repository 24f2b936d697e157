"""`python -m CUTSSegmentationLib ...` is the `cuts` command line (used by Slicer's background process)."""

import sys

from .cli import main

sys.exit(main())
