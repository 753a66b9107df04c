"""The example's tasks package: a worker started with ``tasks='tasks'`` imports every module in it,
so each ``@task`` registers before the first claim."""
