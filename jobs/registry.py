"""Jobs register by name; an entry names its job and hands it a parameter string."""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine
from sqlalchemy.orm import Session, sessionmaker

from runtime.settings import Settings


class UnknownJobError(LookupError):
    pass


class JobParameterError(ValueError):
    """The parameter string does not suit the job; raised at edit time, not at run time."""


@dataclass(frozen=True)
class JobOutcome:
    """What a run reports: did it find work (no activity lets the entry sleep), and counters."""

    activity: bool = True
    counters: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class JobContext:
    entry_id: int
    entry_code: str
    run_id: str
    attempt: int
    user_id: str
    session_factory: sessionmaker[Session]
    log: Any
    settings: Settings
    cancelled: threading.Event  # set when the run timed out or the worker hands it back

    @property
    def engine(self) -> Engine:
        """The engine the sessions are bound to, for jobs that work in Core transactions."""
        bind = self.session_factory.kw.get("bind")
        if not isinstance(bind, Engine):
            raise TypeError("the job's session factory is not bound to an engine")
        return bind


JobFunc = Callable[[str, JobContext], JobOutcome | None]


def _no_watches(_parameters: str) -> frozenset[str]:
    return frozenset()


def _accept_any(_parameters: str) -> None:
    return None


@dataclass(frozen=True)
class JobDefinition:
    name: str
    func: JobFunc
    description: str = ""
    # Kinds of data whose change wakes a sleeping entry of this job, given its parameters.
    watches: Callable[[str], frozenset[str]] = _no_watches
    validate: Callable[[str], None] = _accept_any


# Kinds of data changed without a wake-up (written by another program), found by a
# cheap query; the scheduler runs the probes now and then and wakes their watchers.
ChangeProbe = Callable[[Connection], set[str]]

# The modules whose jobs the system ships; the registry imports them the first time it is
# asked for a job it does not know, so a wake-up or a lookup never depends on whether the
# caller happened to import the job's module.
# The modules that register change probes: light ones, so the scheduler, which runs
# the probes, does not load every job's clients.
SHIPPED_PROBE_MODULES = ("jobs.sales.changes",)

SHIPPED_JOB_MODULES = (
    "jobs.builtin",
    "jobs.mail.job",
    "jobs.email_logging.job",
    "jobs.sales.job",
)


class JobRegistry:
    def __init__(self, modules: tuple[str, ...] = ()) -> None:
        self._jobs: dict[str, JobDefinition] = {}
        self._probes: list[ChangeProbe] = []
        self._modules = modules
        self._loaded = not modules
        self._lock = threading.Lock()

    def _load(self) -> None:
        """Imports the shipped job modules once (each registers its jobs)."""
        if self._loaded:
            return
        with self._lock:
            if not self._loaded:
                for module in self._modules:
                    importlib.import_module(module)
                self._loaded = True

    def register(
        self,
        name: str,
        *,
        description: str = "",
        watches: Callable[[str], frozenset[str]] | frozenset[str] = frozenset(),
        validate: Callable[[str], None] = _accept_any,
    ) -> Callable[[JobFunc], JobFunc]:
        watches_fn: Callable[[str], frozenset[str]]
        if watches == frozenset():
            watches_fn = _no_watches
        elif isinstance(watches, frozenset):
            fixed = watches

            def watches_fixed(_parameters: str) -> frozenset[str]:
                return fixed

            watches_fn = watches_fixed
        else:
            watches_fn = watches

        def decorator(func: JobFunc) -> JobFunc:
            if name in self._jobs and self._jobs[name].func is not func:
                raise ValueError(f"job {name!r} is registered twice")
            self._jobs[name] = JobDefinition(
                name, func, description or (func.__doc__ or "").strip(), watches_fn, validate
            )
            return func

        return decorator

    def get(self, name: str) -> JobDefinition:
        if name not in self._jobs:
            self._load()
        try:
            return self._jobs[name]
        except KeyError:
            known = ", ".join(sorted(self._jobs)) or "none"
            raise UnknownJobError(f"unknown job {name!r} (registered: {known})") from None

    def find(self, name: str) -> JobDefinition | None:
        if name not in self._jobs:
            self._load()
        return self._jobs.get(name)

    def names(self) -> list[str]:
        self._load()
        return sorted(self._jobs)

    def watching_names(self) -> list[str]:
        """The jobs whose entries some change of data may wake."""
        self._load()
        return sorted(name for name, job in self._jobs.items() if job.watches is not _no_watches)

    def probe(self, func: ChangeProbe) -> ChangeProbe:
        """Registers a check for changes written behind the application's back (plain
        SQL from another program): it returns the kinds of data that changed."""
        if func not in self._probes:
            self._probes.append(func)
        return func

    def probes(self) -> list[ChangeProbe]:
        if self._modules:  # the shipped registry: only the probes' own modules
            for module in SHIPPED_PROBE_MODULES:
                importlib.import_module(module)
        return list(self._probes)


registry = JobRegistry(modules=SHIPPED_JOB_MODULES)


def parse_parameters(text: str) -> dict[str, str]:
    """'seconds=2;watch=item' -> {'seconds': '2', 'watch': 'item'} (Business Central style)."""
    params: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise JobParameterError(f"parameter {part!r} must look like name=value")
        params[key.strip()] = value.strip()
    return params
