"""Headless Chromium for the web-app test: Debian's `chromium` and `chromium-driver`, installed when missing.

CI runs on a fresh machine where we are root: the packages are installed there (quietly, once). Where they cannot
be (no apt, not root, no package index reachable) the test is skipped with the reason, never silently.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

PACKAGES = ("chromium", "chromium-driver")


def _installed() -> tuple[str, str] | None:
    browser, driver = shutil.which("chromium"), shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


def _apt(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    return subprocess.run(["apt-get", *args], capture_output=True, text=True, env=env, timeout=900)


def ensure_chromium() -> tuple[str, str]:
    """(browser, driver) paths; installs the Debian packages when they are missing, else skips saying why."""
    found = _installed()
    if found:
        return found
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        pytest.skip("chromium/chromedriver missing and cannot be installed here (needs apt-get as root): "
                    f"apt-get install {' '.join(PACKAGES)}")
    install = _apt("install", "-y", "-qq", *PACKAGES)
    if install.returncode != 0:  # a fresh machine has no package index yet
        _apt("update", "-qq")
        install = _apt("install", "-y", "-qq", *PACKAGES)
    found = _installed()
    if not found:
        pytest.skip(f"could not install {' '.join(PACKAGES)}: {install.stderr.strip()[-300:]}")
    return found


def headless_chrome(browser: str, driver: str, width: int = 1400, height: int = 1100):
    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium Manager look for a driver online
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 f"--window-size={width},{height}"):
        options.add_argument(flag)  # --no-sandbox: Chromium refuses to run as root with its sandbox
    return webdriver.Chrome(options=options, service=Service(driver))
