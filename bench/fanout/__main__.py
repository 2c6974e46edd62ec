"""`.venv/bin/python -m bench.fanout ...` (or `python bench/fanout ...`): run the benchmark.

The load-generator processes are spawned, and import this module again under another name:
everything runs under the `__main__` guard, so they import nothing heavy from here."""

import sys
from pathlib import Path

if __name__ == "__main__":
    if __package__:
        from .cli import main

        main()
    else:  # run as a directory: run again as the package's module, with the repository on the path
        import runpy

        here = Path(__file__).resolve().parent
        sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
        sys.path.insert(0, str(here.parents[1]))
        runpy.run_module("bench.fanout", run_name="__main__", alter_sys=True)
