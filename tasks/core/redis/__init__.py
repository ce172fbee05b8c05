"""Redis upkeep: ``stats`` (memory, policy against the declared use, hit rate, evictions,
slowlog, latency, biggest keys, persistence), trended from one run to the next."""
