"""Trim a training venv to what CPU training maps, for the CI-only `training-ci` image target.

    python cpu-trim.py trim  TRAIN_SCRIPT   run the example, then delete what no worker mapped
    python cpu-trim.py check TRAIN_SCRIPT   run the example; exit non-zero unless it succeeds

`trim` runs TRAIN_SCRIPT (the CPU example) with `elasticjob-launch --standalone`, 2 workers on
gloo, through a wrapper that records every file each worker has mapped when the script ends. It
then deletes the regular files under site-packages/nvidia and site-packages/triton/backends that
no worker mapped, Python sources excepted (imports still find their modules), and prints how much
went. The workers fork from the launcher's preloaded process, so their maps include what the
launcher loaded.
Limits: whatever a path the example does not take loads lazily (cuDNN's engines, GPU kernels,
NCCL's plugins, torch.compile's CUDA toolchain) is gone, so the image trains on CPU only. It is
for `kind load` in CI (a smaller image moves faster) and is never shipped: the `training` target
is the image users run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

WRAPPER = """
import os, runpy, sys
script, out = sys.argv[1], sys.argv[2]
sys.argv = [script, *sys.argv[3:]]
try:
    runpy.run_path(script, run_name="__main__")
finally:
    with open(f"{out}/maps-{os.getpid()}", "w") as f:
        f.write("".join(line for line in open("/proc/self/maps") if "/" in line))
"""
TRIMMED = ("nvidia", "triton/backends")


def run_example(script: str, work: Path, wrap: bool) -> dict[str, object]:
    """The example on 2 CPU workers; its result (rank 0's RESULT_PATH)."""
    env = {**os.environ, "CHECKPOINT_DIR": str(work / "ckpt"), "RESULT_PATH": str(work / "result.json")}
    argv = ["elasticjob-launch", "--standalone", "--nproc-per-node", "2"]
    if wrap:
        (work / "wrap.py").write_text(WRAPPER)
        argv += [str(work / "wrap.py"), script, str(work)]
    else:
        argv.append(script)
    subprocess.run([*argv, "--steps", "40", "--step-sleep", "0"], env=env, check=True)
    result: dict[str, object] = json.loads((work / "result.json").read_text())
    if result.get("ok") is not True:
        raise SystemExit(f"the CPU example did not succeed: {result}")
    return result


def trim(script: str) -> None:
    site = Path(sysconfig.get_paths()["purelib"])
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        run_example(script, work, wrap=True)
        maps = sorted(work.glob("maps-*"))
        if len(maps) != 2:
            raise SystemExit(f"expected the maps of 2 workers, found {len(maps)}")
        mapped = {Path(line.split(maxsplit=5)[5].strip()) for m in maps for line in m.read_text().splitlines()}
    removed, freed = 0, 0
    for top in TRIMMED:
        for path in sorted((site / top).rglob("*")):
            if path.is_file() and not path.is_symlink() and path.suffix != ".py" and path.resolve() not in mapped:
                freed += path.stat().st_size
                path.unlink()
                removed += 1
    print(f"cpu-trim: removed {removed} files ({freed / 2**30:.2f} GiB) that CPU training never mapped")


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] not in ("trim", "check"):
        raise SystemExit(__doc__)
    if args[0] == "trim":
        trim(args[1])
    else:
        with tempfile.TemporaryDirectory() as tmp:
            print(f"cpu-trim: the CPU example succeeded: {run_example(args[1], Path(tmp), wrap=False)}")


if __name__ == "__main__":
    main()
