// Progressive enhancement for the console; every page works without it (no third-party code, no inline script).
//   data-refresh="<seconds>"  re-fetch this page's main block (X-Console-Partial: 1) and swap this element's content
//                             (the element with the same id in the answer; data-src names another address)
//   data-confirm="<text>"     on a submit button or form: ask before submitting
//   data-live="<url>"         an EventSource; each message {"cells": [...], "href": "/admin/..."} prepends a row
//                             (text only: cells never become HTML) to this element's tbody; data-live-max caps rows

const PARTIAL = { "X-Console-Partial": "1" };

function refresh(element) {
  const seconds = Math.max(2, Number(element.dataset.refresh) || 10);
  const source = element.dataset.src || window.location.href;
  const tick = async () => {
    if (document.hidden || element.contains(document.activeElement)) return schedule();
    let answer;
    try {
      answer = await fetch(source, { headers: PARTIAL, credentials: "same-origin", redirect: "manual" });
    } catch {
      return schedule();
    }
    if (!answer.ok) return; // signed out or refused: stop; a reload shows why
    const parsed = new DOMParser().parseFromString(await answer.text(), "text/html");
    const fresh = element.id ? parsed.getElementById(element.id) : parsed.body;
    if (fresh) element.replaceChildren(...Array.from(fresh.childNodes).map((n) => document.importNode(n, true)));
    schedule();
  };
  const schedule = () => window.setTimeout(tick, seconds * 1000);
  schedule();
}

function confirmSubmits() {
  document.addEventListener("submit", (event) => {
    const text = event.submitter?.dataset.confirm ?? event.target.dataset?.confirm;
    if (text && !window.confirm(text)) event.preventDefault();
  });
}

function live(element) {
  const body = element.tagName === "TBODY" ? element : element.querySelector("tbody") || element;
  const max = Number(element.dataset.liveMax) || 200;
  const stream = new EventSource(element.dataset.live);
  stream.onmessage = (event) => {
    let data;
    try {
      data = JSON.parse(event.data);
    } catch {
      return;
    }
    const row = document.createElement("tr");
    (data.cells || []).forEach((value, index) => {
      const cell = document.createElement("td");
      const text = value === null || value === undefined ? "" : String(value);
      if (index === 0 && typeof data.href === "string" && data.href.startsWith("/admin/")) {
        const link = document.createElement("a");
        link.href = data.href;
        link.textContent = text;
        cell.append(link);
      } else {
        cell.textContent = text;
      }
      row.append(cell);
    });
    body.prepend(row);
    while (body.rows && body.rows.length > max) body.deleteRow(-1);
  };
  window.addEventListener("pagehide", () => stream.close());
}

document.querySelectorAll("[data-refresh]").forEach(refresh);
document.querySelectorAll("[data-live]").forEach(live);
confirmSubmits();
