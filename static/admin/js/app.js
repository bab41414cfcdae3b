/* Console start-up: login, who am I, the menu, and rendering the page the hash names. */
"use strict";
(function () {
  const C = window.Console;

  C.showLogin = function (message) {
    document.getElementById("shell").hidden = true;
    document.getElementById("login").hidden = false;
    document.getElementById("login-error").textContent = message || "";
    const user = document.querySelector("#login-form [name=username]");
    if (user) user.focus();
  };

  document.getElementById("login-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const form = ev.target;
    const button = form.querySelector("button");
    button.disabled = true;
    document.getElementById("login-error").textContent = "";
    try {
      const data = await C.api("POST", "/auth/login", C.formParams(form), { noLogout: true });
      sessionStorage.setItem(C.TOKEN_KEY, data.token);
      form.reset();
      await start();
    } catch (e) {
      document.getElementById("login-error").textContent = e.status === 401 ? "账号或密码错误" : e.message;
    } finally {
      button.disabled = false;
    }
  });

  document.getElementById("logout").onclick = () => C.logout();
  document.getElementById("menu-toggle").onclick = () => document.getElementById("shell").classList.toggle("menu-open");
  const closeMenu = () => document.getElementById("shell").classList.remove("menu-open");
  document.getElementById("nav").addEventListener("click", closeMenu);
  document.getElementById("scrim").addEventListener("click", closeMenu);

  async function start() {
    if (!C.token()) return C.showLogin();
    try {
      C.me = await C.get("/me");
    } catch (e) {
      if (e.status !== 401) C.showLogin(e.message);
      return;
    }
    document.getElementById("login").hidden = true;
    document.getElementById("shell").hidden = false;
    const where = C.me.role !== "hq_admin" && C.me.role !== "region_manager" && C.me.stores && C.me.stores.length ? " · " + C.me.stores.map((s) => s.name || s.code).join("、")
      : C.me.region ? " · " + (C.me.region.name || C.me.region.code || C.me.region) : "";
    document.getElementById("who").textContent = `${C.me.username}（${C.ROLE[C.me.role] || C.me.role}${where}）`;
    document.querySelectorAll("#nav a[data-roles]").forEach((a) => {
      a.hidden = !a.dataset.roles.split(" ").includes(C.me.role);
    });
    C.render();
  }

  let renderSeq = 0;
  C.render = async function () {
    if (!C.me) return;
    const route = C.route();
    const name = route.parts[0] || "overview";
    const page = C.pages[name] || C.pages.overview;
    document.querySelectorAll("#nav a").forEach((a) => a.classList.toggle("active", a.dataset.page === name));
    document.getElementById("page-title").textContent = page.title;
    document.title = page.title + " · 商户后台";
    const view = document.getElementById("view");
    (C._charts || []).forEach((chart) => chart.dispose());
    C._charts = [];
    view.dataset.ready = "";
    if (view.dataset.page !== name) view.innerHTML = '<div class="empty">加载中…</div>';
    const seq = ++renderSeq;
    const holder = document.createElement("div");
    try {
      await page.render(holder, route);
    } catch (e) {
      if (e.status === 401) return;
      holder.innerHTML = `<div class="notice">${C.esc(e.message)}</div>`;
    }
    if (seq !== renderSeq) return; // a newer page was asked for meanwhile
    view.replaceChildren(holder);
    (holder._after || []).forEach((fn) => fn());
    view.dataset.page = name;
    view.dataset.ready = "1";
  };
  /* Run after the page is in the document (charts need their size). */
  C.after = (holder, fn) => (holder._after = holder._after || []).push(fn);

  window.addEventListener("hashchange", () => C.render());
  window.addEventListener("resize", () => (C._charts || []).forEach((chart) => chart.resize()));
  start();
})();
