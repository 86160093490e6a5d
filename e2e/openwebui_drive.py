"""Drive Open WebUI in Chromium against the service (called by e2e/openwebui.sh).

Asks two questions (the second pasted with 5,000+ characters), opens the sources, clicks a
source chip, saves screenshots and checks what a user should see:
- the chip's pop-up shows a quoted sentence of the service's answer;
- the sources list renders ``[1]`` (no math, no bare "1" from ``\\[1\\]``);
- the long paste is answered;
- the service logged no 4xx for Open WebUI's requests (background tasks included).
Exit code 1 when a check fails; every check is printed.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

import httpx
from playwright.sync_api import Page, sync_playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeout

QUESTION = "Worüber sprachen Trump und Putin im März 2025 außer der Ukraine noch?"
PASTE = "Dies ist ein eingefügter Absatz aus einem Bericht, der zur Frage nichts beiträgt. "
LONG_QUESTION = (
    "Wann war das erste Telefonat zwischen Trump und Putin? Hier ist der Text, den ich "
    "dazu gefunden habe:\n\n" + PASTE * 62
)
ANSWER_TIMEOUT_MS = 240_000


def _ask(page: Page, text: str, number: int) -> None:
    """Type (paste) a question, send it, and wait until the ``number``-th answer is complete."""
    box = page.locator("#chat-input")
    box.click()
    page.keyboard.insert_text(text)
    page.locator("#send-message-button").click()
    # The copy button appears under an answer once its stream has ended.
    page.locator(".copy-response-button").nth(number - 1).wait_for(timeout=ANSWER_TIMEOUT_MS)
    page.wait_for_timeout(1500)


def _dismiss_popups(page: Page) -> None:
    """Close the "What's New" dialog a first visit shows (it appears a moment after load)."""
    button = page.locator("[role='dialog'] button", has_text="Okay")
    try:
        button.first.wait_for(timeout=10_000)
    except PlaywrightTimeout:
        return
    button.first.click()
    page.wait_for_timeout(500)


def _service_4xx(log: Path) -> list[str]:
    return [
        line for line in log.read_text(errors="replace").splitlines() if re.search(r'" 4\d\d', line)
    ]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--webui", required=True)
    parser.add_argument("--service", required=True)
    parser.add_argument("--chromium", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--service-log", type=Path, required=True)
    args = parser.parse_args()
    results: dict[str, bool] = {}
    answer = httpx.post(f"{args.service}/v1/ask", json={"question": QUESTION}, timeout=300).json()
    quotes = [" ".join(c["quote"].split()) for c in answer["citations"]]

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=args.chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1100}, locale="de-DE")
        page.goto(args.webui, wait_until="domcontentloaded", timeout=120_000)
        page.locator("#chat-input").wait_for(timeout=120_000)
        _dismiss_popups(page)
        started = time.monotonic()
        _ask(page, QUESTION, 1)
        print(f"first answer after {time.monotonic() - started:.1f} s")
        response = page.locator("#response-content-container").nth(0)
        page.screenshot(path=args.out / "1-answer.png", full_page=True)
        text = response.inner_text()
        results["answer has a sources list"] = "Quellen" in text
        results["no math rendering in the answer"] = response.locator(".katex").count() == 0
        # Open WebUI turns a literal [1] into a chip naming the source; \[1\] became math.
        first_item = response.locator("li").first
        results["sources list shows [1] (as Open WebUI's source chip)"] = first_item.locator(
            "button[aria-label]"
        ).count() > 0 and not first_item.inner_text().lstrip().startswith("1 ")

        chips = page.locator("button", has_text=re.compile(r"^\s*\d+ (Quellen?|Sources?)\s*$"))
        chips.first.click()
        page.wait_for_timeout(500)
        page.locator("[id^='source-']").first.click()
        dialog = page.locator("[role='dialog'], .modal").last
        dialog.wait_for(timeout=10_000)
        page.wait_for_timeout(800)
        page.screenshot(path=args.out / "2-source-popup.png")
        popup = " ".join(dialog.inner_text().split())
        results["chip pop-up shows a quoted sentence"] = any(q[:60] in popup for q in quotes)
        page.keyboard.press("Escape")
        page.wait_for_timeout(500)

        started = time.monotonic()
        _ask(page, LONG_QUESTION, 2)
        seconds = time.monotonic() - started
        print(f"second answer ({len(LONG_QUESTION)} characters pasted) after {seconds:.1f} s")
        page.screenshot(path=args.out / "3-long-question.png", full_page=True)
        second = page.locator("#response-content-container").nth(1).inner_text()
        results["5,000-character question answered"] = "Quellen" in second or "Sources" in second
        # Background tasks (title, tags, follow-ups) run after an answer: give them time.
        page.wait_for_timeout(8000)
        page.screenshot(path=args.out / "4-after-tasks.png", full_page=True)
        browser.close()

    log = args.service_log.read_text(errors="replace")
    chats = log.count("POST /v1/chat/completions")
    print(f"the service logged {chats} chat completions (answers and background tasks)")
    errors = _service_4xx(args.service_log)
    results["no 4xx in the service log"] = not errors and chats >= 4
    for line in errors[:10]:
        print("  4xx:", line)
    for name, ok in results.items():
        print(("PASS " if ok else "FAIL ") + name)
    return 0 if all(results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
