"""The upload page in real headless Chromium, driven through Selenium and chromedriver
(tests/browser.py)."""
from __future__ import annotations

import io
import shutil

import pytest
from PIL import Image

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def page(browser):
    return browser.tab


TOP_LABEL = """(() => {
  const table = document.getElementById("results");
  const cell = table.querySelector("tbody tr td");
  return !table.hidden && cell ? cell.textContent : "";
})()"""


def test_upload_a_photo_and_see_its_labels(server, page, images, tmp_path):
    mark = server.log.mark()
    page.open(server.url + "/")

    page.choose_file("#file", images.coffee_path)

    assert page.wait_for(TOP_LABEL) == "espresso"
    assert page.evaluate("document.querySelectorAll('#results tbody tr').length") == 5
    assert page.evaluate("document.getElementById('status').textContent") == "coffee.png: espresso"
    assert "efficientnet_lite0@1" in page.evaluate("document.getElementById('timings').textContent")
    assert page.evaluate("document.getElementById('error').textContent") == ""
    screenshot = page.screenshot()
    (tmp_path / "upload-page.png").write_bytes(screenshot)
    shot = Image.open(io.BytesIO(screenshot))
    assert shot.format == "PNG" and shot.width >= 800
    assert len(shot.convert("RGB").getcolors(1 << 20) or []) > 100  # the photo preview and the table, not a blank page
    line = server.log.one_result(mark)
    assert (line["source"]["trigger"], line["top_label"]) == ("http", "espresso")


def test_cat_photo(server, page, images):
    page.open(server.url + "/")

    page.choose_file("#file", images.chelsea_path)

    page.wait_for("document.getElementById('status').textContent.startsWith('chelsea.png: ')")
    labels = page.evaluate("Array.from(document.querySelectorAll('#results tbody tr td:first-child'))"
                              ".map(td => td.textContent)")
    assert len(labels) == 5
    top = page.evaluate("document.getElementById('status').textContent").split(": ", 1)[1]
    assert top in ("tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat"), top
    assert top == labels[0]


def test_hostile_file_names_are_text_not_html(server, page, images, tmp_path):
    page.open(server.url + "/")
    good = tmp_path / '<img src=x onerror="window.pwned=1">.png'
    shutil.copyfile(images.coffee_path, good)
    bad = tmp_path / '<img src=y onerror="window.pwned=2"><b>bold.png'
    bad.write_bytes(b"this is not an image")

    page.choose_file("#file", good)
    page.wait_for(TOP_LABEL)
    status = page.evaluate("document.getElementById('status').textContent")

    page.choose_file("#file", bad)
    error = page.wait_for("document.getElementById('error').textContent")

    assert status == f"{good.name}: espresso"
    assert error.startswith(f"Could not classify {bad.name}: ")
    assert page.evaluate("typeof window.pwned") == "undefined"
    assert page.evaluate("document.querySelectorAll('img').length") == 1  # only the preview
    assert page.evaluate("document.querySelectorAll('b').length") == 0
    assert page.evaluate("document.getElementById('results').hidden") is True
