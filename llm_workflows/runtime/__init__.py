"""The plumbing under the lesson's calls: settings and keys, providers, the shared clients
and their clock, recordings (replay and record), what goes on the wire, pacing, and the
bounded concurrency the workflows share. See docs/architecture.md.

The functions here act on the package's one :class:`~.clients.Runtime`: nothing is read
or made until first use.
"""

from .clients import (
    checked_settings,
    clock,
    get_async_client,
    get_client,
    key_source,
    model_not_offered,
    reset,
    settings,
    setup,
    use_clients,
    use_pacer,
)
from .providers import LARGE, SMALL
from .wire import notify

__all__ = [
    "LARGE",
    "SMALL",
    "checked_settings",
    "clock",
    "get_async_client",
    "get_client",
    "key_source",
    "model_not_offered",
    "notify",
    "reset",
    "settings",
    "setup",
    "use_clients",
    "use_pacer",
]
