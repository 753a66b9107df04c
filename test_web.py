"""The dashboard (mqueue_web) in a real browser: headless Chromium (Debian's chromium and
chromium-driver, through Selenium) against `mqueue_web.serve` on MariaDB, PostgreSQL and SQLite.
./test runs this file in a phase of its own (browser), installing Chromium when it is missing.
test_mqueue.py tests the same pages through their WSGI interface on every backend."""
import contextlib
import os
import tempfile
import threading
import urllib.error
import urllib.request
import uuid

import pytest

import mqueue
import mqueue_web

URLS = {'sqlite': f'sqlite:///{tempfile.gettempdir()}/mqueue-web-test-{os.getpid()}.db',
        'mariadb': 'mysql://root@127.0.0.1:3306/test', 'postgresql': 'postgresql://postgres@127.0.0.1:5432/test'}


@pytest.fixture(params=list(URLS))
def queue(request):
    """A registry on its own tables of one database, with a dead task, two scheduled ones and a
    ready one, dropped after."""
    connect = mqueue.connect_url(URLS[request.param])
    try:
        conn = connect()
    except Exception as exc:
        if os.environ.get('CI') == 'true':
            raise
        pytest.skip(f'{request.param} unreachable: {exc}')
    suffix = uuid.uuid4().hex[:10]
    registry = mqueue.Registry(table=f'w_task_{suffix}', cron_table=f'w_cron_{suffix}')
    registry.create_tables(conn)
    conn.commit()

    @registry.task(name='mail.send', queue='mail', retries=0)
    def send(to, password):
        raise ValueError(f'mailbox {to} does not exist')
    registry.enqueue(conn, 'mail.send', {'to': 'ann@example.invalid', 'password': 'hunter2'})
    conn.commit()
    assert mqueue.Worker(connect, registry=registry, poll_interval=0.01).run(burst=True) == 1
    registry.enqueue(conn, 'mail.send', {'to': 'bob@example.com', 'password': 'x'}, delay=3600)
    registry.enqueue(conn, 'mail.send', {'to': 'cid@example.com', 'password': 'x'}, delay=7200)
    conn.commit()
    registry.connect, registry.conn = connect, conn
    yield registry
    with contextlib.suppress(Exception):
        conn.rollback()
    cursor = conn.cursor()
    for table in (registry.table, registry.cron_table, registry.result_table, registry.counts_table):
        cursor.execute(f'DROP TABLE IF EXISTS {table}')
    conn.commit()
    conn.close()


@contextlib.contextmanager
def serving(dashboard):
    """The dashboard served on a free loopback port, in a thread; its URL."""
    started = threading.Event()
    servers = []

    def ready(server):
        servers.append(server)
        started.set()
    thread = threading.Thread(target=mqueue_web.serve, args=(dashboard, '127.0.0.1', 0, ready), daemon=True)
    thread.start()
    assert started.wait(30), 'the dashboard did not start'
    try:
        yield f'http://127.0.0.1:{servers[0].server_port}'
    finally:
        servers[0].shutdown()
        thread.join(30)


@pytest.fixture(scope='module')
def browser():
    if not (os.access('/usr/bin/chromium', os.X_OK) and os.access('/usr/bin/chromedriver', os.X_OK)):
        if os.environ.get('CI') == 'true':
            raise AssertionError('Chromium is missing: apt-get install chromium chromium-driver (./test does)')
        pytest.skip('Chromium is missing: apt-get install chromium chromium-driver (./test does, as root)')
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = '/usr/bin/chromium'
    for argument in ('--headless=new', '--no-sandbox', '--disable-dev-shm-usage', '--window-size=390,844'):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service('/usr/bin/chromedriver'), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def flash(browser):
    """What the page an action led to says it did (waiting for that page to load)."""
    from selenium.webdriver.support.ui import WebDriverWait
    return WebDriverWait(browser, 30).until(lambda driver: driver.find_elements('css selector', '.done'))[0].text


def rows_of(registry):
    cursor = registry.conn.cursor()
    cursor.execute(f'SELECT id, dead_at IS NOT NULL, eta FROM {registry.table} ORDER BY id')
    rows = cursor.fetchall()
    registry.conn.commit()
    return rows


def test_every_page_loads_fits_a_phone_and_shows_the_tasks(queue, browser):
    with serving(mqueue_web.Dashboard(queue.connect, queue, refresh=3600)) as url:
        for path, heading, text in (('/', 'Queues', 'mail'), ('/dead', 'Dead tasks', 'ann@example.invalid'),
                                    ('/scheduled', 'Scheduled tasks', 'mail.send'), ('/running', 'Running tasks', ''),
                                    ('/crons', 'Crons', ''), ('/task/1', 'Task 1', 'Traceback')):
            browser.get(url + path)
            assert browser.find_element('tag name', 'h1').text == heading
            assert text in browser.page_source
            assert 'hunter2' not in browser.page_source
            assert browser.execute_script('return document.documentElement.scrollWidth <= window.innerWidth'), path


def test_retrying_a_dead_task_and_running_a_scheduled_one_now_change_the_database(queue, browser):
    with serving(mqueue_web.Dashboard(queue.connect, queue, refresh=3600)) as url:
        browser.get(url + '/dead')
        browser.find_element('css selector', 'input[name=id][value="1"]').click()
        browser.find_element('css selector', 'button[value=retry]').click()
        assert '1 dead task retried' in flash(browser)
        assert not rows_of(queue)[0][1]                      # task 1: dead no more
        browser.get(url + '/scheduled')
        browser.find_element('css selector', 'input[name=id][value="3"]').click()
        browser.find_element('css selector', 'button[value=run-now]').click()
        assert '1 task due now' in flash(browser)
        with mqueue_web.Dashboard(queue.connect, queue)._transaction() as conn:
            due = {task.id for task in queue.scheduled_tasks(conn)}
        assert due == {2}                                     # task 3 is due now, task 2 still waits


def test_a_post_without_the_csrf_token_or_credentials_changes_nothing(queue, browser):
    before = rows_of(queue)
    with serving(mqueue_web.Dashboard(queue.connect, queue)) as url:
        browser.get(url + '/dead')   # (the browser holds the cookie; a forged form elsewhere has no token)
        form = b'id=1&button=retry&back=/dead'
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(urllib.request.Request(url + '/action/retry', data=form), timeout=30)
        assert refused.value.code == 403
    with serving(mqueue_web.Dashboard(queue.connect, queue, password='s3cret')) as url:
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(urllib.request.Request(url + '/action/retry', data=form), timeout=30)
        assert refused.value.code == 401
        browser.get(url + '/')   # (the browser asks for credentials: no page of the dashboard shows)
        assert '<h1>' not in browser.page_source and 'mail.send' not in browser.page_source
    assert rows_of(queue) == before
