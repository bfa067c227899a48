"use strict";
// The web chat page's behaviour. No build step, no dependencies.
(() => {
  const AUTORES = { bot: "Asistente", agent: "Asesor", lead: "Tú" };
  const lista = document.getElementById("mensajes");
  const formulario = document.getElementById("formulario");
  const texto = document.getElementById("texto");
  const boton = document.getElementById("enviar");
  const estado = document.getElementById("estado");
  const vistos = new Set();
  // Messages this tab sent and shows already, by the id the page gave them: the event stream
  // brings them back (for the other tabs) and they must not appear twice here.
  const propios = new Map();
  let ultimo = 0;

  // Times in the visitor's own clock, as any messenger shows them; the full date and the zone
  // on hover.
  const zona = Intl.DateTimeFormat().resolvedOptions().timeZone;
  const hora = new Intl.DateTimeFormat("es", { hour: "2-digit", minute: "2-digit" });
  const completa = new Intl.DateTimeFormat("es", { dateStyle: "long", timeStyle: "short" });

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

  function sellar(li, at) {
    const fecha = at ? new Date(at) : new Date();
    let marca = li.querySelector("time");
    if (!marca) {
      marca = document.createElement("time");
      li.append(marca);
    }
    marca.dateTime = fecha.toISOString();
    marca.textContent = hora.format(fecha);
    marca.title = `${completa.format(fecha)} (${zona})`;
  }

  // m: {id?, author, text, at?, client_id?}, as the server sends messages.
  function mostrar(m) {
    if (m.id !== undefined && m.id !== null) {
      if (vistos.has(m.id)) return null;
      vistos.add(m.id);
      ultimo = Math.max(ultimo, m.id);
      const propio = m.client_id && propios.get(m.client_id);
      if (propio) {
        propios.delete(m.client_id);
        propio.dataset.id = m.id;
        sellar(propio, m.at);
        return propio;
      }
    }
    const li = document.createElement("li");
    li.className = "msg " + m.author;
    li.dataset.author = m.author;
    if (m.id !== undefined && m.id !== null) li.dataset.id = m.id;
    const quien = document.createElement("span");
    quien.className = "autor";
    quien.textContent = AUTORES[m.author] || m.author;
    const cuerpo = document.createElement("span");
    cuerpo.className = "texto";
    enlazar(cuerpo, m.text);
    li.append(quien, cuerpo);
    sellar(li, m.at);
    lista.append(li);
    lista.scrollTop = lista.scrollHeight;
    return li;
  }

  // The text as text, with its web addresses (a material the bot sent) as links.
  const DIRECCION = /(https?:\/\/[^\s<>"]+|\/materiales\/[A-Za-z0-9_-]+\/[^\s<>"]+)/g;
  function enlazar(nodo, texto) {
    let desde = 0;
    for (const hallado of texto.matchAll(DIRECCION)) {
      nodo.append(texto.slice(desde, hallado.index));
      const a = document.createElement("a");
      a.href = hallado[0];
      a.textContent = hallado[0];
      a.target = "_blank";
      a.rel = "noopener";
      nodo.append(a);
      desde = hallado.index + hallado[0].length;
    }
    nodo.append(texto.slice(desde));
  }

  function aviso(contenido) {
    const li = document.createElement("li");
    li.className = "error";
    li.textContent = contenido;
    lista.append(li);
  }

  // The event stream brings what arrives later (an agent, a reminder, another tab). While it
  // is down the page says so; the browser reconnects by itself after a network error, and
  // this code does when the server answered with an error (the browser then gives up).
  let espera = 1000;
  function escuchar() {
    const eventos = new EventSource(`/webchat/events?session_id=${encodeURIComponent(sesion)}&after=${ultimo}`);
    eventos.addEventListener("open", () => {
      estado.hidden = true;
      espera = 1000;
    });
    eventos.addEventListener("message", (e) => mostrar(JSON.parse(e.data)));
    eventos.addEventListener("error", () => {
      estado.hidden = false;
      if (eventos.readyState === EventSource.CLOSED) {
        setTimeout(escuchar, espera);
        espera = Math.min(espera * 2, 30000);
      }
    });
  }

  async function enviar(contenido, idMensaje) {
    for (let intento = 0; intento < 3; intento++) {
      try {
        const r = await fetch("/webchat/messages", {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ session_id: sesion, text: contenido, message_id: idMensaje }),
        });
        if (r.ok) return await r.json();
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
    const idMensaje = idAleatorio();
    propios.set(idMensaje, mostrar({ author: "lead", text: contenido }));
    boton.disabled = true;
    try {
      const respuesta = await enviar(contenido, idMensaje);
      if (respuesta.id !== null) {  // null: a retry the server had already stored
        mostrar({ id: respuesta.id, author: "lead", text: contenido, at: respuesta.at, client_id: idMensaje });
      }
      for (const r of respuesta.replies) mostrar({ author: "bot", ...r });
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
    .then((h) => h.messages.forEach(mostrar))
    .finally(escuchar);
})();
