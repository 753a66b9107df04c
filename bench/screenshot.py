"""The screenshot docs/dashboard.md shows: the dashboard's dead tasks page, on a SQLite database of
sample tasks, in headless Chromium (Debian's chromium and chromium-driver, through Selenium).

    python bench/screenshot.py [docs/dashboard.png]
"""
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import mqueue       # noqa: E402
import mqueue_web   # noqa: E402


def sample_queue(path: Path) -> mqueue.Registry:
    """Tasks as a shop's queue might hold them: sent mail, failed mail, reports for later."""
    connect = mqueue.connect_url(f'sqlite:///{path}')
    registry = mqueue.Registry()
    conn = connect()
    registry.create_tables(conn)

    @registry.task(name='mail.send_receipt', queue='mail', retries=0)
    def send_receipt(order, to, smtp_password):
        raise ConnectionRefusedError(f'smtp.example.com:587 refused the connection for {to}')

    @registry.task(name='reports.daily', queue='reports', retries=0)
    def daily(day):
        raise ValueError(f'no sales data for {day} yet')
    for order, to in ((1041, 'ann@example.com'), (1042, 'bob@example.org'), (1043, 'cid@example.net')):
        registry.enqueue(conn, 'mail.send_receipt', {'order': order, 'to': to, 'smtp_password': 'hunter2'})
    registry.enqueue(conn, 'reports.daily', ['2026-12-04'])
    conn.commit()
    mqueue.Worker(connect, registry=registry, poll_interval=0.01).run(burst=True)
    for order in range(1044, 1050):
        registry.enqueue(conn, 'mail.send_receipt', {'order': order, 'to': 'x@example.com', 'smtp_password': 'x'},
                         delay=600)
    registry.enqueue(conn, 'reports.daily', ['2026-12-05'], delay=3600)
    conn.commit()
    registry.connect = connect
    return registry


def main() -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / 'docs' / 'dashboard.png'
    with tempfile.TemporaryDirectory() as folder:
        registry = sample_queue(Path(folder) / 'shop.db')
        dashboard = mqueue_web.Dashboard(registry.connect, registry, refresh=3600)
        servers, started = [], threading.Event()
        threading.Thread(target=mqueue_web.serve, args=(dashboard, '127.0.0.1', 0,
                                                        lambda server: (servers.append(server), started.set())),
                         daemon=True).start()
        started.wait(30)
        options = webdriver.ChromeOptions()
        options.binary_location = '/usr/bin/chromium'
        for argument in ('--headless=new', '--no-sandbox', '--disable-dev-shm-usage', '--window-size=1000,640',
                         '--hide-scrollbars'):
            options.add_argument(argument)
        browser = webdriver.Chrome(service=Service('/usr/bin/chromedriver'), options=options)
        try:
            browser.get(f'http://127.0.0.1:{servers[0].server_port}/dead')
            browser.find_element('css selector', 'input[name=id]').click()
            browser.save_screenshot(str(target))
        finally:
            browser.quit()
            servers[0].shutdown()
    print(f'saved {target}')


if __name__ == '__main__':
    main()
