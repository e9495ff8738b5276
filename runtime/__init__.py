"""Process plumbing shared by every process: settings, JSON logging, signals."""
