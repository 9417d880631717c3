// Keeps the landing page's counts current by polling /v1/status every two seconds.
const fields = ["clusters", "affiliates", "endpoints", "watchers", "revision"];

async function refresh() {
  try {
    const res = await fetch("/v1/status", { cache: "no-store" });
    const s = await res.json();
    const cell = (key) => document.querySelector(`tr[data-key="${key}"] td`);
    for (const name of fields) cell(name).textContent = s[name];
    cell("ready").textContent = s.ready ? "yes" : "no";
    document.getElementById("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
  } catch {
    document.getElementById("updated").textContent = "service unreachable, retrying";
  }
}

setInterval(refresh, 2000);
