"""``python -m bench``: run every benchmark and write docs/benchmarks.md (see run_all)."""

import sys

from bench.run_all import main

sys.exit(main())
