"""The app's wiring: ``create_app(settings)`` builds the gateway that owns its state from start to stop."""

from anygate.app.gateway import Gateway, create_app

__all__ = ["Gateway", "create_app"]
