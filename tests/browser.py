"""Headless Chromium driven through Selenium and Debian's chromedriver: open a page, pick a
file in an <input type=file>, evaluate JavaScript, take a screenshot. Dialogs that a page
opens (an injected alert(), say) are recorded and dismissed, so a test can assert none ran."""
from __future__ import annotations

import time
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


def missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not path.exists():
            return f"{path} not found (`make browser` installs Debian's {package})"
    return None


class Tab:
    """The one page of a browser, with the few verbs the tests need."""

    def __init__(self, driver):
        from selenium.common.exceptions import UnexpectedAlertPresentException
        self.driver = driver
        self.dialogs: list[str] = []
        self._alert_error = UnexpectedAlertPresentException

    def _dismiss_dialogs(self) -> None:
        from selenium.common.exceptions import NoAlertPresentException
        while True:
            try:
                alert = self.driver.switch_to.alert
            except NoAlertPresentException:
                return
            self.dialogs.append(alert.text)
            alert.accept()

    def _call(self, action):
        for _ in range(10):  # a page may open several dialogs in a row
            try:
                return action()
            except self._alert_error:
                self._dismiss_dialogs()
        return action()

    def evaluate(self, expression: str):
        return self._call(lambda: self.driver.execute_script(f"return ({expression});"))

    def wait_for(self, expression: str, timeout: float = 30.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {expression}: {self.evaluate('document.body.innerText')!r}")

    def open(self, url: str) -> None:
        self._call(lambda: self.driver.get(url))
        self.wait_for("document.readyState === 'complete' && !!document.getElementById('file')")

    def choose_file(self, selector: str, path: Path) -> None:
        from selenium.webdriver.common.by import By
        self._call(lambda: self.driver.find_element(By.CSS_SELECTOR, selector).send_keys(str(path)))

    def screenshot(self) -> bytes:
        return self._call(self.driver.get_screenshot_as_png)


class Browser:
    """Headless Chromium with a throwaway profile; `tab` drives its one page."""

    def __init__(self, profile: Path):
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
        options = webdriver.ChromeOptions()
        options.binary_location = str(CHROMIUM)
        for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
                     "--no-default-browser-check", "--disable-background-networking", "--disable-component-update",
                     "--disable-dev-shm-usage", "--disable-extensions", "--window-size=1000,900",
                     f"--user-data-dir={profile}"):
            options.add_argument(flag)
        options.unhandled_prompt_behavior = "ignore"  # dialogs are recorded by Tab, not auto-dismissed
        log = profile.parent / "chromedriver.log"
        # An explicit driver path: Selenium never tries to download one.
        self.driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER), log_output=str(log)), options=options)
        self.tab = Tab(self.driver)

    def close(self) -> None:
        self.driver.quit()  # ends the browser, its renderers and the driver
