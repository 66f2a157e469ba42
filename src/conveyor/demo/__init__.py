"""What ``conveyor demo`` runs: an app, realistic tasks, and the workloads that send them.

Not public API: the names here may change between releases. ``examples/sentiment``
imports the sentiment model from here so it is written once.
"""
