"""Tasks of the Celery example project: a load task, leak injections, a probe."""
