"""One papermill execution in its own OS process, started before its job arrives.

Starting Python, importing papermill, starting a kernel and importing scanbatch and the
extractor in it takes seconds: longer than a 10-item Gemini batch itself. So the runner keeps
one such process warm per worker. It starts a kernel, warms it, prints `ready`, then reads one
job (a JSON line) on stdin, executes the notebook with papermill on that kernel and exits. Each
execution still has its own process group, which the runner kills at the wall-clock limit.

Run as `python -m scanbatch.warm_kernel EXTRACTOR [PLUGIN ...]`; stdin EOF before a job means
the server went away, and the process shuts its kernel down and exits.
"""

from __future__ import annotations

import json
import logging
import os
import sys

KERNEL_NAME = "python3"
# Below the server: on a small machine, kernels starting up would otherwise take the CPU from
# the threads answering the app's polls (measured: poll p99 ~1 s while 5 jobs start, on 2 cores).
NICENESS = 10
START_ATTEMPTS = 3
START_TIMEOUT = 60

log = logging.getLogger("scanbatch.warm_kernel")


def _warm_code(extractor: str, plugins: list[str]) -> str:
    # Imports only: nothing that depends on the job. Run silently so the executed notebook's
    # cell numbers still start at 1.
    lines = ["import scanbatch.kernel", "from scanbatch.extractors import get_extractor_class"]
    lines += [f"import {name}" for name in plugins]
    lines.append(f"get_extractor_class({extractor!r})")
    return "\n".join(lines)


def start_kernel(extractor: str, plugins: list[str]):  # -> KernelManager
    from jupyter_client.manager import KernelManager

    last_error: Exception | None = None
    for attempt in range(1, START_ATTEMPTS + 1):
        km = KernelManager(kernel_name=KERNEL_NAME)
        try:
            # Several kernels starting at once can race for the same ports: retry.
            km.start_kernel()
            kc = km.client()
            kc.start_channels()
            kc.wait_for_ready(timeout=START_TIMEOUT)
            reply = kc.execute_interactive(
                _warm_code(extractor, plugins), silent=True, store_history=False, timeout=120
            )
            kc.stop_channels()
            if reply["content"]["status"] != "ok":
                # Not a start-up race: the job would fail the same way; let it, with the reason.
                log.warning("warm-up failed: %s", reply["content"].get("evalue"))
            return km
        except Exception as exc:
            last_error = exc
            log.warning("kernel start attempt %d failed: %s", attempt, exc)
            if km.has_kernel:
                km.shutdown_kernel(now=True)
    raise RuntimeError(f"kernel did not start after {START_ATTEMPTS} attempts: {last_error}")


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    extractor, plugins = argv[0], argv[1:]
    os.nice(NICENESS)  # inherited by the kernel
    import papermill

    km = start_kernel(extractor, plugins)
    try:
        print("ready", flush=True)
        line = sys.stdin.readline()
        if not line.strip():
            return 0  # the runner went away before giving us a job
        job = json.loads(line)
        # From here on, what this process prints belongs to the job's log.
        with open(job["log"], "ab", buffering=0) as log_file:
            os.dup2(log_file.fileno(), 1)
            os.dup2(log_file.fileno(), 2)
        try:
            papermill.execute_notebook(
                job["input"],
                job["output"],
                parameters=job["parameters"],
                kernel_name=KERNEL_NAME,
                progress_bar=False,
                log_output=False,
                cwd=job["cwd"],
                km=km,
            )
        except papermill.PapermillExecutionError as exc:
            log.error("notebook failed: %s: %s", exc.ename, exc.evalue)
            return 1
        return 0
    finally:
        km.shutdown_kernel(now=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
