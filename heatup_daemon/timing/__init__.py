"""Time as the schedule sees it: the clock, time zones, cron expressions and a session's
schedule (its next jittered slots). Pure functions and values; only the scheduler's decisions
use them."""
