"use strict";
// The console's progressive behaviour: live queue and conversation, replies without a page
// reload, saved replies on "/", browser notifications. Every page works without it.
(() => {
  const csrf = document.querySelector('meta[name="csrf-token"]')?.content || "";
  const body = document.body;
  const page = body.dataset.page;
  const conversationId = body.dataset.conversationId;
  const sound = new Audio("/static/console/aviso.wav");

  // On a phone the sections bar is one line that scrolls sideways: show the current section.
  const current = document.querySelector('.barra nav [aria-current="page"]');
  if (current) {
    const nav = current.parentElement;
    nav.scrollLeft = current.offsetLeft - nav.offsetLeft - (nav.clientWidth - current.offsetWidth) / 2;
  }
  // A form on its way (claim, close, transfer...) already brings the fresh page: a live
  // refresh must not cut it short.
  let leaving = false;
  window.addEventListener("beforeunload", () => { leaving = true; });
  document.addEventListener("submit", (e) => { if (!e.defaultPrevented) leaving = true; });

  async function fetchHtml(url) {
    const response = await fetch(url, { headers: { Accept: "text/html" }, credentials: "same-origin" });
    if (response.status === 401) { location.href = "/console/login?next=" + encodeURIComponent(location.pathname); return null; }
    return response.ok ? response.text() : null;
  }

  // --- browser notifications ----------------------------------------------------------------
  const notifyBox = document.querySelector("[data-notify]");
  if (notifyBox && "Notification" in window && Notification.permission === "default") {
    notifyBox.hidden = false;
    notifyBox.querySelector("[data-enable-notifications]").addEventListener("click", async () => {
      await Notification.requestPermission();
      notifyBox.hidden = true;
    });
  }
  function alertNewWaiting(count) {
    sound.play().catch(() => {});
    if ("Notification" in window && Notification.permission === "granted" && document.hidden) {
      const n = new Notification("Prospecto en espera", {
        body: count === 1 ? "Alguien espera a una persona." : `${count} prospectos esperan a una persona.`,
        tag: "seguibot-cola",
      });
      n.onclick = () => { window.focus(); location.href = "/console/"; };
    }
  }

  // --- the conversation's history ----------------------------------------------------------
  const list = document.querySelector("[data-messages]");
  function toBottom() { if (list) list.scrollTop = list.scrollHeight; }
  async function refreshMessages() {
    if (!list) return;
    const html = await fetchHtml(`/console/conversations/${conversationId}/messages`);
    if (html === null) return;
    const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 80;
    list.innerHTML = html;
    if (atBottom) toBottom();
  }
  toBottom();

  // --- live updates -------------------------------------------------------------------------
  if (page && page !== "login" && page !== "invite" && "EventSource" in window) {
    // `seen`: what the page shows, so a change made while it loaded is sent at once.
    const seen = encodeURIComponent(body.dataset.seen || "");
    const url = "/console/events" + (conversationId ? `?conversation=${conversationId}&seen=${seen}` : "");
    const events = new EventSource(url);
    let first = true;
    events.addEventListener("queue", async (e) => {
      const data = JSON.parse(e.data);
      for (const badge of document.querySelectorAll("[data-queue-count]")) {
        badge.textContent = data.count ? String(data.count) : "";
      }
      if (!first && data.new.length) alertNewWaiting(data.new.length);
      first = false;
      if (page === "queue") {
        const html = await fetchHtml("/console/queue/rows");
        const rows = document.querySelector("[data-queue]");
        if (html !== null && rows) rows.innerHTML = html;
      }
    });
    events.addEventListener("conversation", () => {
      const box = document.querySelector("[data-reply-form] textarea");
      refreshMessages();
      // Someone else took it, or it ended: the buttons changed. Reload unless mid-typing.
      fetch(location.href, { headers: { Accept: "text/html" } })
        .then((r) => r.text())
        .then((html) => {
          const state = new DOMParser().parseFromString(html, "text/html").querySelector("[data-state]");
          const here = document.querySelector("[data-state]");
          if (leaving || !state || !here || state.textContent === here.textContent) return;
          if (!(box && box.value.trim())) location.reload();
        })
        .catch(() => {});
    });
  }

  // --- replying -----------------------------------------------------------------------------
  const form = document.querySelector("[data-reply-form]");
  if (form) {
    const box = form.querySelector("textarea");
    const suggestions = form.querySelector("[data-suggestions]");
    const canned = JSON.parse(form.querySelector("[data-canned]")?.textContent || "[]");
    let choices = [];
    let active = 0;
    function showError(message) {
      let note = form.querySelector("[data-reply-error]");
      if (!note) {
        note = document.createElement("p");
        note.className = "error";
        note.setAttribute("role", "alert");
        note.dataset.replyError = "";
        form.prepend(note);
      }
      note.textContent = message;
    }

    function showSuggestions() {
      const value = box.value;
      if (!value.startsWith("/") || value.includes(" ")) { suggestions.hidden = true; choices = []; return; }
      const wanted = value.slice(1).toLowerCase();
      choices = canned.filter((c) => c.shortcut.startsWith(wanted)).slice(0, 6);
      active = 0;
      suggestions.replaceChildren(...choices.map((c, i) => {
        const li = document.createElement("li");
        li.textContent = `/${c.shortcut} — ${c.text}`;
        li.className = i === active ? "activa" : "";
        li.addEventListener("mousedown", (e) => { e.preventDefault(); choose(i); });
        return li;
      }));
      suggestions.hidden = choices.length === 0;
    }
    function choose(i) {
      box.value = choices[i].text;
      suggestions.hidden = true;
      choices = [];
      box.focus();
    }
    box.addEventListener("input", showSuggestions);
    box.addEventListener("keydown", (e) => {
      if (choices.length && (e.key === "Enter" || e.key === "Tab")) { e.preventDefault(); choose(active); return; }
      if (choices.length && (e.key === "ArrowDown" || e.key === "ArrowUp")) {
        e.preventDefault();
        active = (active + (e.key === "ArrowDown" ? 1 : choices.length - 1)) % choices.length;
        [...suggestions.children].forEach((li, i) => { li.className = i === active ? "activa" : ""; });
        return;
      }
      if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); form.requestSubmit(); }
    });
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const text = box.value.trim();
      if (!text) return;
      const button = form.querySelector("button[type=submit]");
      button.disabled = true;
      try {
        const response = await fetch(form.action, {
          method: "POST",
          headers: { "X-CSRF-Token": csrf, Accept: "application/json" },
          body: new URLSearchParams({ text }),
          credentials: "same-origin",
        });
        if (response.ok) { box.value = ""; await refreshMessages(); toBottom(); }
        else {
          const data = await response.json().catch(() => ({}));
          showError(data.error || "No se pudo enviar. Inténtalo de nuevo.");
        }
      } finally { button.disabled = false; box.focus(); }
    });
  }
})();
