"""What the runnable task-queue projects under ``integrations/`` share.

Each project (dramatiq, huey, RQ, Django Tasks, ...) stays a small Django
project of its own (settings module, app, ``manage.py``); this package holds
what would otherwise be written once per project: the settings base (also
used by the Celery and ASGI projects), the leak-log formatter, the note
table's migration and the leak actors. It is
importable from the workers because the editable install puts the repository
root on ``sys.path``.
"""
