import contextlib
import contextvars
import os

import mqueue
from sqlalchemy import Boolean, String, create_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

# A stand-in for sqlalchemy_dao's Dao/SessionContext and decorated's `ctx` (not installable here).
_context = contextvars.ContextVar('session_context')


class _Ctx:
    @property
    def session(self):
        return _context.get().session


ctx = _Ctx()


class SessionContext:
    def __init__(self, dao):
        self._dao, self.session = dao, None

    def __enter__(self):
        self.session = Session(self._dao.engine)
        self._token = _context.set(self)
        return self

    def __exit__(self, error_type, error, tb):
        try:
            self.session.rollback() if error else self.session.commit()
            self.session.close()
        finally:
            _context.reset(self._token)


class Dao:
    def __init__(self, url, **options):
        self.engine = create_engine(url, **options)

    def SessionContext(self):
        return SessionContext(self)


# The adapter: every worker transaction is a SessionContext, so tasks use ctx.session as before.
def session_context_hooks(dao):
    @contextlib.contextmanager
    def transaction():
        with dao.SessionContext() as context:
            yield context.session.connection().connection.dbapi_connection

    @contextlib.contextmanager
    def around_task(task):
        with ctx.session.begin_nested():
            yield
    return {'transaction': transaction, 'around_task': around_task}


# The application's setup, as in the original README, plus the connection Task.enqueue uses.
dao = Dao(os.environ.get('SQLALCHEMY_URL', 'mysql+pymysql://root@127.0.0.1:3306/test'),
          isolation_level='READ COMMITTED', pool_pre_ping=True)
mqueue.init('test-queue', connection=lambda: ctx.session.connection().connection.dbapi_connection)


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = 'example_user'
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    email: Mapped[str] = mapped_column(String(255))
    email_sent: Mapped[bool] = mapped_column(Boolean, default=False)
