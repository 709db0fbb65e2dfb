"""The web console in a real headless Chromium against a 3-broker cluster:
the overview, creating a topic and producing a record from the page,
finding it by offset and by time, a consumer group's lag falling to zero,
resetting its offsets with a preview, read-only mode refusing a change,
and bad input answered with a readable page. Every page is saved as a
screenshot under target/console-screenshots/."""

from __future__ import annotations

import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime, timezone

from confluent_kafka import Consumer
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import Select, WebDriverWait

from conftest import shot

TOPIC = "web-orders"
GROUP = "web-readers"


def wait(driver, timeout=30):
    return WebDriverWait(driver, timeout, poll_frequency=0.2)


def text_of(driver, css: str) -> str:
    return driver.find_element(By.CSS_SELECTOR, css).text


def fill(form, name: str, value: str) -> None:
    el = form.find_element(By.NAME, name)
    el.clear()
    el.send_keys(value)


def test_overview_shows_the_brokers(console, browser):
    browser.get(console.url + "/")
    rows = browser.find_elements(By.CSS_SELECTOR, "#brokers tbody tr")
    assert len(rows) == 3, browser.page_source
    assert all("alive" in r.text for r in rows)
    assert text_of(browser, "#controller").isdigit()
    shot(browser, "overview")


def test_create_a_topic_and_produce_and_find_a_record(console, browser):
    browser.get(console.url + "/topics")
    form = browser.find_element(By.ID, "create-topic")
    fill(form, "name", TOPIC)
    fill(form, "partitions", "3")
    fill(form, "replication_factor", "3")
    form.find_element(By.TAG_NAME, "button").click()
    wait(browser).until(EC.text_to_be_present_in_element((By.ID, "flash"), f"Created topic {TOPIC}"))
    assert len(browser.find_elements(By.CSS_SELECTOR, "#partitions tbody tr")) == 3
    shot(browser, "topic")

    before_ms = int(time.time() * 1000) - 2000
    browser.get(f"{console.url}/topics/{TOPIC}/messages")
    form = browser.find_element(By.ID, "produce")
    fill(form, "partition", "1")
    fill(form, "key", "order-42")
    fill(form, "value", '{"total": 12, "currency": "EUR"}')
    fill(form, "headers", "trace=t-9")
    form.find_element(By.TAG_NAME, "button").click()
    wait(browser).until(EC.text_to_be_present_in_element((By.ID, "flash"), "Produced to partition 1 at offset 0"))
    # Redirected to a search by that offset: the record is there.
    table = browser.find_element(By.ID, "messages")
    assert "order-42" in table.text and "trace" in table.text, table.text

    # By time, streamed by the page's script, shown as JSON.
    browser.get(f"{console.url}/topics/{TOPIC}/messages")
    form = browser.find_element(By.ID, "search")
    Select(form.find_element(By.NAME, "from")).select_by_value("timestamp")
    when = datetime.fromtimestamp(before_ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    fill(form, "timestamp", when)
    Select(form.find_element(By.NAME, "format")).select_by_value("json")
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait(browser).until(EC.text_to_be_present_in_element((By.ID, "summary"), "1 found"))
    assert '"currency": "EUR"' in text_of(browser, "#messages"), text_of(browser, "#messages")
    shot(browser, "messages")


def test_a_group_lag_falls_to_zero_and_its_offsets_reset(console, browser):
    console.sluice("console-producer", "--bootstrap-server", console.bootstrap, "--topic", TOPIC,
                   input="".join(f"event-{i}\n" for i in range(200)))
    c = Consumer({"bootstrap.servers": console.bootstrap, "group.id": GROUP,
                  "auto.offset.reset": "earliest", "enable.auto.commit": True,
                  "auto.commit.interval.ms": 500})
    c.subscribe([TOPIC])
    got, deadline = 0, time.time() + 60
    while got < 201 and time.time() < deadline:
        got += sum(1 for m in c.consume(num_messages=500, timeout=0.5) if not m.error())
    assert got == 201
    c.commit(asynchronous=False)
    try:
        browser.get(f"{console.url}/groups/{GROUP}")
        # The page refreshes itself: wait for the lag to read 0.
        wait(browser, 60).until(lambda d: text_of(d, "#total-lag") == "0" and "Stable" in text_of(d, "#state"))
        assert len(browser.find_elements(By.CSS_SELECTOR, "#members tbody tr")) == 1
        shot(browser, "group")
    finally:
        c.close()

    # Empty now: reset to the earliest, with a preview first.
    browser.get(f"{console.url}/groups/{GROUP}")
    wait(browser, 60).until(lambda d: d.find_elements(By.ID, "reset") or d.refresh())
    form = browser.find_element(By.ID, "reset")
    Select(form.find_element(By.NAME, "to")).select_by_value("earliest")
    form.find_element(By.TAG_NAME, "button").click()
    preview = browser.find_element(By.ID, "preview")
    assert len(preview.find_elements(By.CSS_SELECTOR, "tbody tr")) == 3
    shot(browser, "group-reset-preview")
    browser.find_element(By.CSS_SELECTOR, "#apply-reset button").click()
    wait(browser).until(EC.text_to_be_present_in_element((By.ID, "flash"), "reset to earliest"))
    assert text_of(browser, "#total-lag") == "201"
    # The lag chart draws once the console has sampled the group twice.
    wait(browser, 60).until(lambda d: d.find_elements(By.CSS_SELECTOR, "figure.chart polyline"))
    shot(browser, "group-after-reset")
    browser.get(f"{console.url}/topics/{TOPIC}")
    shot(browser, "topic-with-records")
    browser.get(f"{console.url}/topics")
    shot(browser, "topics")


def test_read_only_mode_hides_and_refuses_changes(console, browser):
    browser.get(f"{console.read_only_url}/topics/{TOPIC}")
    assert "read-only" in text_of(browser, "header")
    assert not browser.find_elements(By.ID, "delete-topic")
    assert not browser.find_elements(By.ID, "alter-configs")
    shot(browser, "read-only")
    # A change sent anyway is refused, and the topic stays.
    data = urllib.parse.urlencode({"confirm": TOPIC}).encode()
    try:
        urllib.request.urlopen(f"{console.read_only_url}/topics/{TOPIC}/delete", data=data, timeout=10)
        raise AssertionError("a read-only console accepted a delete")
    except urllib.error.HTTPError as e:
        assert e.code == 403
        assert "read-only" in e.read().decode()
    browser.get(f"{console.url}/topics")
    assert browser.find_elements(By.CSS_SELECTOR, f"#topics tr[data-name='{TOPIC}']")


def test_bad_input_gets_a_readable_page(console, browser):
    cases = [
        (f"/topics/{TOPIC}/messages?from=offset&offset=-5", "offset"),
        (f"/topics/{TOPIC}/messages?from=oldest&limit=99999999", "limit"),
        (f"/topics/{TOPIC}/messages?from=timestamp&timestamp=not-a-time", "timestamp"),
        ("/topics/no-such-topic", "not found"),
    ]
    for path, word in cases:
        browser.get(console.url + path)
        err = text_of(browser, "#error")
        assert word in err, (path, err)
        assert "panicked" not in browser.page_source and "stack" not in browser.page_source.lower()
    shot(browser, "bad-input")
    # An invalid topic name typed in the form (the browser's own pattern
    # check lifted, as a script or an old browser would): the page says why.
    browser.get(console.url + "/topics")
    form = browser.find_element(By.ID, "create-topic")
    browser.execute_script("arguments[0].removeAttribute('pattern')", form.find_element(By.NAME, "name"))
    fill(form, "name", "bad name!")
    form.find_element(By.TAG_NAME, "button").click()
    wait(browser).until(EC.presence_of_element_located((By.ID, "error")))
    assert "invalid topic name" in text_of(browser, "#error")
