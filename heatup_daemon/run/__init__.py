"""One run, from claim to its last row: the runner launches and settles it, the executor carries
out its plan's actions through the gateway with natural pacing, the events name what happened,
and the durable writes retry a run's records through a database outage."""
