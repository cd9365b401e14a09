"""A deterministic simulation of heatup's nodes: virtual time, a seeded order of ready
callbacks, faults at every await of a port, invariants checked as it runs (``cluster``)."""
