"""Product events: what users do in the app (pages, features, tracked actions), stored
append-only, counted per event name, and (next) exported to HubSpot as custom events."""
