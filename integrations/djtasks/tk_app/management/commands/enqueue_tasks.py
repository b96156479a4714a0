"""Enqueue Django Tasks of ``tk_app.tasks`` given as JSON; print their ids as JSON."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from tk_app import tasks


class Command(BaseCommand):
    help = 'Enqueue tasks: enqueue_tasks \'[["probe", []], ["load", [50]]]\''

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("calls", help="JSON list of [task name, [args...]]")

    def handle(self, *args: Any, **options: Any) -> None:
        ids = [
            str(getattr(tasks, name).enqueue(*call_args).id)
            for name, call_args in json.loads(options["calls"])
        ]
        self.stdout.write(json.dumps(ids))
