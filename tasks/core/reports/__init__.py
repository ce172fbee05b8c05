"""reports.weekly and reports.capacity (Celery-free): trends, charts, rendering, delivery."""
