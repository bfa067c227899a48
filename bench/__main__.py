"""`python -m bench` (`make bench`): the throughput benchmark, `bench/throughput.py`."""

from bench.throughput import main

main()
