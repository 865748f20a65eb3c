"""Processes and clients of durable enrollments, by role: ``client`` (what services import), ``connection``
(settings and the way to Temporal), ``runtime`` (the worker process), ``cli`` (the ``enrollments`` command)
and ``devtools`` (dev stack, simulator)."""
