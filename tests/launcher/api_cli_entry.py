"""`--run-path` script for the API test's second agent: runs `api_entrypoints.all_reduce(OUT_DIR, 1)`."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[2]))
from tests.launcher.api_entrypoints import all_reduce

all_reduce(sys.argv[1], 1)
