"""Background work: RQ queues when Redis is configured, the same functions in-process otherwise."""
