"""Contact sync: Spoke users ⇄ HubSpot contacts (settings, links, outbound, inbound)."""
