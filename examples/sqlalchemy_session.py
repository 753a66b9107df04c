"""A worker whose tasks use a SQLAlchemy 2 Session: python examples/sqlalchemy_session.py

The database is $SQLALCHEMY_URL (default MariaDB's test database), where mqueue's tables must exist
(mqueue init-db).
"""
import contextlib
import contextvars
import os

import mqueue
from sqlalchemy import String, create_engine, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

engine = create_engine(os.environ.get('SQLALCHEMY_URL', 'mysql+pymysql://root@127.0.0.1:3306/test'),
                       isolation_level='READ COMMITTED', pool_pre_ping=True)
_session: contextvars.ContextVar[Session] = contextvars.ContextVar('session')


def session() -> Session:
    """The Session of the running task."""
    return _session.get()


@contextlib.contextmanager
def transaction():
    """mqueue's transaction hook: a Session whose transaction mqueue's own SQL shares."""
    with Session(engine) as s, s.begin():          # commits on success, rolls back on error
        token = _session.set(s)
        try:
            yield s.connection().connection.dbapi_connection
        finally:
            _session.reset(token)


@contextlib.contextmanager
def around_task(context):
    """Each task in a Session savepoint, so a failed task's ORM objects are discarded too."""
    with session().begin_nested():
        yield


class Base(DeclarativeBase):
    pass


class Greeting(Base):
    __tablename__ = 'example_greeting'
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(255))


@mqueue.task(name='greet', retries=0)
def greet(email):
    session().add(Greeting(email=email))
    if email.endswith('.invalid'):
        raise ValueError(f'cannot greet {email}')


if __name__ == '__main__':
    Base.metadata.create_all(engine)
    with Session(engine) as s, s.begin():          # app code: enqueue in the Session's transaction
        conn = s.connection().connection.dbapi_connection
        mqueue.enqueue(conn, 'greet', ['ann@example.com'])
        mqueue.enqueue(conn, 'greet', ['bob@example.invalid'])
    worker = mqueue.Worker(None, hooks={'transaction': transaction, 'around_task': around_task})
    worker.run(burst=True)
    with Session(engine) as s:
        print(s.scalars(select(Greeting.email)).all())   # ['ann@example.com']: bob's was discarded
