"""mdmsim's world outside the MDM vendor: Apple's services, the identity provider and simulated devices.

``from simulator import World`` is the public entry point; it is imported lazily so that
``import simulator.apple.dep`` stays light for worker processes that serve one party.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .world import World

__all__ = ["World"]


def __getattr__(name: str) -> Any:
    if name == "World":
        from .world import World

        return World
    raise AttributeError(name)
