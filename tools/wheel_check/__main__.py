"""Check the Pyodide wheel as users install it: ``python -m tools.wheel_check
--runtime node|page|pyscript [--no-isolation]`` (build it first: ``make pyodide-wheel``).

node: stock Pyodide in Node, micropip from its wheel, the wheel + local jinja2/markupsafe
(deps=False), a chat with SmolLM2. page: the README's page with its offline change, in
Chromium. pyscript: the README's PyScript page, local PyScript and Pyodide. Prints the
result; exit code 0 when the reply says Paris, LoRA is off and threads are what the runtime
allows (Node, isolated pages: on; other pages: off).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from .checks import check_node, check_page


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.wheel_check", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runtime", choices=("node", "page", "pyscript"), required=True)
    parser.add_argument("--no-isolation", action="store_true",
                        help="serve the page without COOP/COEP (the single-threaded module)")
    args = parser.parse_args(argv)
    if args.runtime == "node":
        report = check_node()
        threads, lora, reply = report["threads"], report["lora"], report["reply"]
    else:
        result = check_page(args.runtime, isolated=not args.no_isolation)
        report = dataclasses.asdict(result)
        threads, lora, reply = result.threads, result.lora, result.text
    print(json.dumps(report, indent=1))
    expected_threads = args.runtime == "node" or not args.no_isolation
    ok = "Paris" in reply and lora is False and threads is expected_threads
    print(f"wheel_check: {'ok' if ok else 'FAILED'} ({args.runtime}"
          f"{', not isolated' if args.no_isolation else ''})", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
