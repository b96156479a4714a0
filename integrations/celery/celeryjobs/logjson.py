"""One JSON object per log record, with the bracket's extra fields."""

import json
import logging


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(
            {
                "logger": record.name,
                "level": record.levelname,
                "pid": record.process,
                "message": record.getMessage(),
                "task": getattr(record, "pgrp_task", None),
                "task_id": getattr(record, "pgrp_task_id", None),
                "alias": getattr(record, "pgrp_alias", None),
                "problems": getattr(record, "pgrp_problems", None),
            }
        )
