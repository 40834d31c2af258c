"""A workspace's HubSpot connection: OAuth or private-app token, scopes, status, API usage."""
