/* 运营: recharge anomalies and lapsed coupon gifts, the notification log, batch recharges with their
   progress. 导出: start an export, watch its progress, download the .xlsx. */
"use strict";
(function () {
  const C = window.Console;
  const ANOMALY = { member_frozen: "卡冻结时到账（待入账）", paid_after_close: "订单关闭后到账", balance_cap_exceeded: "超过余额上限",
    amount_mismatch: "金额不符", unknown_order: "未知订单" };
  const REMINDER = { pending: ["待发送", ""], sending: ["发送中", "warn"], sent: ["已发送", "ok"], retry: ["重试中", "warn"],
    failed: ["失败", "bad"], gave_up: ["已放弃", "bad"], skipped: ["已跳过", ""] };
  const JOB = { pending: ["排队中", ""], queued: ["排队中", ""], running: ["进行中", "warn"], done: ["已完成", "ok"], failed: ["失败", "bad"] };
  const TABS = { anomalies: "充值异常", notices: "通知记录", batches: "批量充值" };

  const progress = (done, total) => {
    const pct = total ? Math.min(100, Math.round((done / total) * 100)) : 0;
    return `<div style="display:flex;gap:8px;align-items:center"><div class="progress" style="flex:1"><div style="width:${pct}%"></div></div><span>${C.num(done)} / ${C.num(total)}</span></div>`;
  };

  async function anomalies(p) {
    const [data, stats] = await Promise.all([
      C.get("/recharge-anomalies", { page: p.page || 1, per_page: 20 }),
      C.get("/recharge-stats", { group_by: "rule" }),
    ]);
    const lapsed = stats.items.filter((r) => r.coupons_lapsed > 0);
    const el = C.el(`<div>${C.table([
      { title: "时间", render: (a) => C.time(a.created_at) },
      { title: "类型", render: (a) => C.esc(ANOMALY[a.kind] || a.kind) },
      { title: "订单号", render: (a) => C.esc(a.out_trade_no || "—") },
      { title: "微信支付单号", render: (a) => C.esc(a.transaction_id || "—") },
      { title: "说明", wrap: true, render: (a) => C.esc(a.detail || "") },
    ], data.items, { empty: "没有异常通知" })}
      <h3 style="font-size:14px;margin:20px 0 8px">未能发放的赠券（券库存不足或已过发放期）</h3>
      ${C.table([
        { title: "规则", render: (r) => C.esc(r.rule_name || "—") },
        { title: "应发未发", num: true, render: (r) => C.num(r.coupons_lapsed) },
        { title: "已发", num: true, render: (r) => C.num(r.coupons_granted) },
      ], lapsed, { empty: "没有未发放的赠券" })}</div>`);
    if (data.items.length) el.insertBefore(C.pager(data, (page) => C.go("ops/anomalies", { page })), el.children[1]);
    return el;
  }

  async function notices(p) {
    const data = await C.get("/points/reminders", { status: p.status, before_id: p.before_id, limit: 20 });
    const el = C.el(`<div><form class="filters" id="notice-filter"><label>状态<select name="status"><option value="">全部</option>${Object.entries(REMINDER).map(([k, [v]]) =>
      `<option value="${k}" ${p.status === k ? "selected" : ""}>${v}</option>`).join("")}</select></label>
      <div class="actions"><button class="btn primary">筛选</button></div></form>
      ${C.table([
        { title: "ID", render: (r) => r.id },
        { title: "会员", render: (r) => `<a href="#/members/${r.member_id}">#${r.member_id}</a>` },
        { title: "通知", render: (r) => `积分到期提醒（提前 ${r.offset_days} 天）` },
        { title: "到期日", render: (r) => C.esc(r.expiry_date) },
        { title: "积分", num: true, render: (r) => C.num(r.points) },
        { title: "状态", render: (r) => C.badge(REMINDER, r.status) },
        { title: "微信消息 ID", render: (r) => C.esc(r.msgid || "—") },
      ], data.items, { empty: "暂无通知记录" })}
      <div class="pager">${p.before_id ? '<a class="btn small" href="#/ops/notices">回到最新</a>' : ""}
        ${data.next_before_id && data.items.length === 20 ? `<button class="btn small" id="notice-more">更早的记录</button>` : ""}</div></div>`);
    const form = el.querySelector("#notice-filter");
    form.onsubmit = (ev) => { ev.preventDefault(); C.go("ops/notices", C.formParams(form)); };
    const more = el.querySelector("#notice-more");
    if (more) more.onclick = () => C.go("ops/notices", { status: p.status, before_id: data.next_before_id });
    return el;
  }

  function batchRow(b) {
    return `<tr><td>#${b.id}</td><td>${C.esc(b.filename || "—")}</td><td>${C.badge(JOB, b.status)}</td>
      <td>${progress((b.applied || 0) + (b.failed || 0), b.total)}</td><td class="num">${C.yuan(b.applied_fen)} / ${C.yuan(b.total_fen)}</td>
      <td class="wrap">${b.failed ? `<span class="neg">失败 ${b.failed} 行</span>` : ""} ${C.esc(b.note || "")}</td></tr>`;
  }

  async function batches() {
    const ids = JSON.parse(sessionStorage.getItem("console_batches") || "[]");
    const rows = [];
    for (const id of ids) {
      try { rows.push(await C.get("/batch-recharges/" + id)); } catch (e) { /* gone or out of scope */ }
    }
    const el = C.el(`<div>
      <form class="filters" id="batch-form">
        <label>文件（.xlsx / .csv：会员手机号或卡号、金额（元）、备注）<input type="file" name="file" accept=".xlsx,.csv" required style="width:320px"></label>
        <label>门店编号<input name="store_code" maxlength="32" placeholder="区域经理必填"></label>
        <label>备注<input name="note" maxlength="255" placeholder="如 2024年5月福利"></label>
        <div class="actions"><button class="btn primary">上传并充值</button></div></form>
      <div id="batch-errors"></div>
      <div class="table-wrap"><table class="data"><thead><tr><th>批次</th><th>文件</th><th>状态</th><th>进度</th><th class="num">已充值 / 合计（元）</th><th>说明</th></tr></thead>
      <tbody>${rows.map(batchRow).join("") || '<tr><td colspan="6" class="empty">本次登录尚未上传批量充值</td></tr>'}</tbody></table></div></div>`);
    const form = el.querySelector("#batch-form");
    form.onsubmit = async (ev) => {
      ev.preventDefault();
      const file = form.file.files[0];
      const ok = await C.dialog({ title: "确认批量充值", okText: "确认上传",
        body: `<div class="confirm-box">文件 <b>${C.esc(file.name)}</b> 中的每一行都会先校验，全部无误后才开始充值；金额按「元」填写。</div>` });
      if (!ok) return;
      try {
        const data = await C.api("POST", "/batch-recharges", new FormData(form));
        const list = JSON.parse(sessionStorage.getItem("console_batches") || "[]");
        if (!list.includes(data.id)) list.unshift(data.id);
        sessionStorage.setItem("console_batches", JSON.stringify(list.slice(0, 20)));
        C.toast(data.duplicate ? "这批数据之前已上传过，显示的是那一批" : `已提交：${data.total} 行，合计 ${C.yuan(data.total_fen)} 元`);
        C.render();
      } catch (e) {
        const errors = (e.details && e.details.errors) || [];
        el.querySelector("#batch-errors").innerHTML = `<div class="notice">${C.esc(e.message)}${errors.length ? "<br>" +
          errors.slice(0, 20).map((x) => `第 ${x.row} 行：${C.esc(x.message)}`).join("<br>") : ""}</div>`;
      }
    };
    if (rows.some((b) => b.status !== "done")) setTimeout(() => C.route().parts[1] === "batches" && C.render(), 2000);
    return el;
  }

  C.pages.ops = {
    title: "运营",
    async render(holder, route) {
      const tab = TABS[route.parts[1]] ? route.parts[1] : "anomalies";
      const content = await { anomalies, notices, batches }[tab](route.params);
      holder.innerHTML = `<section class="panel"><nav class="tabs">${Object.entries(TABS).map(([k, v]) =>
        `<a href="#/ops/${k}" class="${k === tab ? "on" : ""}">${v}</a>`).join("")}</nav></section>`;
      holder.firstElementChild.appendChild(content);
    },
  };

  /* ---------- exports ---------- */
  const KIND = { ledger: "资金流水", recharge_orders: "充值订单", payments: "余额支付", members: "会员" };
  let pollTimer = null;

  C.pages.exports = {
    title: "导出",
    async render(holder, route) {
      clearTimeout(pollTimer);
      const ids = JSON.parse(sessionStorage.getItem("console_exports") || "[]");
      const jobs = [];
      let missing = false;
      for (const id of ids) {
        try { jobs.push(await C.get("/exports/" + id)); } catch (e) { if (e.status === 404) missing = true; }
      }
      const form = `<form class="filters" id="export-form">
        <label>内容<select name="kind">${Object.entries(KIND).map(([k, v]) => `<option value="${k}">${v}</option>`).join("")}</select></label>
        ${await C.storeField("store", "")}
        <label>开始日期<input type="date" name="from"></label><label>结束日期<input type="date" name="to"></label>
        <div class="actions"><button class="btn primary">开始导出</button></div></form>
        <p class="muted">也可以在「记录」页按条件筛选后点「导出 Excel」。大量数据在后台生成，完成后在这里下载。</p>`;
      const table = C.table([
        { title: "编号", render: (j) => `#${j.id}` },
        { title: "内容", render: (j) => C.esc(KIND[j.kind] || j.kind || "—") },
        { title: "状态", render: (j) => C.badge(JOB, j.status) },
        { title: "进度", render: (j) => progress(j.rows_done || 0, j.rows_total || 0) },
        { title: "", render: (j) => (j.status === "done" ? `<button class="btn small primary" data-file="${j.id}">下载</button>`
          : j.status === "failed" ? `<span class="neg">${C.esc(j.error || j.message || "失败")}</span>` : "") },
      ], jobs, { empty: missing ? "导出接口尚未上线" : "本次登录尚未导出文件" });
      holder.innerHTML = C.section("导出 Excel", form + `<div id="export-list">${table}</div>`);
      const formEl = holder.querySelector("#export-form");
      formEl.onsubmit = async (ev) => {
        ev.preventDefault();
        const f = C.formParams(formEl);
        const err = C.checkRange(f.from, f.to);
        if (err) return C.toast(err, true);
        const filters = { store: f.store };
        if (f.kind === "ledger" || f.kind === "recharge_orders") Object.assign(filters, { created_from: C.dayStart(f.from), created_to: C.dayEnd(f.to) });
        else Object.assign(filters, { from: f.from, to: f.to });
        Object.keys(filters).forEach((k) => filters[k] === undefined && delete filters[k]);
        try { await C.startExport(f.kind, filters); } catch (e) { C.toast(e.status === 404 ? "导出接口尚未上线" : e.message, true); }
      };
      holder.querySelectorAll("[data-file]").forEach((b) => (b.onclick = () => {
        const job = jobs.find((j) => String(j.id) === b.dataset.file);
        const url = job.download_url && job.download_url.includes("/admin/api/")
          ? job.download_url.slice(job.download_url.indexOf("/admin/api/") + "/admin/api".length) : `/exports/${job.id}/file`;
        C.download(url, `export-${job.id}.xlsx`).catch((e) => C.toast(e.message, true));
      }));
      if (jobs.some((j) => j.status === "queued" || j.status === "running" || j.status === "pending")) {
        pollTimer = setTimeout(() => C.route().parts[0] === "exports" && C.render(), 1500);
      }
    },
  };
})();
