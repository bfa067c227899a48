"use strict";
// The board: drag a card to another column to move the lead to that stage (HTML5 drag and
// drop + fetch with the CSRF token). A lost stage asks for the reason first. Without this
// script every card keeps its own "Mover" form.
(() => {
  const board = document.querySelector("[data-board]");
  if (!board) return;
  const csrf = document.querySelector('meta[name="csrf-token"]')?.content || "";
  const errorBox = document.querySelector("[data-board-error]");
  const dialog = document.querySelector("[data-reason-dialog]");
  let dragged = null;

  board.addEventListener("dragstart", (e) => {
    const card = e.target.closest("[data-lead-id]");
    if (!card) return;
    dragged = card;
    card.classList.add("arrastrando");
    e.dataTransfer.effectAllowed = "move";
    e.dataTransfer.setData("text/plain", card.dataset.leadId);
  });
  board.addEventListener("dragend", () => {
    if (dragged) dragged.classList.remove("arrastrando");
    for (const c of board.querySelectorAll(".columna.encima")) c.classList.remove("encima");
  });
  board.addEventListener("dragover", (e) => {
    const column = e.target.closest(".columna");
    if (!column) return;
    e.preventDefault();
    e.dataTransfer.dropEffect = "move";
    column.classList.add("encima");
  });
  board.addEventListener("dragleave", (e) => {
    const column = e.target.closest(".columna");
    if (column && !column.contains(e.relatedTarget)) column.classList.remove("encima");
  });
  board.addEventListener("drop", async (e) => {
    const column = e.target.closest(".columna");
    if (!column) return;
    e.preventDefault();
    column.classList.remove("encima");
    const leadId = e.dataTransfer.getData("text/plain") || dragged?.dataset.leadId;
    const card = board.querySelector(`[data-lead-id="${CSS.escape(leadId || "")}"]`);
    if (!card || card.closest(".columna") === column) return;
    let reason = "";
    if (column.dataset.reasonRequired === "true") {
      reason = await askReason(column.dataset.stageName);
      if (reason === null) return;
    }
    await move(card, column, reason);
  });

  function askReason(stageName) {
    return new Promise((resolve) => {
      if (!dialog || typeof dialog.showModal !== "function") { resolve(null); return; }
      dialog.querySelector("[data-reason-stage]").textContent = stageName;
      dialog.returnValue = "";
      dialog.addEventListener("close", () => {
        resolve(dialog.returnValue === "ok" ? dialog.querySelector("[data-reason-select]").value : null);
      }, { once: true });
      dialog.showModal();
    });
  }

  async function move(card, column, reason) {
    const body = new URLSearchParams({ lead: card.dataset.leadId, stage: column.dataset.stage, reason });
    errorBox.hidden = true;
    let response;
    try {
      response = await fetch("/console/board/move", {
        method: "POST",
        credentials: "same-origin",
        headers: { "X-CSRF-Token": csrf, Accept: "application/json" },
        body,
      });
    } catch {
      response = null;
    }
    if (response && response.ok) {
      column.querySelector(".tarjetas").prepend(card);
      const select = card.querySelector('select[name="stage"]');
      if (select) select.value = column.dataset.stage;
      for (const c of board.querySelectorAll(".columna")) {
        c.querySelector(".cuenta-columna").textContent = String(c.querySelectorAll("[data-lead-id]").length);
      }
      return;
    }
    let message = "No se pudo mover el prospecto. Inténtalo de nuevo.";
    if (response) {
      try { message = (await response.json()).error || message; } catch { /* keep the default */ }
    }
    errorBox.textContent = message;
    errorBox.hidden = false;
  }
})();
