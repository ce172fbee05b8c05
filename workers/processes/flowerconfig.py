"""Flower's config file for maintd (``--conf``): which columns the task list shows and how
a run's result reads there. Flower (tornado) executes this file and takes the names below
that are Flower options; nothing else in it is read. See docs/flower-verdict.md.

Every maintd run's ``result`` in Flower is its headline (the summary's first line), a blank
line, then the whole Outcome pretty-printed (``workers/verdict.py``). The task *list*
shows the headline only; the task's *page* and the JSON API show everything.
"""

from __future__ import annotations

from typing import Any

# The task list an operator reads: the task, its target (Flower's args column: the
# target's name), the verdict (state), the summary (result: its headline), runtime, the lane
# and host that ran it (worker), when, the link to the run's page (uuid), and the error of
# a failed run (exception), last as it can be long.
tasks_columns = "name,args,state,result,runtime,worker,received,uuid,exception"


def headline(value: Any) -> Any:
    """The first line of a result text (other values as they are)."""
    if isinstance(value, str) and "\n" in value:
        return value.split("\n", 1)[0]
    return value


def format_task(task: Any) -> Any:
    """Flower calls this on a copy of each task it renders, for the list and for the task's
    page. The list serialises the copy with Celery's ``Task.as_dict``, which passes each
    field through the task's serializer handlers: one for ``result`` makes the list show the
    headline, while the page, which reads ``task.result`` itself, keeps the whole text."""
    handlers = getattr(task, "_serializer_handlers", None)
    if isinstance(handlers, dict):
        # A failed run has no result: the list shows its error there, where a summary is read.
        error = getattr(task, "exception", None)

        def shown(value: Any) -> Any:
            return headline(value) if value is not None else error

        task._serializer_handlers = {**handlers, "result": shown}
    return task
