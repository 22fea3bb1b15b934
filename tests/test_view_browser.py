"""`lcsynth view` in a real browser: headless Chromium (Debian's package) driven by Selenium through chromedriver.

A real run (tests/view_run.py) is served by the real command; the page is filtered, rows are opened, and the
highlighted spans are compared with the spans the rows' meta records. `make test` installs the browser.
"""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from view_run import build_view_run, serving

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
pytestmark = pytest.mark.skipif(not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
                                reason="needs chromium and chromium-driver (make test installs them as root)")
SHOTS = os.environ.get("LCSYNTH_VIEW_SCREENSHOTS")  # keep the screenshots in this folder to look at them


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return build_view_run(tmp_path_factory.mktemp("browser"))


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1400,1000",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(driver, check, what, seconds=20.0):
    deadline = time.monotonic() + seconds
    while True:
        result = driver.execute_script(check)
        if result:
            return result
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def listed(driver):
    return driver.execute_script("return [...document.querySelectorAll('#list li')].map(li => li.dataset.id)")


def choose(driver, select_id, value):
    from selenium.webdriver.support.ui import Select

    Select(driver.find_element("id", select_id)).select_by_value(value)


def type_into(driver, input_id, text):
    from selenium.webdriver.common.keys import Keys

    field = driver.find_element("id", input_id)
    field.send_keys(Keys.CONTROL, "a")
    field.send_keys(Keys.BACKSPACE)
    if text:
        field.send_keys(text)


def open_row(driver, row_id):
    driver.find_element("css selector", f"#list li[data-id='{row_id}']").click()
    wait_for(driver, f"return document.querySelector('#detail h2')?.textContent === {json.dumps(row_id)}",
             f"row {row_id} did not open")


def marks(driver):
    """(class, text, field) of every highlighted span on the page, read from the DOM."""
    return driver.execute_script(
        "return [...document.querySelectorAll('#detail mark.span')].map(m => [m.dataset.cls, m.textContent,"
        " m.closest('pre').dataset.field])")


def rows_of(run_dir, kind):
    return [json.loads(line) for line in (run_dir / f"{kind}-00000.jsonl").read_text().splitlines()]


def expected_marks(row):
    """The spans a row's meta records, as (class, text, field), for the methods that record character spans."""
    meta = row["meta"]
    if meta["method"] == "keychain":
        spans = [("evidence", x) for x in meta["evidence"]]
        spans += [("link" if x["chain"] == 0 else "decoy", x) for x in meta["chain"]["links"]]
        return sorted((cls, row["prompt"][x["message"]]["content"][slice(*x["char_span"])],
                       f"prompt.{x['message']}.content") for cls, x in spans)
    text = row["text"]
    if meta["method"] == "nextlong":
        spans = [("meta-chunk", s) for s in meta["meta_chunk_spans"]]
        spans += [("negative", s) for s in meta["negative_spans"]]
    else:
        spans = [("chunk", c["char_span"]) for c in meta["chunks"]] + [("marker", s) for s in meta["no_loss_spans"]]
    return sorted((cls, text[slice(*s)], "text") for cls, s in spans)


def shoot(driver, tmp_path, name):
    path = tmp_path / f"{name}.png"
    driver.save_screenshot(str(path))
    assert path.stat().st_size > 10_000  # a drawn page, not an empty one
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(SHOTS) / path.name)


def test_filter_open_rows_and_their_spans(browser, run_dir, tmp_path):
    grpo, pretrain = rows_of(run_dir, "grpo"), rows_of(run_dir, "pretrain")
    rejects = [json.loads(line) for line in (run_dir / "rejects.jsonl").read_text().splitlines()]
    total = len(grpo) + len(pretrain) + len(rows_of(run_dir, "dpo")) + len(rejects)
    with serving(run_dir) as url:
        browser.get(url)
        wait_for(browser, f"return document.querySelectorAll('#list li').length === {total}", "the rows did not load")

        choose(browser, "f-method", "keychain")
        want = [f"grpo-00000.jsonl:{i}" for i, r in enumerate(grpo) if r["meta"]["method"] == "keychain"]
        wait_for(browser, f"return document.querySelectorAll('#list li').length === {len(want)}", "method filter")
        assert listed(browser) == want
        open_row(browser, want[0])
        row = grpo[int(want[0].split(":")[1])]
        assert sorted(map(tuple, marks(browser))) == expected_marks(row)
        links = browser.execute_script("return document.querySelectorAll('.spans a').length")
        assert links == len(row["meta"]["chain"]["links"]) + 1
        browser.find_elements("css selector", ".spans a")[-1].click()  # jump to the last span
        wait_for(browser, "const m = document.querySelector('mark.flash'); if (!m) return false;"
                 "const r = m.getBoundingClientRect(); return r.top >= 0 && r.bottom <= innerHeight + r.height",
                 "jumping did not bring the span into view")
        shoot(browser, tmp_path, "keychain")

        for method in ("nextlong", "untie_knots"):
            choose(browser, "f-method", method)
            choose(browser, "f-kind", "pretrain")
            want = [f"pretrain-00000.jsonl:{i}" for i, r in enumerate(pretrain) if r["meta"]["method"] == method]
            wait_for(browser, f"return JSON.stringify([...document.querySelectorAll('#list li')].map(l => "
                     f"l.dataset.id)) === {json.dumps(json.dumps(want, separators=(',', ':')))}", f"{method} rows")
            open_row(browser, want[0])
            assert sorted(map(tuple, marks(browser))) == expected_marks(pretrain[int(want[0].split(":")[1])])
            shoot(browser, tmp_path, method)

        choose(browser, "f-kind", "")
        choose(browser, "f-method", "")
        reason = rejects[-1]["reason"]
        choose(browser, "f-reason", reason)
        want = [f"rejects.jsonl:{i}" for i, r in enumerate(rejects) if r["reason"] == reason]
        wait_for(browser, f"return document.querySelectorAll('#list li').length === {len(want)}", "reason filter")
        open_row(browser, want[-1])
        shown = browser.find_element("id", "detail").text
        assert reason in shown and (rejects[-1]["raw"] or "")[:40] in shown

        choose(browser, "f-reason", "")
        tokens = sorted(r["meta"]["n_tokens"] for r in pretrain)
        type_into(browser, "f-min", str(tokens[1]))
        type_into(browser, "f-max", str(tokens[-2]))
        wait_for(browser, f"return document.querySelectorAll('#list li').length === {len(tokens) - 2}", "token range")
        type_into(browser, "f-min", "")
        type_into(browser, "f-max", "")
        chunk_id = next(c["id"] for r in pretrain for c in r["meta"].get("chunks", []) if c["id"])
        type_into(browser, "f-q", chunk_id)
        expected = sum(chunk_id in json.dumps(r, ensure_ascii=False) for kind in ("grpo", "pretrain", "dpo")
                       for r in rows_of(run_dir, kind))
        wait_for(browser, f"return document.querySelectorAll('#list li').length === {expected}", "text search")


def test_dpo_side_by_side_with_the_short_span(browser, run_dir, tmp_path):
    (dpo,) = rows_of(run_dir, "dpo")
    with serving(run_dir) as url:
        browser.get(url)
        wait_for(browser, "return document.querySelectorAll('#list li').length > 0", "the rows did not load")
        choose(browser, "f-kind", "dpo")
        wait_for(browser, "return document.querySelectorAll('#list li').length === 1", "kind filter")
        open_row(browser, "dpo-00000.jsonl:0")
        (mark,) = marks(browser)
        short = "\n".join(m["content"] for m in dpo["short_prompt"])
        assert mark[0] == "short-span" and len(mark[1]) > 200 and mark[1] in short
        columns = browser.execute_script("return [...document.querySelectorAll('.side-by-side h3')].map(h => "
                                         "[h.textContent, h.getBoundingClientRect().left])")
        assert [c[0] for c in columns] == ["chosen", "rejected"] and columns[0][1] < columns[1][1]
        assert dpo["chosen"][0]["content"] in browser.find_element("id", "detail").text
        shoot(browser, tmp_path, "longpo")


def test_the_page_follows_a_run_being_written(browser, run_dir, tmp_path):
    live = tmp_path / "live"
    live.mkdir()
    lines = (run_dir / "pretrain-00000.jsonl").read_text().splitlines(keepends=True)
    (live / "pretrain-00000.jsonl.partial").write_text(lines[0])
    with serving(live) as url:
        browser.get(url)
        wait_for(browser, "return document.querySelectorAll('#list li').length === 1", "the first row")
        with (live / "pretrain-00000.jsonl.partial").open("a") as handle:
            handle.write(lines[1])
        wait_for(browser, "return document.querySelectorAll('#list li').length === 2", "the page did not refresh")
        assert "being written" in browser.find_element("id", "status").text


def test_export_writes_the_same_page_as_files(browser, run_dir, tmp_path):
    out = tmp_path / "export"
    result = subprocess.run([sys.executable, "-m", "lcsynth.cli", "view", str(run_dir), "--export", str(out)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    pretrain = rows_of(run_dir, "pretrain")
    browser.get((out / "index.html").as_uri())
    wait_for(browser, "return document.querySelectorAll('#list li').length > 0", "the exported rows did not load")
    choose(browser, "f-method", "nextlong")
    choose(browser, "f-kind", "pretrain")
    want = [f"pretrain-00000.jsonl:{i}" for i, r in enumerate(pretrain) if r["meta"]["method"] == "nextlong"]
    wait_for(browser, f"return document.querySelectorAll('#list li').length === {len(want)}", "filter in the export")
    open_row(browser, want[0])
    assert sorted(map(tuple, marks(browser))) == expected_marks(pretrain[int(want[0].split(":")[1])])
    shoot(browser, tmp_path, "export")
