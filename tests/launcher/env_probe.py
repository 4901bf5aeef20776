"""Test worker: writes its whole environment to OUT/env<rank>.json (the parity test compares them)."""

import json
import os

with open(os.path.join(os.environ["OUT"], f"env{os.environ['RANK']}.json"), "w") as f:
    json.dump(dict(os.environ), f)
