"""Local stand-ins for the external services Spoke talks to.

Imports nothing from Spoke's domains.
"""
