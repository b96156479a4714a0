"""A forking worker whose PARENT uses the pool before every fork.

What a worker process that queries (boot code, a custom worker class,
django-rq's own bookkeeping) looks like at fork time: pooled connections with
open sockets. The horse must never use them, and the parent's pool must keep
serving the parent across any number of forks.
"""

from __future__ import annotations

import os
from typing import Any

from django.db import connection

from django_pg_real_pool.rq import RealPoolWorker


class ParentProbingWorker(RealPoolWorker):
    def execute_job(self, job: Any, queue: Any) -> Any:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            pid = cursor.fetchone()[0]
        with open(os.environ["RQP_PARENT_LOG"], "a") as log:
            log.write(f"{pid}\n")
        return super().execute_job(job, queue)
