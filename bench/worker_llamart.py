"""Child process for one llamart native measurement: ``python -m bench.worker_llamart JOB_JSON``.

Prints one JSON line (the result of bench.llamart_job.speed or .lora). Its own process, so the
parent reads this system's peak resident memory alone.
"""

from __future__ import annotations

import json
import logging
import sys

# imported before the timed load, as the llama-cpp-python worker imports llama_cpp first;
# Engine() (loading libllamart) stays inside llamart's load time
import llamart  # noqa: F401

from . import llamart_job


def main() -> None:
    job = json.loads(sys.argv[1])
    logging.getLogger("llamart").setLevel(logging.ERROR)
    result = getattr(llamart_job, job["kind"])(job)
    print("BENCH-RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
