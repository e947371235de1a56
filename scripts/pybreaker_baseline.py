"""pybreaker 1.4.1 around a no-op: the baseline for the breaker benchmark.
Prints the median time per call (ns) over 5 runs of 200,000 calls."""
import statistics
import time

import pybreaker

breaker = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=60)


def noop():
    return None


runs = []
for _ in range(5):
    n = 200_000
    start = time.perf_counter_ns()
    for _ in range(n):
        breaker.call(noop)
    runs.append((time.perf_counter_ns() - start) / n)
print(f"{statistics.median(runs):.1f}")
