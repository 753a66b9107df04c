from django.apps import AppConfig


class MQueueConfig(AppConfig):
    name = 'mqueue_django'
    label = 'mqueue'
    verbose_name = 'mqueue'
    default_auto_field = 'django.db.models.BigAutoField'
