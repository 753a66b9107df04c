import logging

import mqueue
from website import dao, session_context_hooks

logging.basicConfig(level=logging.INFO)
mqueue.Worker(None, ['test-queue'], tasks='tasks', hooks=session_context_hooks(dao)).run()
