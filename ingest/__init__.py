"""When it is safe to forget an MQTT message.

``ingest`` is the service process: it receives device messages from the
broker, has ``devices`` decode them, commits them to the database in
batches, and acknowledges each message to the broker only after that
commit. It is the composition root: nothing imports it.
"""
