"""Every scenario of the benchmark in one run: ``python -m bench.all --repeat 3``.

In turn: ``bench.reset`` (the synthetic project: hand-written flow, cold and warm
``resetdb``, the floor of a restore, ``seed`` against ``loaddata``, peak memory),
``bench.history`` (a long hand-written migration history, one migration appended,
``--keep-migrations``) and ``bench.wagtailsite`` (a ``wagtail start`` site, one own app
changed). Each prints its own table, with ratios to the baselines measured in the same
run; the exit status is the first non-zero one. ``--repeat`` and ``--url`` go to each.
"""

from __future__ import annotations

import argparse
import os

from bench import history, reset, wagtailsite
from bench.seed import DEFAULT_URL


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").strip().splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--memory-check", type=int, default=10, metavar="N")
    parser.add_argument("--url", default=os.environ.get("DATABASE_URL") or DEFAULT_URL)
    options = parser.parse_args(argv)
    common = ["--repeat", str(options.repeat), "--url", options.url]
    runs = [
        ("bench.reset", reset.main, [*common, "--memory-check", str(options.memory_check)]),
        ("bench.history", history.main, common),
        ("bench.wagtailsite", wagtailsite.main, common),
    ]
    status = 0
    for name, scenario, args in runs:
        print(f"== {name} {' '.join(args[:2])}", flush=True)
        try:
            scenario(args)
        except SystemExit as exit:
            code = exit.code if isinstance(exit.code, int) else int(bool(exit.code))
            status = status or code
        print(flush=True)
    raise SystemExit(status)


if __name__ == "__main__":
    main()
