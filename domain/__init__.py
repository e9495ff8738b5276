"""Models and pure rules of the job queue; no I/O beyond the database models."""
