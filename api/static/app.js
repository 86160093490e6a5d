// Chat page: asks POST /v1/ask with "stream": true and renders the server-sent events.
// Everything from the server is inserted as text (textContent), never as HTML.
"use strict";

const I18N = {
  de: {
    title: "Fragen an das Archiv",
    documents: "Dokumente",
    apiDocs: "API-Doku",
    apiKey: "API-Schlüssel",
    intro: "Stellen Sie eine Frage zu den Artikeln im Archiv. Jede Aussage der Antwort ist mit einer nummerierten Quelle belegt; ein Klick darauf zeigt die Textstelle.",
    questionLabel: "Frage",
    placeholder: "Ihre Frage …",
    send: "Fragen",
    close: "Schließen",
    keyPrompt: "Dieser Server verlangt einen API-Schlüssel.",
    cancel: "Abbrechen",
    save: "Speichern",
    sources: "Quellen",
    searching: "Suche in den Dokumenten …",
    found: (n) => `${n} Textstellen gefunden, Antwort entsteht …`,
    abstained: "Keine belegte Antwort",
    openPage: "Als Seite öffnen",
    original: "Originalartikel",
    error: "Fehler",
    docsTitle: "Dokumente im Archiv",
    chunks: "Abschnitte",
    unsupported: "nicht sicher belegt",
    took: (s, llm) => `${s} s · ${llm === "extractive" ? "extraktiv" : llm}`,
    quote: "Zitierte Stelle",
    loading: "Lädt …",
    noDocs: "Noch keine Dokumente.",
    examples: [
      "Seit wann stehen Trump und Putin im Austausch?",
      "Worüber sprachen Trump und Putin im März 2025 außer der Ukraine noch?",
      "Wann war das erste Telefonat zwischen Trump und Putin?",
    ],
  },
  en: {
    title: "Ask the archive",
    documents: "Documents",
    apiDocs: "API docs",
    apiKey: "API key",
    intro: "Ask a question about the articles in the archive. Every statement of the answer cites a numbered source; click it to see the passage.",
    questionLabel: "Question",
    placeholder: "Your question …",
    send: "Ask",
    close: "Close",
    keyPrompt: "This server requires an API key.",
    cancel: "Cancel",
    save: "Save",
    sources: "Sources",
    searching: "Searching the documents …",
    found: (n) => `${n} passages found, writing the answer …`,
    abstained: "No supported answer",
    openPage: "Open as page",
    original: "Original article",
    error: "Error",
    docsTitle: "Documents in the archive",
    chunks: "passages",
    unsupported: "weakly supported",
    took: (s, llm) => `${s} s · ${llm}`,
    quote: "Cited passage",
    loading: "Loading …",
    noDocs: "No documents yet.",
    examples: [
      "Since when have Trump and Putin been in contact?",
      "Which news outlet reported that a Putin-Trump meeting is being prepared?",
      "When did Trump and Putin first talk on the phone?",
    ],
  },
};

const MARKER = /\[(\d+(?:\s*,\s*\d+)*)\]/g;
const MAX_HISTORY_TURNS = 6;

const state = {
  lang: pickLanguage(),
  history: [],
  busy: false,
  activeCite: null,
};

const $ = (id) => document.getElementById(id);
const t = (key) => I18N[state.lang][key];

function pickLanguage() {
  const saved = localStorage.getItem("rag-lang");
  if (saved === "de" || saved === "en") return saved;
  return (navigator.language || "de").toLowerCase().startsWith("en") ? "en" : "de";
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (value !== null && value !== undefined && value !== false) node.setAttribute(key, value);
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

// ---------------------------------------------------------------------------------------
// Language

function applyLanguage(lang) {
  state.lang = lang;
  localStorage.setItem("rag-lang", lang);
  document.documentElement.lang = lang;
  document.title = t("title");
  for (const node of document.querySelectorAll("[data-i18n]")) {
    node.textContent = t(node.dataset.i18n);
  }
  for (const node of document.querySelectorAll("[data-i18n-placeholder]")) {
    node.placeholder = t(node.dataset.i18nPlaceholder);
  }
  for (const node of document.querySelectorAll("[data-i18n-aria]")) {
    node.setAttribute("aria-label", t(node.dataset.i18nAria));
  }
  for (const button of document.querySelectorAll("[data-lang]")) {
    button.setAttribute("aria-pressed", String(button.dataset.lang === lang));
  }
  const examples = $("examples");
  examples.replaceChildren(
    ...t("examples").map((q) =>
      el("button", { type: "button", class: "example", text: q, onclick: () => ask(q) }),
    ),
  );
}

// ---------------------------------------------------------------------------------------
// HTTP

function authHeaders() {
  const key = localStorage.getItem("rag-api-key");
  return key ? { Authorization: `Bearer ${key}` } : {};
}

async function askForKey() {
  const dialog = $("key-dialog");
  $("key-input").value = localStorage.getItem("rag-api-key") || "";
  $("key-button").hidden = false;
  dialog.showModal();
  await new Promise((resolve) => dialog.addEventListener("close", resolve, { once: true }));
  if (dialog.returnValue === "ok" && $("key-input").value.trim()) {
    localStorage.setItem("rag-api-key", $("key-input").value.trim());
    return true;
  }
  return false;
}

// fetch with the API key; on 401 asks for a key once and retries.
async function apiFetch(url, options = {}) {
  const send = () =>
    fetch(url, { ...options, headers: { ...(options.headers || {}), ...authHeaders() } });
  let response = await send();
  if (response.status === 401 && (await askForKey())) response = await send();
  return response;
}

async function errorMessage(response) {
  try {
    const body = await response.json();
    if (body && body.error && body.error.message) return body.error.message;
  } catch (_) {
    /* not JSON */
  }
  return `HTTP ${response.status}`;
}

// Yields {event, data} for each server-sent event of a fetch response.
async function* readEvents(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true }).replace(/\r\n/g, "\n");
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let event = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (data.length) yield { event, data: JSON.parse(data.join("\n")) };
    }
  }
}

// ---------------------------------------------------------------------------------------
// Messages

function scrollToEnd() {
  const box = $("messages");
  box.scrollTop = box.scrollHeight;
}

function addUserMessage(text) {
  $("welcome").hidden = true;
  $("messages").append(el("div", { class: "msg user" }, el("p", { text })));
  scrollToEnd();
}

function citeButton(number, citations) {
  const citation = citations.get(number);
  const button = el("button", {
    type: "button",
    class: "cite" + (citation && !citation.supported ? " weak" : ""),
    text: String(number),
    title: citation ? citation.title : null,
    "aria-label": citation ? `${t("sources")} ${number}: ${citation.title}` : String(number),
    disabled: citation ? null : "disabled",
    "data-number": String(number),
  });
  if (citation) button.addEventListener("click", () => openCitation(citation, button));
  return button;
}

// Answer text with each [n] marker turned into a button that opens citation n.
function renderAnswerText(container, text, citations) {
  container.replaceChildren();
  let last = 0;
  for (const match of text.matchAll(MARKER)) {
    container.append(document.createTextNode(text.slice(last, match.index)));
    const group = el("span", { class: "cites" });
    for (const part of match[1].split(",")) group.append(citeButton(parseInt(part, 10), citations));
    container.append(group);
    last = match.index + match[0].length;
  }
  container.append(document.createTextNode(text.slice(last)));
}

function renderSources(list, citations) {
  list.replaceChildren();
  const sorted = [...citations.values()].sort((a, b) => a.number - b.number);
  for (const c of sorted) {
    const meta = [c.source, c.published].filter(Boolean).join(", ");
    const link = el("button", {
      type: "button",
      class: "source-link",
      onclick: (event) => openCitation(c, event.currentTarget),
    }, el("span", { class: "num", text: `[${c.number}]` }), " ", el("span", { text: c.title || c.doc_id }));
    list.append(
      el("li", {},
        link,
        meta ? el("span", { class: "meta", text: ` · ${meta}` }) : null,
        c.supported ? null : el("span", { class: "badge", text: t("unsupported") }),
      ),
    );
  }
}

function assistantMessage() {
  const status = el("p", { class: "status", text: t("searching") });
  const body = el("div", { class: "answer" });
  const sourcesTitle = el("h3", { text: t("sources"), hidden: "hidden" });
  const sources = el("ol", { class: "sources" });
  const footer = el("p", { class: "footer" });
  const node = el("div", { class: "msg assistant" }, status, body, sourcesTitle, sources, footer);
  $("messages").append(node);
  scrollToEnd();
  return { node, status, body, sourcesTitle, sources, footer };
}

async function ask(question) {
  question = question.trim();
  if (!question || state.busy) return;
  state.busy = true;
  $("send").disabled = true;
  $("question").value = "";
  addUserMessage(question);
  const view = assistantMessage();
  let text = "";
  let citations = new Map();
  try {
    const response = await apiFetch("/v1/ask", {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
      body: JSON.stringify({
        question,
        stream: true,
        history: state.history.slice(-MAX_HISTORY_TURNS),
      }),
    });
    if (!response.ok) throw new Error(await errorMessage(response));
    for await (const { event, data } of readEvents(response)) {
      if (event === "passages") {
        view.status.textContent = t("found")(data.passages.length);
      } else if (event === "delta") {
        text += data.text;
        renderAnswerText(view.body, text, citations);
        scrollToEnd();
      } else if (event === "citations") {
        citations = new Map(data.citations.map((c) => [c.number, c]));
        renderAnswerText(view.body, text, citations);
      } else if (event === "done") {
        citations = new Map(data.citations.map((c) => [c.number, c]));
        text = text || data.answer;
        renderAnswerText(view.body, text, citations);
        view.status.remove();
        if (data.abstained) {
          view.node.classList.add("abstained");
          view.body.before(el("p", { class: "abstain-label", text: t("abstained") }));
        }
        if (citations.size) {
          view.sourcesTitle.hidden = false;
          renderSources(view.sources, citations);
        }
        const seconds = (data.timings_ms.total / 1000).toLocaleString(state.lang, {
          maximumFractionDigits: 1,
        });
        view.footer.textContent = t("took")(seconds, data.model.llm);
        state.history.push({ role: "user", content: question });
        state.history.push({ role: "assistant", content: text });
        view.node.dataset.done = "true";
      } else if (event === "error") {
        throw new Error(data.error.message);
      }
    }
  } catch (error) {
    view.status.remove();
    view.node.classList.add("error");
    view.body.append(el("p", { class: "error-text", text: `${t("error")}: ${error.message}` }));
    view.node.dataset.done = "error";
  } finally {
    state.busy = false;
    $("send").disabled = false;
    scrollToEnd();
    $("question").focus();
  }
}

// ---------------------------------------------------------------------------------------
// Side panel: a cited passage, or the documents

function openPanel(title, meta, quote = null) {
  $("panel").hidden = false;
  $("panel-quote").hidden = !quote;
  $("panel-quote").textContent = quote || "";
  $("panel-title").textContent = title;
  $("panel-meta").replaceChildren(...meta);
  document.body.classList.add("panel-open");
}

function closePanel() {
  $("panel").hidden = true;
  document.body.classList.remove("panel-open");
  if (state.activeCite) state.activeCite.classList.remove("active");
  state.activeCite = null;
}

function safeHref(url) {
  try {
    const parsed = new URL(url, location.href);
    return parsed.protocol === "http:" || parsed.protocol === "https:" ? parsed.href : null;
  } catch (_) {
    return null;
  }
}

// The document text cut at the highlight bounds: passage in a span, quote in a <mark>.
function highlightedText(text, passage, quote) {
  const cuts = new Set([0, text.length, passage.start, passage.end]);
  if (quote) {
    cuts.add(quote.start);
    cuts.add(quote.end);
  }
  const bounds = [...cuts].filter((c) => c >= 0 && c <= text.length).sort((a, b) => a - b);
  const nodes = [];
  for (let i = 0; i + 1 < bounds.length; i++) {
    const [start, end] = [bounds[i], bounds[i + 1]];
    if (start === end) continue;
    let node = document.createTextNode(text.slice(start, end));
    if (quote && quote.start <= start && end <= quote.end) node = el("mark", { class: "quote" }, node);
    if (passage.start <= start && end <= passage.end) node = el("span", { class: "passage" }, node);
    nodes.push(node);
  }
  return nodes;
}

function metaLine(doc, extra) {
  const parts = [doc.source, doc.published].filter(Boolean).map((x) => document.createTextNode(x));
  const href = doc.url && safeHref(doc.url);
  if (href) parts.push(el("a", { href, target: "_blank", rel: "noopener noreferrer", text: t("original") }));
  if (extra) parts.push(extra);
  const out = [];
  parts.forEach((p, i) => {
    if (i) out.push(document.createTextNode(" · "));
    out.push(p);
  });
  return out;
}

async function openCitation(citation, button) {
  if (state.activeCite) state.activeCite.classList.remove("active");
  state.activeCite = button || null;
  if (button) button.classList.add("active");
  openPanel(citation.title || citation.doc_id, [document.createTextNode(t("loading"))]);
  const body = $("panel-body");
  body.replaceChildren();
  const url = `/v1/passages/${citation.chunk_id}?start=${citation.start}&end=${citation.end}&format=json`;
  const response = await apiFetch(url);
  if (!response.ok) {
    body.append(el("p", { class: "error-text", text: await errorMessage(response) }));
    return;
  }
  const view = await response.json();
  const pageLink = el("a", { href: citation.passage_url, target: "_blank", rel: "noopener", text: t("openPage") });
  openPanel(view.title || view.doc_id, metaLine(view, pageLink), view.quote ? view.quote.text : view.passage.text);
  body.append(el("div", { class: "doc-text" }, ...highlightedText(view.text, view.passage, view.quote)));
  const target = body.querySelector("mark.quote") || body.querySelector(".passage");
  if (target) target.scrollIntoView({ block: "center" });
}

async function showDocuments() {
  openPanel(t("docsTitle"), []);
  const body = $("panel-body");
  body.replaceChildren(el("p", { text: t("loading") }));
  const response = await apiFetch("/v1/documents?limit=1000");
  if (!response.ok) {
    body.replaceChildren(el("p", { class: "error-text", text: await errorMessage(response) }));
    return;
  }
  const data = await response.json();
  if (!data.documents.length) {
    body.replaceChildren(el("p", { text: t("noDocs") }));
    return;
  }
  const list = el("ul", { class: "doc-list" });
  for (const doc of data.documents) {
    const meta = [doc.source, doc.published, `${doc.chunks} ${t("chunks")}`].filter(Boolean).join(" · ");
    list.append(
      el("li", {},
        el("button", { type: "button", class: "source-link", text: doc.title || doc.id, onclick: () => showDocument(doc.id) }),
        el("div", { class: "meta", text: meta }),
      ),
    );
  }
  body.replaceChildren(list);
}

async function showDocument(id) {
  const response = await apiFetch(`/v1/documents/${encodeURIComponent(id)}`);
  const body = $("panel-body");
  if (!response.ok) {
    body.replaceChildren(el("p", { class: "error-text", text: await errorMessage(response) }));
    return;
  }
  const doc = await response.json();
  const back = el("button", { type: "button", class: "link", text: `← ${t("documents")}`, onclick: showDocuments });
  openPanel(doc.title || doc.id, metaLine(doc, back));
  body.replaceChildren(el("div", { class: "doc-text" }, doc.text));
  body.scrollTop = 0;
}

// ---------------------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  applyLanguage(state.lang);
  if (localStorage.getItem("rag-api-key")) $("key-button").hidden = false;
  for (const button of document.querySelectorAll("[data-lang]")) {
    button.addEventListener("click", () => applyLanguage(button.dataset.lang));
  }
  $("ask-form").addEventListener("submit", (event) => {
    event.preventDefault();
    ask($("question").value);
  });
  $("question").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      ask($("question").value);
    }
  });
  $("panel-close").addEventListener("click", closePanel);
  $("docs-button").addEventListener("click", showDocuments);
  $("key-button").addEventListener("click", askForKey);
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && !$("panel").hidden) closePanel();
  });
  $("question").focus();
});
