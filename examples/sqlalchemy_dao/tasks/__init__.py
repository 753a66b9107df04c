from mqueue import task
from website import User, ctx


@task
def mail(email, subject, body):
    # send an email
    ...
    user = ctx.session.query(User).filter(User.email == email).one()
    user.email_sent = True
