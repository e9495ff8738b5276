"""The APScheduler process that finds due entries and hands them to the workers."""
