"""mqueue's dashboard: server-rendered pages over mqueue's operating functions, as a WSGI
application (standard library only; mqueue.py does not import it).

    mqueue web --db mysql://app:secret@127.0.0.1/app --tasks myapp.tasks       # 127.0.0.1:8080

or mounted under a prefix in any WSGI application (Flask, Django, ...):

    import mqueue, mqueue_web
    dashboard = mqueue_web.Dashboard(mqueue.connect_url(url))
    application = mqueue_web.mount(application, '/mqueue', dashboard)

Pages: the queues (overview), dead tasks (retry, delete: one, selected, or all that match a
filter), one task (its arguments and tracebacks), scheduled tasks (run now, cancel), running
tasks, crons (run now). Every action is a POST carrying a CSRF token (the double-submit cookie),
and goes through mqueue's operating functions, which never wait on a running task. Closed by
default where it matters: ``mqueue web`` refuses a non-loopback address without a password or a
token (HTTP Basic, or ``Authorization: Bearer``); ``read_only`` hides and refuses every action;
argument keys named in ``redact`` are shown as ***. docs/dashboard.md has the guide.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import hmac
import html
import ipaddress
import json
import logging
import re
import secrets
import socket
import socketserver
import threading
import base64
from typing import Any, Callable, Iterable, Iterator
from urllib.parse import parse_qs, quote, urlencode, urlsplit
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import mqueue

logger = logging.getLogger('mqueue')

PAGE_SIZE = 50                  # rows per page (keyset pagination: each page reads at most this many)
COUNT_CAP = 10_000              # the queues page counts up to this many of each kind (see queue_stats's cap)
REFRESH_SECONDS = 5             # pages refresh on their own this often (not while a box is ticked)
CSRF_COOKIE = 'mqueue_csrf'
DEFAULT_REDACT = ('password', 'passwd', 'secret', 'token', 'api_key', 'apikey', 'authorization')   # (in key names)
MAX_FORM_BYTES = 1_000_000
_ID = re.compile(r'[0-9]{1,18}')   # a task id (a BIGINT): ASCII digits only
_LOCAL_PATH = re.compile(r'/(?![/\\])[^\x00-\x20\x7f\\]*')   # where an action may send the browser back to
IDLE_CONNECTIONS = 4            # connections kept open between requests (the server serves each in a thread)


class Dashboard:
    """The dashboard as a WSGI application.

    Args:
        connect: a zero-argument callable returning a new DB-API connection (``mqueue.connect_url(url)``);
            each request uses one, in a transaction of its own.
        registry: whose tables and crons (declared crons show their schedule and can be run now);
            default ``mqueue.default_registry``.
        read_only: show, never change: no action is offered, and any POST is refused.
        user, password: HTTP Basic credentials; token: accepted as ``Authorization: Bearer``.
            Without any, anyone who reaches it may use it (``mqueue web`` allows that on loopback
            only; where it is mounted, the host application's own protection applies).
        redact: argument keys (any depth, case-insensitive) shown as *** (default: password,
            secret, token and the like).
    """

    def __init__(self, connect: Callable[[], Any], registry: mqueue.Registry | None = None, *,
                 read_only: bool = False, user: str = 'mqueue', password: str | None = None,
                 token: str | None = None, redact: Iterable[str] = DEFAULT_REDACT, refresh: int = REFRESH_SECONDS):
        self.connect = connect
        self.registry = registry or mqueue.default_registry
        self.read_only = read_only
        self.user, self.password, self.token = user, password, token
        self.redact = {key.lower() for key in redact}
        self.refresh = refresh
        self.description = getattr(connect, 'description', 'the database')   # (never with its password)
        self._idle: list[Any] = []   # connections kept between requests
        self._lock = threading.Lock()
        self._key = secrets.token_bytes(32)   # signs the messages of actions (see _signed)
        self.pages = {'': self.overview, 'dead': self.dead, 'task': self.task, 'scheduled': self.scheduled,
                      'running': self.running, 'crons': self.crons}
        self.actions = {'retry': self.retry, 'delete': self.delete, 'run-now': self.run_now, 'cancel': self.cancel,
                        'run-cron': self.run_cron}

    # WSGI

    def __call__(self, environ: dict, start_response: Callable) -> list[bytes]:
        request = _Request(environ)
        if not self._authorised(environ):
            challenge = ('Basic realm="mqueue", charset="UTF-8"' if self.password is not None
                         else 'Bearer realm="mqueue"')
            return _respond(start_response, '401 Unauthorized', b'credentials required\n', 'text/plain',
                            [('WWW-Authenticate', challenge)])
        try:
            if request.method == 'POST':
                return self._post(request, start_response)
            if request.method not in ('GET', 'HEAD'):
                return _respond(start_response, '405 Method Not Allowed', b'GET or POST\n', 'text/plain')
            page = self.pages.get(request.segments[0] if request.segments else '')
            if len(request.segments) > (2 if page == self.task else 1):   # (/task/ID only)
                page = None
            if page is None:
                raise _Missing('No such page.')
            headers = [] if request.csrf else [('Set-Cookie', self._csrf_cookie(request))]   # (before the forms)
            with self._transaction() as conn:
                title, body = page(request, conn)
            return _respond(start_response, '200 OK', self._layout(request, title, body), headers=headers)
        except _Missing as missing:
            return _respond(start_response, '404 Not Found',
                            self._layout(request, 'Not found', f'<p>{_e(missing)}</p>'))
        except Exception as exc:
            logger.exception('dashboard: %s %s failed', request.method, _printable(request.path))
            text = mqueue._describe_error(exc, short=True) if mqueue._database_error(exc) else type(exc).__name__
            return _respond(start_response, '500 Internal Server Error',
                            self._layout(request, 'Error', f'<p class="error">{_e(text)}</p>'))

    def _authorised(self, environ: dict) -> bool:
        if self.password is None and self.token is None:
            return True
        given = environ.get('HTTP_AUTHORIZATION', '')
        scheme, _, value = given.partition(' ')
        if scheme.lower() == 'bearer' and self.token is not None:
            return hmac.compare_digest(value.strip().encode(), self.token.encode())
        if scheme.lower() == 'basic' and self.password is not None:
            try:
                user, _, password = base64.b64decode(value.strip()).decode().partition(':')
            except ValueError:
                return False
            return (hmac.compare_digest(user.encode(), self.user.encode())
                    & hmac.compare_digest(password.encode(), self.password.encode()))
        return False

    def _post(self, request: _Request, start_response: Callable) -> list[bytes]:
        if self.read_only:
            return _respond(start_response, '403 Forbidden', b'read-only dashboard\n', 'text/plain')
        form = request.form()
        token = form.get('csrf', [''])[0]
        csrf_ok = request.csrf and hmac.compare_digest(token.encode(), request.csrf.encode())
        if not csrf_ok or not request.same_origin:
            return _respond(start_response, '403 Forbidden', b'missing or wrong CSRF token: reload the page\n',
                            'text/plain')
        action = self.actions.get(request.segments[-1] if request.segments else '')
        if action is None or request.segments[0] != 'action':
            return _respond(start_response, '404 Not Found', b'no such action\n', 'text/plain')
        with self._transaction() as conn:
            message = action(form, conn)
        back = form.get('back', [''])[0]
        if not _LOCAL_PATH.fullmatch(back):   # (a path of this dashboard: no scheme, host, control character)
            back = '/'
        location = (quote(request.base) + back + ('&' if '?' in back else '?')
                    + urlencode({'done': message, 'sig': self._signed(message)}))
        start_response('303 See Other', [('Location', location), ('Content-Length', '0')])
        return [b'']

    def _signed(self, message: str) -> str:
        """The signature that lets a page show an action's message (a link cannot make it say
        anything else)."""
        return hmac.new(self._key, message.encode(), 'sha256').hexdigest()[:32]

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[Any]:
        """A request's transaction, on a connection kept for the next request (connecting costs a
        page more than its statements: 20 ms on MariaDB); one that failed is closed."""
        with self._lock:
            conn = self._idle.pop() if self._idle else None
        if conn is not None:
            try:   # (a server restarted, or a connection idle past wait_timeout: one round trip tells)
                with mqueue._cursor(conn) as cursor:
                    cursor.execute('SELECT 1')
                    cursor.fetchall()
            except Exception:
                with contextlib.suppress(Exception):
                    conn.close()
                conn = None
        conn = conn if conn is not None else self.connect()
        try:
            yield conn
            conn.commit()
        except BaseException:
            with contextlib.suppress(Exception):
                conn.rollback()
            with contextlib.suppress(Exception):
                conn.close()
            raise
        if mqueue._dialect_of(conn).name == 'sqlite' or len(self._idle) >= IDLE_CONNECTIONS:
            conn.close()   # (SQLite: a connection stays in the thread that made it; and opening one is cheap)
        else:
            with self._lock:
                self._idle.append(conn)

    def _csrf_cookie(self, request: _Request) -> str:
        request.csrf = secrets.token_hex(16)
        https = 'https' in (request.environ.get('wsgi.url_scheme'), request.environ.get('HTTP_X_FORWARDED_PROTO'))
        return (f'{CSRF_COOKIE}={request.csrf}; Path={quote(request.base) or "/"}; HttpOnly; SameSite=Strict'
                + ('; Secure' if https else ''))

    # Pages: each returns (title, body HTML)

    def overview(self, request: _Request, conn: Any) -> tuple[str, str]:
        stats = self.registry.queue_stats(conn, cap=COUNT_CAP)
        overdue = self.registry.past_timeout(conn, limit=20)
        minutes = self.registry.throughput(conn, minutes=60)
        rows = [[_link(request, f'/dead?queue={quote(row.queue)}', row.queue) if row.dead else _e(row.queue),
                 _count(row.ready), _count(row.scheduled), _count(row.running), _count(row.dead),
                 _age(row.latency) if row.ready else '-'] for row in stats]
        body = _table(['Queue', 'Ready', 'Scheduled', 'Running', 'Dead', 'Oldest ready'], rows,
                      empty=f'No tasks in {_e(self.registry.table)}.') + _throughput(minutes)
        if overdue:
            body += '<h2>Running past their timeout</h2>' + _table(
                ['Task', 'Queue', 'Worker', 'Past by'],
                [[_task_link(request, t.id, t.name), _e(t.queue), _e(t.worker or '-'), _age(t.overdue)]
                 for t in overdue])
        return 'Queues', body

    def dead(self, request: _Request, conn: Any) -> tuple[str, str]:
        queue, name = request.arg('queue'), request.arg('name')
        before = None
        if request.arg('before'):
            when, key, task_id = _cursor_of(request.arg('before'), self.registry.dialect_of(conn))
            before = mqueue.DeadTask(task_id, '', '', '', 0, when, '', key)
        found = self.registry.dead_tasks(conn, queue=queue, name=name, limit=PAGE_SIZE + 1, before=before)
        page, more = found[:PAGE_SIZE], len(found) > PAGE_SIZE
        rows = [[self._tick(task.id), _task_link(request, task.id, task.name), _e(task.queue), _num(task.attempts),
                 _time(task.dead_at), f'<code>{_e(_first_line(task.error))}</code>'] for task in page]
        filters = {key: value for key, value in (('queue', queue), ('name', name)) if value}
        body = _filter_form(request, '/dead', queue, name)
        table = _table(['', 'Task', 'Queue', 'Attempts', 'Dead since (UTC)', 'Error'], rows, empty='No dead tasks.')
        if self.read_only:
            body += table
        else:
            back = request.path_qs
            body += self._form(request, '/action/retry', back, table + _buttons(
                ('retry', 'Retry selected'), ('delete', 'Delete selected')), filters)
            if page:
                what = ' matching the filter' if filters else ''
                body += self._form(request, '/action/retry', back, _buttons(('retry', f'Retry all dead{what}'),
                                                                             ('delete', f'Delete all dead{what}')),
                                   {**filters, 'all': '1'})
        if more:
            body += _next_page(request, '/dead', filters, 'before', page[-1].key, page[-1].id, 'Older →')
        return 'Dead tasks', body

    def task(self, request: _Request, conn: Any) -> tuple[str, str]:
        if len(request.segments) != 2 or not _ID.fullmatch(request.segments[1]):
            raise _Missing('no such task')
        found = self.registry.result(conn, int(request.segments[1]))
        if found.status == 'unknown':
            raise _Missing(f'task {found.id} does not exist (any more): it finished without keeping a result, '
                           'or was cancelled')
        facts = [('Status', found.status), ('Name', found.name or '-'), ('Attempts', str(found.attempts)),
                 ('Enqueued (UTC)', _time(found.enqueued_at)), ('Started (UTC)', _time(found.started_at)),
                 ('Finished (UTC)', _time(found.finished_at))]
        body = '<dl>' + ''.join(f'<dt>{_e(k)}</dt><dd>{_e(v) if k != "Status" else _status(v)}</dd>'
                                for k, v in facts) + '</dl>'
        if found.args is not None:
            body += f'<h2>Arguments</h2><pre>{_e(_json(self._redacted(found.args)))}</pre>'
        if found.status == 'succeeded' and found.value is not None:
            body += f'<h2>Value</h2><pre>{_e(_json(self._redacted(found.value)))}</pre>'
        for error in reversed(found.errors):
            when = f' at {_e(error["at"][:19])}' if error.get('at') else ''
            body += (f'<h2>Attempt {_e(error.get("attempt"))} failed{when}'
                     f'</h2><pre class="traceback">{_e(error.get("error", ""))}</pre>')
        if not self.read_only:
            ids, back = {'id': str(found.id)}, request.path_qs
            if found.status == 'dead':
                body += self._form(request, '/action/retry', back,
                                   _buttons(('retry', 'Retry'), ('delete', 'Delete')), ids)
            elif found.status == 'pending':
                body += self._form(request, '/action/run-now', back,
                                   _buttons(('run-now', 'Run now'), ('cancel', 'Cancel')), ids)
        return f'Task {found.id}', body

    def scheduled(self, request: _Request, conn: Any) -> tuple[str, str]:
        queue, name = request.arg('queue'), request.arg('name')
        after = None
        if request.arg('after'):
            when, key, task_id = _cursor_of(request.arg('after'), self.registry.dialect_of(conn))
            after = mqueue.ScheduledTask(task_id, '', '', '', 0, when, None, key)
        found = self.registry.scheduled_tasks(conn, queue=queue, name=name, limit=PAGE_SIZE + 1, after=after)
        page, more = found[:PAGE_SIZE], len(found) > PAGE_SIZE
        rows = [[self._tick(task.id), _task_link(request, task.id, task.name), _e(task.queue), _time(task.eta),
                 _num(task.attempts), f'<code>{_e(_first_line(task.error or ""))}</code>' if task.error else '-']
                for task in page]
        filters = {key: value for key, value in (('queue', queue), ('name', name)) if value}
        table = _table(['', 'Task', 'Queue', 'Due (UTC)', 'Attempts', 'Last error'], rows, empty='No scheduled tasks.')
        body = _filter_form(request, '/scheduled', queue, name)
        body += table if self.read_only else self._form(
            request, '/action/run-now', request.path_qs, table + _buttons(('run-now', 'Run selected now'),
                                                                          ('cancel', 'Cancel selected')), filters)
        if more:
            body += _next_page(request, '/scheduled', filters, 'after', page[-1].key, page[-1].id, 'Later →')
        return 'Scheduled tasks', body

    def running(self, request: _Request, conn: Any) -> tuple[str, str]:
        found = self.registry.running_tasks(conn, queue=request.arg('queue'), limit=PAGE_SIZE)
        rows = [[_task_link(request, task.id, task.name), _e(task.queue), _age(task.running_for),
                 _e(task.worker or '-'),
                 _num(task.attempts), _time(task.deadline) if task.deadline else '-'] for task in found]
        more = (f'<p class="note">The {PAGE_SIZE} longest running are shown; the Queues page counts them all.</p>'
                if len(found) == PAGE_SIZE else '')
        return 'Running tasks', more + _table(['Task', 'Queue', 'Running for', 'Worker', 'Attempt', 'Times out (UTC)'],
                                              rows, empty='No task is running.')

    def crons(self, request: _Request, conn: Any) -> tuple[str, str]:
        rows = mqueue._CronScheduler(self.registry, None, self._transaction).listing()
        cells = []
        for row in rows:
            run = ('' if self.read_only or not row['expression'] else self._form(
                request, '/action/run-cron', request.path_qs, _buttons(('run-cron', 'Run now')),
                {'name': row['name'], 'queue': row['queue']}))
            schedule = row['expression'] or '(not declared here)'
            cells.append([_e(row['name']), _e(row['queue']), f'<code>{_e(schedule)}</code>',
                          _time(row['last']) if row['last'] else 'never', _time(row['next']) if row['next'] else '-',
                          run])
        note = '' if self.registry.crons else ('<p class="note">No cron is declared in this process: start it with '
                                               '<code>--tasks</code> to see schedules and run crons now.</p>')
        return 'Crons', note + _table(['Cron', 'Queue', 'Schedule', 'Last fire (UTC)', 'Next fire (UTC)', ''], cells,
                                      empty='No crons.')

    # Actions: each returns what it did, in words

    def retry(self, form: dict, conn: Any) -> str:
        if form.get('button', [''])[0] == 'delete':
            return self.delete(form, conn)
        if form.get('all'):
            count = self.registry.retry_dead(conn, queue=_one(form, 'queue'), name=_one(form, 'name'))
        else:
            count = self.registry.retry_dead(conn, _ids(form)) if _ids(form) else 0
        return f'{count} dead task{"" if count == 1 else "s"} retried'

    def delete(self, form: dict, conn: Any) -> str:
        if form.get('all'):
            count = self.registry.purge_dead(conn, 0, queue=_one(form, 'queue'), name=_one(form, 'name'))
        else:   # (only those still dead: one retried since the page was shown is left alone)
            count = self.registry.delete_dead(conn, _ids(form))
        return f'{count} dead task{"" if count == 1 else "s"} deleted'

    def run_now(self, form: dict, conn: Any) -> str:
        if form.get('button', [''])[0] == 'cancel':
            return self.cancel(form, conn)
        count = self.registry.run_now(conn, _ids(form))
        return f'{count} task{"" if count == 1 else "s"} due now'

    def cancel(self, form: dict, conn: Any) -> str:
        count = sum(self.registry.cancel(conn, task_id) for task_id in _ids(form))
        return f'{count} task{"" if count == 1 else "s"} cancelled'

    def run_cron(self, form: dict, conn: Any) -> str:
        schedule = self.registry.crons.get(_one(form, 'name') or '')
        if schedule is None:
            return 'no such cron is declared here'
        task = schedule.task
        task_id = self.registry.enqueue(conn, task.name, [], queue=task.queue or _one(form, 'queue'))
        return f'{task.name} enqueued as task {task_id}'

    # Helpers of the pages

    def _redacted(self, value: Any) -> Any:
        if isinstance(value, dict):
            return {key: '***' if any(word in str(key).lower() for word in self.redact) else self._redacted(item)
                    for key, item in value.items()}
        if isinstance(value, list):
            return [self._redacted(item) for item in value]
        return value

    def _tick(self, task_id: int) -> str:
        if self.read_only:
            return ''
        return f'<input type="checkbox" name="id" value="{task_id}" aria-label="task {task_id}">'

    def _form(self, request: _Request, action: str, back: str, inner: str, hidden: dict | None = None) -> str:
        fields = {'csrf': request.csrf or '', 'back': back, **(hidden or {})}
        return (f'<form method="post" action="{_e(request.base + action)}">'
                + ''.join(f'<input type="hidden" name="{_e(k)}" value="{_e(v)}">' for k, v in fields.items())
                + inner + '</form>')

    def _layout(self, request: _Request, title: str, body: str) -> bytes:
        nav = ''.join(_link(request, path, label) for path, label in (
            ('/', 'Queues'), ('/dead', 'Dead'), ('/scheduled', 'Scheduled'), ('/running', 'Running'),
            ('/crons', 'Crons')))
        done = request.arg('done')
        signed = done and hmac.compare_digest((request.arg('sig') or '').encode(), self._signed(done).encode())
        flash = f'<p class="done" role="status">{_e(done)}</p>' if signed else ''
        mode = ' · read-only' if self.read_only else ''
        return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(title)} · mqueue</title>
<style>{STYLE}</style>
<script>setTimeout(function () {{
  if (!document.querySelector('input[type=checkbox]:checked')) location.reload();
}}, {self.refresh * 1000});</script>
</head><body>
<header><strong>mqueue</strong> <span class="where">{_e(self.description)} · {_e(self.registry.table)}{mode}</span>
<nav>{nav}</nav></header>
<main><h1>{_e(title)}</h1>{flash}{body}</main>
</body></html>
""".encode()


STYLE = """
body{font:15px/1.45 system-ui,sans-serif;margin:0;color:#222;background:#fafafa}
header{background:#234;color:#fff;padding:.6em 1em}header a{color:#cde;margin-right:1em}
.where{color:#9ab;font-size:.85em;overflow-wrap:anywhere}nav{margin-top:.3em}
main{padding:0 1em 2em;max-width:70em}h1{font-size:1.3em}h2{font-size:1.1em}
table{border-collapse:collapse;width:100%;background:#fff}th,td{text-align:left;padding:.3em .5em;
border-bottom:1px solid #ddd;vertical-align:top;overflow-wrap:break-word}td code{overflow-wrap:anywhere}
code,pre{font:13px/1.35 ui-monospace,monospace}pre{background:#fff;border:1px solid #ddd;padding:.6em;
white-space:pre-wrap;overflow-wrap:anywhere}
button{margin:.5em .5em 0 0;padding:.35em .8em}.done{background:#e6f4e6;padding:.4em .6em}
.error{color:#a00}.dead{color:#a00}.note{color:#666}dl{display:grid;grid-template-columns:max-content 1fr;gap:.2em 1em}
dd{margin:0}form.filter input{width:10em}
svg.chart{width:100%;max-width:40em;height:5em;background:#fff;border:1px solid #ddd}
.chart .ok{fill:#3a7}.chart .bad{fill:#c33}.chart .none{fill:#ccc}
@media (max-width:600px){table,tbody,tr,td{display:block;width:auto}thead{display:none}
tr{border-bottom:2px solid #ccc;padding:.3em 0}td{border:0;padding:.1em .5em;overflow-wrap:anywhere}
td[data-label]:before{content:attr(data-label) ": ";color:#666}}
"""


class _Request:
    """What a page needs of a WSGI request."""

    def __init__(self, environ: dict):
        self.environ = environ
        self.method = environ.get('REQUEST_METHOD', 'GET').upper()
        self.base = environ.get('SCRIPT_NAME', '').rstrip('/')
        self.path = environ.get('PATH_INFO', '') or '/'
        self.segments = [part for part in self.path.split('/') if part]
        self.query = parse_qs(environ.get('QUERY_STRING', ''))
        kept = urlencode([(k, v) for k, values in self.query.items() if k not in ('done', 'sig') for v in values])
        self.path_qs = quote(self.path) + ('?' + kept if kept else '')   # (where an action returns to)
        cookies = dict(part.strip().split('=', 1) for part in environ.get('HTTP_COOKIE', '').split(';') if '=' in part)
        self.csrf = cookies.get(CSRF_COOKIE)

    def arg(self, name: str) -> str | None:
        return self.query.get(name, [None])[0] or None

    def form(self) -> dict:
        try:
            length = int(self.environ.get('CONTENT_LENGTH') or 0)
        except ValueError:
            length = 0
        if not 0 < length <= MAX_FORM_BYTES:   # (none, or a body this dashboard never sends: not read)
            return {}
        return parse_qs(self.environ['wsgi.input'].read(length).decode('utf-8', 'replace'))

    @property
    def same_origin(self) -> bool:
        """No Origin header (an old browser, a script), or one naming this host."""
        origin = self.environ.get('HTTP_ORIGIN')
        hosts = {self.environ.get('HTTP_HOST'), self.environ.get('HTTP_X_FORWARDED_HOST')} - {None}
        return not origin or urlsplit(origin).netloc in hosts   # (behind a proxy: the host the browser asked for)


class _Missing(LookupError):
    pass


def _respond(start_response: Callable, status: str, body: bytes, content_type: str = 'text/html; charset=utf-8',
             headers: list | None = None) -> list[bytes]:
    start_response(status, [('Content-Type', content_type), ('Content-Length', str(len(body))),
                            ('Cache-Control', 'no-store'), ('X-Frame-Options', 'DENY'),
                            ('Content-Security-Policy', "default-src 'self'; style-src 'unsafe-inline'; "
                                                        "script-src 'unsafe-inline'"), *(headers or [])])
    return [body]


def _json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _link(request: _Request, path: str, text: str) -> str:
    return f'<a href="{_e(request.base + path)}">{_e(text)}</a>'


def _task_link(request: _Request, task_id: int, name: str) -> str:
    return f'{_link(request, f"/task/{task_id}", f"#{task_id}")} {_e(name)}'


def _table(header: list[str], rows: list[list[str]], empty: str = '') -> str:
    if not rows:
        return f'<p>{empty}</p>'
    head = ''.join(f'<th>{_e(h)}</th>' for h in header)
    body = ''.join('<tr>' + ''.join(f'<td data-label="{_e(h)}">{cell}</td>' if h else f'<td>{cell}</td>'
                                    for h, cell in zip(header, row)) + '</tr>' for row in rows)
    return f'<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _filter_form(request: _Request, path: str, queue: str | None, name: str | None) -> str:
    return (f'<form class="filter" method="get" action="{_e(request.base + path)}">'
            f'<input name="queue" placeholder="queue" value="{_e(queue or "")}"> '
            f'<input name="name" placeholder="task name" value="{_e(name or "")}"> <button>Filter</button></form>')


def _buttons(*buttons: tuple[str, str]) -> str:
    return '<p>' + ''.join(f'<button name="button" value="{_e(value)}">{_e(label)}</button>'
                           for value, label in buttons) + '</p>'


def _status(status: str) -> str:
    return f'<span class="{_e(status)}">{_e(status)}</span>'


def _throughput(minutes: list[mqueue.Throughput]) -> str:
    """The last hour's tasks ended per minute, as the workers count them: a bar a minute, its
    failed attempts on top of its successes (an inline SVG, scaled to the busiest minute); a note
    where the counts' table is missing."""
    if not minutes:
        return ('<h2>Last hour</h2><p class="note">No throughput counts: the table for them is missing '
                '(<code>mqueue init-db</code> adds it).</p>')
    done, failed = sum(m.done for m in minutes), sum(m.failed for m in minutes)
    busiest = max(m.done + m.failed for m in minutes)
    height, bar = 60, 6
    bars = []
    for n, m in enumerate(minutes):
        tip = f'<title>{m.minute:%H:%M} UTC: {m.done:,} done, {m.failed:,} failed</title>'
        top = height
        for count, kind in ((m.done, 'ok'), (m.failed, 'bad')):
            if count:
                size = max(1.0, count / busiest * height)
                top -= size
                bars.append(f'<rect class="{kind}" x="{n * bar}" y="{top:.1f}" width="{bar - 1}" '
                            f'height="{size:.1f}">{tip}</rect>')
        if not (m.done or m.failed):
            bars.append(f'<rect class="none" x="{n * bar}" y="{height - 1}" width="{bar - 1}" height="1">{tip}</rect>')
    summary = (f'{done:,} done, {failed:,} failed in the last hour'
               + (f'; the busiest minute {busiest:,}' if busiest else ''))
    return (f'<h2>Last hour</h2><p class="note">{summary} (UTC, a bar a minute; failed attempts in red)</p>'
            f'<svg class="chart" viewBox="0 0 {len(minutes) * bar} {height}" role="img" '
            f'aria-label="{_e(summary)}">{"".join(bars)}</svg>')


def _num(n: int) -> str:
    return f'{n:,}'


def _count(n: int) -> str:
    """A count of the queues page: at the cap, at least that many."""
    return f'{COUNT_CAP:,}+' if n >= COUNT_CAP else f'{n:,}'


def _time(value: dt.datetime | None) -> str:
    return f'{value:%Y-%m-%d %H:%M:%S}' if value else '-'


def _next_page(request: _Request, path: str, filters: dict, name: str, key: Any, task_id: int, label: str) -> str:
    """The link to the page after this one: its last row's (time, id), the keyset the next one
    starts after, the time as the database gave it (its text: SQLite compares text)."""
    query = urlencode({**filters, name: f'{key},{task_id}'})
    return f'<p>{_link(request, f"{path}?{query}", label)}</p>'


def _cursor_of(text: str, dialect: mqueue.Dialect) -> tuple[dt.datetime, Any, int]:
    """A page's keyset cursor, 'time,id' (a link of the page before): the time, it as a
    parameter, and the id."""
    stamp, _, task_id = text.rpartition(',')
    try:
        if not _ID.fullmatch(task_id):
            raise ValueError(task_id)
        return mqueue._utc(stamp), dialect.keyset(stamp), int(task_id)
    except ValueError:
        raise _Missing(f'no such page: {text!r} is not a time and a task id') from None


def _age(seconds: float) -> str:
    return mqueue._age(seconds)


def _first_line(text: str) -> str:
    return mqueue._first_line(text, 160)


def _one(form: dict, key: str) -> str | None:
    return form.get(key, [None])[0] or None


def _ids(form: dict) -> list[int]:
    return [int(value) for value in form.get('id', []) if _ID.fullmatch(value)]


def _printable(text: str) -> str:
    """Text for a log line: control characters escaped (a URL's %0A must not start a line)."""
    return ''.join(c if c.isprintable() else repr(c)[1:-1] for c in text)


# Serving: mqueue web

def mount(application: Callable, prefix: str, dashboard: Callable) -> Callable:
    """A WSGI application that sends requests under ``prefix`` (e.g. '/mqueue') to the dashboard
    and the others to ``application`` (Django's ``get_wsgi_application()``, Flask's ``app.wsgi_app``)."""
    prefix = '/' + prefix.strip('/')

    def mounted(environ: dict, start_response: Callable) -> Iterable[bytes]:
        path = environ.get('PATH_INFO', '')
        if path == prefix or path.startswith(prefix + '/'):
            environ = {**environ, 'SCRIPT_NAME': environ.get('SCRIPT_NAME', '') + prefix,
                       'PATH_INFO': path[len(prefix):] or '/'}
            return dashboard(environ, start_response)
        return application(environ, start_response)
    return mounted


def loopback(host: str) -> bool:
    """Whether an address to bind to is reachable from this machine only."""
    if host == 'localhost':
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _ThreadingServer6(_ThreadingServer):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:   # (to the mqueue logger, not stderr)
        logger.info('dashboard: %s %s', self.address_string(), _printable(format % args))


def serve(dashboard: Dashboard, host: str = '127.0.0.1', port: int = 8080,
          ready: Callable[[Any], None] | None = None) -> None:
    """Serve the dashboard until interrupted (threads: a slow page never holds up the others).
    Refuses a non-loopback address when the dashboard has neither a password nor a token."""
    if not loopback(host) and dashboard.password is None and dashboard.token is None:
        raise mqueue.MQueueError(f'refusing to serve the dashboard on {host} without credentials: set '
                                 'MQUEUE_WEB_PASSWORD or MQUEUE_WEB_TOKEN, or bind to 127.0.0.1')
    server_class = _ThreadingServer6 if ':' in host else _ThreadingServer   # (an IPv6 address: ::1)
    with make_server(host, port, dashboard, server_class=server_class, handler_class=_QuietHandler) as server:
        logger.info('mqueue dashboard on http://%s:%d/ (%s%s)', host, server.server_port, dashboard.description,
                    ', read-only' if dashboard.read_only else '')
        if ready is not None:
            ready(server)
        server.serve_forever()
