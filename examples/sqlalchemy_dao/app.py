import tasks
from website import Base, User, dao

Base.metadata.create_all(dao.engine)


def create_user(name, email):
    with dao.SessionContext() as ctx:
        user = User(name=name, email=email)
        ctx.session.add(user)
        tasks.mail.enqueue(email, 'Hello', 'Welcome on board.')


create_user('ann', 'ann@example.com')
