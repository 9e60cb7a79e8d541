"""The web page in a real headless Chromium (Debian's chromium + chromium-driver, driven by Selenium)."""
from __future__ import annotations

import shutil

import pytest

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")


@pytest.fixture
def browser():
    if not (CHROMIUM and DRIVER):
        pytest.fail("the page test needs Debian's chromium and chromium-driver: apt-get install chromium chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage", "--window-size=1100,1400"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=DRIVER))
    yield driver
    driver.quit()


def test_upload_ask_and_watch_the_steps_arrive(browser, embedded_service, clip, tmp_path):
    browser.get(str(embedded_service.base_url))
    wait = WebDriverWait(browser, 90)
    browser.find_element(By.ID, "file").send_keys(str(clip))
    browser.find_element(By.ID, "upload").click()
    wait.until(lambda d: "Stored: 90 frames" in d.find_element(By.ID, "video-info").text)
    browser.find_element(By.ID, "max-turns").clear()
    browser.find_element(By.ID, "max-turns").send_keys("2")
    browser.find_element(By.ID, "ask").click()
    wait.until(lambda d: d.find_element(By.ID, "answer").text in {"A", "B"})
    steps = [item.text for item in browser.find_elements(By.CSS_SELECTOR, "#steps li")]
    assert steps[0] == "Looked at 8 frames spread over the video." and steps[1].startswith("Turn 1: ")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#timeline .tick")) >= 8
    wait.until(lambda d: d.execute_script(
        "return [...document.querySelectorAll('#frames img')].every(i => i.complete && i.naturalWidth > 0)"))
    assert "complete" in browser.find_element(By.ID, "status").text
    # The embedded service is calibrated (tests/service/conftest.py): the page shows the set and its α.
    prediction_set = browser.find_element(By.ID, "prediction-set").text
    assert prediction_set.startswith("{") and prediction_set.endswith("at α = 0.1")
    browser.save_screenshot(str(tmp_path / "page.png"))


def test_a_bad_upload_is_reported_on_the_page(browser, embedded_service, tmp_path):
    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n" * 50)
    browser.get(str(embedded_service.base_url))
    browser.find_element(By.ID, "file").send_keys(str(text))
    browser.find_element(By.ID, "upload").click()
    WebDriverWait(browser, 30).until(lambda d: "Upload refused: the upload is not a video"
                                     in d.find_element(By.ID, "video-info").text)
    assert browser.find_element(By.ID, "ask").get_attribute("disabled")
