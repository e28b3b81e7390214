"""The README's picture: the verdict and the training curves of reports/example/report.html, as a
reader sees them in a browser (Debian's headless Chromium), saved as docs/img/report.png.

    .venv/bin/python tools/readme_picture.py [REPORT_HTML] [PNG]

The other sections of the page are hidden for the picture; the PNG is reduced to a 256-colour
palette to stay small (< 300 KB).
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from PIL import Image
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

ROOT = Path(__file__).resolve().parents[1]
KEPT = ("verdict", "training-curves")  # the page's sections shown in the picture
WIDTH = 1100  # CSS pixels: the page's layout at a laptop's width


def screenshot(page: Path, target: Path) -> None:
    """Open `page` in headless Chromium, hide every section but KEPT, save the page's body as a PNG."""
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    with tempfile.TemporaryDirectory() as profile:
        for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     f"--window-size={WIDTH},800", f"--user-data-dir={profile}"):
            options.add_argument(flag)
        driver = webdriver.Chrome(options=options, service=Service(executable_path="/usr/bin/chromedriver"))
        try:
            driver.get(page.resolve().as_uri())
            height = driver.execute_script(
                "const kept = arguments[0];"
                "for (const heading of document.querySelectorAll('h2')) {"
                "  const section = heading.closest('section') || heading.parentElement;"
                "  if (!kept.includes(heading.id) && !kept.includes(section.id)) section.style.display = 'none'; }"
                "return document.body.scrollHeight;", list(KEPT))
            driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",  # the whole of what is left, no scrollbar
                                   {"width": WIDTH, "height": height, "deviceScaleFactor": 1, "mobile": False})
            driver.execute_script("document.documentElement.style.overflow = 'hidden'")
            driver.save_screenshot(str(target))
        finally:
            driver.quit()
    image = Image.open(target).convert("RGB")
    image.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(target, optimize=True)


if __name__ == "__main__":
    page = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "reports" / "example" / "report.html"
    target = Path(sys.argv[2]) if len(sys.argv) > 2 else ROOT / "docs" / "img" / "report.png"
    screenshot(page, target)
    print(f"wrote {target} ({target.stat().st_size / 1e3:.0f} KB)")
