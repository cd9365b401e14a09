"""Deciding when a run starts: the APScheduler jobs, the slot policy (which due slot runs,
which is skipped), and the passes that claim due slots and keep the schedule in step with the
sessions table."""
