"""Messaging: push subscriptions (device tokens), sends and their per-recipient deliveries.

A send request becomes one `Notification` row at once (the API answers with its
`request_group_id` without waiting); a job holding the notification's lease resolves the
recipients into `Delivery` rows, one per (notification, user, channel), and sends them in
checkpointed batches through the workspace's provider adapter (`providers/`).
"""
