"""Spoke: connect a product's users to HubSpot and to their devices."""

__version__ = "0.1.0"
