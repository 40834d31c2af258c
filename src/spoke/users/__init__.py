"""The app side: users, their custom fields, tags and lists, the change feed, and imports."""
