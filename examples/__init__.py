"""Runnable examples of django-pg-real-pool (``examples.demo`` is behind ``make demo``)."""
