"""Pages as a reader sees them: opened in a real headless Chromium (Debian's `chromium`, driven by
Selenium through Debian's `chromedriver`; no browser is downloaded), for the page tests.

    driver = start_chromium(profile_folder)
    check_page(driver, path / "report.html", "#verdict dl.facts", screenshot_path)

`check_page` asserts that every image loads (naturalWidth > 0), the console shows no error,
nothing is fetched from the network (Chromium's own network log: only the page's file and data:
URIs), the verdict element is fully visible without scrolling at 1280x800, and it saves a
screenshot. Each failure names the page and the element.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
VIEWPORT = (1280, 800)


def start_chromium(profile: Path):
    """Headless Chromium (Debian's) under Selenium, its console and network logged, a 1280x800 viewport."""
    assert shutil.which("chromium") and Path(CHROMEDRIVER).exists(), (
        "Debian's chromium and chromium-driver are needed (the Makefile's test set-up installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--window-size={VIEWPORT[0]},{VIEWPORT[1]}",
                 f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    # The viewport itself at 1280x800 (the window size includes no toolbar in headless mode, but be exact)
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": VIEWPORT[0], "height": VIEWPORT[1], "deviceScaleFactor": 1, "mobile": False})
    return driver


def check_page(driver, page: Path, verdict_selector: str, screenshot: Path) -> None:
    """Open `page` and assert what a reader needs of it; the messages name the page and the element."""
    driver.get_log("performance"), driver.get_log("browser")  # start from empty logs
    driver.get(page.as_uri())
    assert driver.execute_script("return document.readyState") == "complete", f"{page.name}: did not finish loading"
    driver.save_screenshot(str(screenshot))
    images = driver.execute_script("return Array.from(document.images).map(img => "
                                   "({alt: img.alt.slice(0, 60), complete: img.complete, width: img.naturalWidth}))")
    assert images, f"{page.name}: no <img> on the page"
    for number, image in enumerate(images):
        assert image["complete"] and image["width"] > 0, f"{page.name}: <img> #{number} ({image['alt']!r}) did not load"
    errors = [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
    assert not errors, f"{page.name}: console errors: {errors}"
    requested = [json.loads(entry["message"])["message"]["params"]["request"]["url"]
                 for entry in driver.get_log("performance")
                 if json.loads(entry["message"])["message"]["method"] == "Network.requestWillBeSent"]
    foreign = [url for url in requested if url != page.as_uri() and not url.startswith("data:")]
    assert not foreign, f"{page.name}: fetched from outside the page: {foreign[:5]}"
    resources = driver.execute_script("return performance.getEntriesByType('resource').map(entry => entry.name)")
    assert all(name.startswith("data:") for name in resources), f"{page.name}: resources loaded: {resources[:5]}"
    box = driver.execute_script(
        "const element = document.querySelector(arguments[0]); if (!element) return null;"
        "const rect = element.getBoundingClientRect(), style = getComputedStyle(element);"
        "return {top: rect.top, bottom: rect.bottom, height: rect.height, width: rect.width,"
        "        shown: style.visibility !== 'hidden' && style.display !== 'none',"
        "        viewport: [innerWidth, innerHeight], scroll: scrollY}", verdict_selector)
    assert box is not None, f"{page.name}: no verdict element {verdict_selector!r}"
    assert box["viewport"] == list(VIEWPORT), f"{page.name}: viewport {box['viewport']}, wanted {VIEWPORT}"
    assert box["shown"] and box["height"] > 0 and box["width"] > 0, f"{page.name}: {verdict_selector} is not shown"
    assert box["scroll"] == 0 and 0 <= box["top"] and box["bottom"] <= VIEWPORT[1], (
        f"{page.name}: {verdict_selector} spans y {box['top']:.0f}-{box['bottom']:.0f} px, not within the "
        f"first {VIEWPORT[1]} px (visible without scrolling)")
    assert screenshot.stat().st_size > 0, f"{page.name}: no screenshot"
