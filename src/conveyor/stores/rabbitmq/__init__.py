"""RabbitMQ: a transport only (``amqp://``, ``amqps://``, ``pyamqp://``); coordination
and results live in another store."""
