"""Each worker records its CPU affinity and OMP_NUM_THREADS (pinning test)."""

import json
import os

with open(os.path.join(os.environ["OUT"], f"pin{os.environ['LOCAL_RANK']}.json"), "w") as f:
    json.dump({"cpus": sorted(os.sched_getaffinity(0)), "omp": os.environ.get("OMP_NUM_THREADS")}, f)
