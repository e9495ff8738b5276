"""The module `dramatiq` loads in each worker process (`jobqueue worker` points it here)."""

from __future__ import annotations

import dramatiq

from runtime.logs import configure_logging
from runtime.settings import Settings
from workers.app import create_app

settings = Settings.from_env()
configure_logging(settings.log_level, process="worker")
app = create_app(settings)
broker = app.broker
dramatiq.set_broker(broker)
