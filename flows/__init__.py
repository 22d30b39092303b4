"""Prefect flows: scheduler, inference, publish. They compose the tasks in `tasks/`."""
