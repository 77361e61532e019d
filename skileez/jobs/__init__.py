"""Running background work: the sweep, its ticker and the in-process sweeper.

The queue mechanics the domains use (``job``, ``enqueue_after_commit``) are in
``skileez.core.queue``, below the domains.
"""
