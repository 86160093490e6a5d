"""The chat page in headless Chromium: ask in German, see the streamed answer, open a citation."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

QUESTION = "Seit wann stehen Trump und Putin im Austausch?"  # answered by the demo corpus
# Debian's chromium (`.ci/run` installs it); CHROMIUM=... points at another build.
CHROMIUM = (
    os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
)
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"


@pytest.mark.slow
@pytest.mark.browser
def test_chat_page_streams_answer_and_opens_citation(api_live_url: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    if CHROMIUM is None:
        # CI installs Chromium, so there a missing browser is a failure, not a skip.
        assert not os.environ.get("CI"), "CI must install chromium (apt-get install -y chromium)"
        pytest.skip("no Chromium found: apt-get install -y chromium (or set CHROMIUM=/path)")
    ARTIFACTS.mkdir(exist_ok=True)
    problems: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        context = browser.new_context(locale="de-DE", viewport={"width": 1360, "height": 860})
        page = context.new_page()
        page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
        page.on(
            "console",
            lambda msg: problems.append(f"console: {msg.text}") if msg.type == "error" else None,
        )
        page.goto(f"{api_live_url}/")
        expect(page.locator("h1")).to_have_text("Fragen an das Archiv")  # by navigator.language
        assert page.locator('a[href="/docs"]').count() == 1

        page.fill("#question", QUESTION)
        with page.expect_response("**/v1/ask") as asked:
            page.press("#question", "Enter")
        assert asked.value.headers["content-type"].startswith("text/event-stream")
        answer = page.locator(".msg.assistant").last
        expect(answer).to_have_attribute("data-done", "true", timeout=90_000)
        cite = answer.locator(".answer button.cite").first
        expect(cite).to_be_enabled()
        number = cite.inner_text()
        assert answer.locator(".sources li").count() >= 1

        cite.click()
        quote = page.locator("#panel mark.quote")
        expect(quote).to_be_visible()
        expect(page.locator("#panel-quote")).to_have_text(quote.inner_text())
        expect(cite).to_have_class("cite active")
        page.screenshot(path=str(ARTIFACTS / "chat-page.png"))

        # The documents list, and the English interface.
        page.click("#docs-button")
        expect(page.locator("#panel .doc-list li")).to_have_count(5)
        expect(page.locator("#panel-quote")).to_be_hidden()
        page.click('button[data-lang="en"]')
        expect(page.locator("h1")).to_have_text("Ask the archive")
        expect(page.locator("#send")).to_have_text("Ask")
        browser.close()
    assert number.isdigit()
    assert not problems, problems
