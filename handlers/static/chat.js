"use strict";
// The web chat page's behaviour. No build step, no dependencies.
(() => {
  const AUTORES = { bot: "Asistente", agent: "Asesor", lead: "Tú" };
  const lista = document.getElementById("mensajes");
  const formulario = document.getElementById("formulario");
  const texto = document.getElementById("texto");
  const boton = document.getElementById("enviar");
  const vistos = new Set();
  let ultimo = 0;

  // The session id is the only key to this conversation: 128 random bits from the browser's
  // cryptographic generator, never Math.random. An older, weaker id is replaced.
  function idAleatorio() {
    const bytes = crypto.getRandomValues(new Uint8Array(16));
    return btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }
  let sesion = localStorage.getItem("seguibot.sesion");
  if (!sesion || !/^[A-Za-z0-9_-]{22,128}$/.test(sesion)) {
    sesion = idAleatorio();
    localStorage.setItem("seguibot.sesion", sesion);
  }

  function mostrar(autor, contenido, id) {
    if (id !== undefined) {
      if (vistos.has(id)) return;
      vistos.add(id);
      ultimo = Math.max(ultimo, id);
    }
    const li = document.createElement("li");
    li.className = "msg " + autor;
    li.dataset.author = autor;
    const quien = document.createElement("span");
    quien.className = "autor";
    quien.textContent = AUTORES[autor] || autor;
    li.append(quien, document.createTextNode(contenido));
    lista.append(li);
    lista.scrollTop = lista.scrollHeight;
  }

  function aviso(contenido) {
    const li = document.createElement("li");
    li.className = "error";
    li.textContent = contenido;
    lista.append(li);
  }

  function escuchar() {
    const eventos = new EventSource(`/webchat/events?session_id=${encodeURIComponent(sesion)}&after=${ultimo}`);
    eventos.addEventListener("message", (e) => {
      const m = JSON.parse(e.data);
      mostrar(m.author, m.text, m.id);
    });
  }

  async function enviar(contenido) {
    const idMensaje = idAleatorio();
    for (let intento = 0; intento < 3; intento++) {
      try {
        const r = await fetch("/webchat/messages", {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ session_id: sesion, text: contenido, message_id: idMensaje }),
        });
        if (r.ok) return (await r.json()).replies;
        if (r.status < 500) break;
      } catch (_) { /* red caída: se reintenta con el mismo id, sin duplicar */ }
      await new Promise((ok) => setTimeout(ok, 800 * (intento + 1)));
    }
    throw new Error("no enviado");
  }

  formulario.addEventListener("submit", async (e) => {
    e.preventDefault();
    const contenido = texto.value.trim();
    if (!contenido) return;
    texto.value = "";
    mostrar("lead", contenido);
    boton.disabled = true;
    try {
      for (const r of await enviar(contenido)) mostrar("bot", r.text, r.id);
    } catch (_) {
      aviso("No pudimos enviar tu mensaje. Revisa tu conexión e inténtalo de nuevo.");
    } finally {
      boton.disabled = false;
      texto.focus();
    }
  });

  texto.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); formulario.requestSubmit(); }
  });

  fetch(`/webchat/history?session_id=${encodeURIComponent(sesion)}`)
    .then((r) => (r.ok ? r.json() : { messages: [] }))
    .then((h) => h.messages.forEach((m) => mostrar(m.author, m.text, m.id)))
    .finally(escuchar);
})();
