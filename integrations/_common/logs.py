"""JSON lines for the bracket's leak records, so tests read them exactly."""

from __future__ import annotations

import json
import logging


class JsonLinesFormatter(logging.Formatter):
    """One JSON object per record, with the bracket's ``pgrp_*`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(
            {
                "logger": record.name,
                "level": record.levelname,
                "message": record.getMessage(),
                "task": getattr(record, "pgrp_task", None),
                "task_id": getattr(record, "pgrp_task_id", None),
                "alias": getattr(record, "pgrp_alias", None),
                "problems": getattr(record, "pgrp_problems", None),
            }
        )
