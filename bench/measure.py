"""Run one management command in this process and print its time and peak memory as JSON.

Used by ``bench.seed`` so that Django's start-up is not counted in the command's time.
"""

from __future__ import annotations

import json
import resource
import sys
import time

import django
from django.core.management import call_command


def main() -> None:
    django.setup()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    call_command(*sys.argv[1:], verbosity=0)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"seconds": seconds, "peak_kib": peak, "start_kib": before}))


if __name__ == "__main__":
    main()
