task_default_queue = "from-module"
CELERY_TASK_RESULT_EXPIRES = 60
