"""Interleavings of heatup's own tasks that once broke a promise, each shown by the test that
walks it: two starts whose answers were lost, an adoption and an end, a stop and an
unconfirmed start, a cancelled reservation, a fence behind a queue of writes, a marker
re-registered under its own id, an import and another admin."""
