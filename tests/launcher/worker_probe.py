"""Test worker: records how it was started; each rank writes probe<rank>.json to OUT.

Env: OUT (directory), EXIT_RANK and EXIT_CODE (that global rank calls sys.exit(EXIT_CODE)).
"""

import json
import os
import sys

preloaded = "torch" in sys.modules  # before this script imports anything heavy
rank = os.environ["RANK"]
with open(os.path.join(os.environ["OUT"], f"probe{rank}.json"), "w") as f:
    with open("/proc/self/comm") as comm:
        process = comm.read().strip()
    json.dump({"name": __name__, "argv": sys.argv[1:], "torch_preloaded": preloaded, "comm": process}, f)
if os.environ.get("EXIT_RANK") == rank:
    sys.exit(int(os.environ["EXIT_CODE"]))
