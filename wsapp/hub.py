"""The path README gave for publishing from app code: `from wsapp.hub import get_hub`.
The hub lives in wsapp.realtime.hub; the public API is `Realtime` (wsapp.realtime.ext)."""

from wsapp.realtime.hub import Hub
from wsapp.realtime.state import get_hub

__all__ = ["Hub", "get_hub"]
