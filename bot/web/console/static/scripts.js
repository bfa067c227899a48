"use strict";
// The script editor's "try it": the result appears in place, without reloading the page.
// Without this file the form is an ordinary GET that renders the page with the result.
(() => {
  const form = document.querySelector("form[data-try]");
  const target = document.querySelector("[data-try-result]");
  if (!form || !target) return;
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = new FormData(form).get("probar") || "";
    const button = form.querySelector("button");
    button.disabled = true;
    target.setAttribute("aria-busy", "true");
    try {
      const response = await fetch("/console/scripts/probar?probar=" + encodeURIComponent(text), {
        headers: { Accept: "text/html" }, credentials: "same-origin",
      });
      if (response.status === 401) { location.href = "/console/login"; return; }
      if (response.ok) {
        target.innerHTML = await response.text();
        const url = new URL(location.href);
        url.searchParams.set("probar", text);
        history.replaceState(null, "", url);
      } else {
        form.submit();
      }
    } finally {
      button.disabled = false;
      target.removeAttribute("aria-busy");
    }
  });
})();
