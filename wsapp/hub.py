"""The path README gave for publishing from app code: `from wsapp.hub import get_hub`.
The hub lives in wsapp.realtime.hub."""

from wsapp.realtime.hub import Hub, get_hub

__all__ = ["Hub", "get_hub"]
