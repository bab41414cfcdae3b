/* 会员: search (card number, phone, name), detail with balance, points, level, card status and history;
   freeze / loss report / unfreeze, offline recharge, offline withdrawal and reversal, each with a reason
   and a confirmation that shows the amounts in yuan. */
"use strict";
(function () {
  const C = window.Console;

  const balanceLine = (b) =>
    `可用 <b>${C.yuan(b.available_fen)}</b> 元（本金 ${C.yuan(b.principal_fen)}，赠送 ${C.yuan(b.bonus_fen)}${b.held_fen ? `，冻结中 ${C.yuan(b.held_fen)}` : ""}）`;

  async function renderSearch(holder, p) {
    const form = `<form class="filters" id="mem-search"><label>卡号 / 手机号 / 姓名
        <input name="q" value="${C.esc(p.q || "")}" maxlength="32" style="width:260px" placeholder="输入后回车"></label>
      <div class="actions"><button class="btn primary" type="submit">搜索</button></div></form>`;
    let body = "";
    let data = null;
    try {
      data = await C.get("/members", { q: p.q, page: p.page || 1, per_page: 20 });
      body = C.table([
        { title: "ID", render: (m) => `#${m.id}` },
        { title: "姓名", render: (m) => C.esc(m.name || "—") },
        { title: "卡号", render: (m) => C.esc(m.card_no || "—") },
        { title: "手机号", render: (m) => C.esc(m.phone || "—") },
        { title: "等级", render: (m) => C.esc((m.level && (m.level.name || m.level)) || "—") },
        { title: "余额（元）", num: true, render: (m) => C.yuan(m.balance && (m.balance.available_fen ?? m.balance.total_fen ?? m.balance)) },
        { title: "积分", num: true, render: (m) => C.num(m.points) },
        { title: "状态", render: (m) => C.badge(C.CARD_STATUS, m.status) },
      ], data.items, { onRow: true, empty: p.q ? "没有找到匹配的会员" : "暂无会员" });
    } catch (e) {
      if (e.status !== 404) throw e;
      body = C.missing("会员搜索") + '<p class="muted">可输入会员 ID（数字）直接打开会员详情。</p>';
      if (p.q && /^\d{1,10}$/.test(p.q)) return C.go("members/" + p.q);
    }
    holder.innerHTML = C.section("会员", form + `<div id="mem-list">${body}</div>`);
    const formEl = holder.querySelector("#mem-search");
    formEl.onsubmit = (ev) => { ev.preventDefault(); C.go("members", C.formParams(formEl)); };
    if (data) {
      const list = holder.querySelector("#mem-list");
      C.bindRows(list, data.items, (m) => C.go("members/" + m.id));
      if (data.items.length) list.appendChild(C.pager(data, (page) => C.go("members", { ...p, page })));
    }
  }

  /* The store an action is recorded in: the staff's own store, or the one HQ picks. */
  async function storeChoice() {
    const own = C.myStoreId();
    if (own) return { html: "", read: () => ({ store_id: own }) };
    const stores = await C.stores();
    if (stores.length) {
      return {
        html: `<label>门店</label><select name="store_code" required>${await C.storeOptions("", { any: false })}</select>`,
        read: (form) => ({ store_code: form.store_code.value }),
      };
    }
    return {
      html: `<label>门店编号</label><input name="store_code" required maxlength="32" placeholder="如 sh01">`,
      read: (form) => ({ store_code: form.store_code.value.trim() }),
    };
  }

  async function cardAction(member, action) {
    const words = { freeze: "冻结会员卡", report_loss: "挂失会员卡", unfreeze: "解冻会员卡", cancel_loss: "解除挂失" }[action];
    const b = member.balance;
    const effect = action === "freeze" || action === "report_loss"
      ? `冻结后该卡不能充值、不能消费，余额保留：<br>${balanceLine(b)}`
      : `恢复后该卡可正常充值和消费：<br>${balanceLine(b)}`;
    const result = await C.dialog({
      title: words,
      danger: action === "freeze" || action === "report_loss",
      okText: "确认" + words.replace("会员卡", ""),
      body: `<div class="confirm-box">会员 <b>${C.esc(member.name || "#" + member.id)}</b>（卡号 ${C.esc(member.card_no || "—")}）<br>${effect}</div>
        <div class="form-grid"><label>原因</label><input name="reason" required maxlength="255" placeholder="必填，将记入审计日志"></div>`,
      onOk: async (form) => {
        if (!form.reason.value.trim()) C.fail("请填写原因");
        return C.post(`/members/${member.id}/card`, { action, reason: form.reason.value.trim(), store_id: C.myStoreId() });
      },
    });
    if (result) { C.toast(words + "：已完成"); C.render(); }
  }

  async function offlineRecharge(member) {
    let rules = [];
    try { rules = (await C.get("/rules")).items.filter((r) => r.status === "active"); } catch (e) { /* clerks */ }
    const store = await storeChoice();
    const ruleOptions = rules.map((r) => `<option value="${r.id}" data-amount="${r.amount_fen}" data-bonus="${r.bonus_fen}"
        data-rewards="${C.esc((r.rewards || []).join("、"))}">${C.esc(r.name)}（${C.yuan(r.amount_fen)} 元）</option>`).join("");
    const result = await C.dialog({
      title: "线下充值",
      okText: "确认充值",
      body: `<div class="form-grid">
          <label>充值方式</label><select name="rule_id"><option value="">自定义金额</option>${ruleOptions}</select>
          <label>金额（元）</label><input name="amount" inputmode="decimal" placeholder="如 100 或 88.50" maxlength="12">
          <label>收款方式</label><select name="method"><option value="cash">现金</option><option value="card_terminal">刷卡</option></select>
          ${store.html}
          <label>小票号</label><input name="receipt_no" required maxlength="64" placeholder="收银小票号，防止重复入账">
          <label>备注</label><input name="note" maxlength="255"></div>
        <div class="confirm-box" id="rc-summary"></div>`,
      onInput: (form, body) => {
        const opt = form.rule_id.selectedOptions[0];
        const ruled = !!form.rule_id.value;
        form.amount.disabled = ruled;
        if (ruled) form.amount.value = C.yuan(opt.dataset.amount, { group: false });
        const fen = ruled ? Number(opt.dataset.amount) : C.parseYuan(form.amount.value);
        const bonus = ruled ? Number(opt.dataset.bonus) : 0;
        const box = body.querySelector("#rc-summary");
        if (!fen) { box.innerHTML = `当前 ${balanceLine(member.balance)}<br>请输入充值金额`; return; }
        box.innerHTML = `收款 <span class="big credit">${C.yuan(fen)}</span> 元${bonus ? `，赠送 ${C.yuan(bonus)} 元` : ""}
          ${ruled && opt.dataset.rewards ? `<br>奖励：${opt.dataset.rewards}` : ""}
          <br>充值后可用余额 <b>${C.yuan(member.balance.available_fen + fen + bonus)}</b> 元（当前 ${C.yuan(member.balance.available_fen)} 元）`;
      },
      onOk: async (form) => {
        const body = { member: { id: member.id }, method: form.method.value, receipt_no: form.receipt_no.value.trim(),
          note: form.note.value.trim(), ...store.read(form) };
        if (form.rule_id.value) body.rule_id = Number(form.rule_id.value);
        else {
          const fen = C.parseYuan(form.amount.value);
          if (!fen) C.fail("请输入正确的金额（元，最多两位小数）");
          body.amount_fen = fen;
        }
        if (body.store_code === "") C.fail("请选择门店");
        if (!body.receipt_no) C.fail("请填写小票号");
        return C.post("/offline-recharges", body);
      },
    });
    if (result) {
      C.toast(result.replayed ? "该小票已入账过，未重复充值" : `充值成功，可用余额 ${C.yuan(result.balance.available_fen)} 元`);
      C.render();
    }
  }

  async function withdraw(member) {
    const key = C.uid(); // one key per dialog: pressing again after a network error does not pay twice
    const result = await C.dialog({
      title: "线下提现（退还本金）",
      danger: true,
      okText: "确认提现",
      body: `<div class="form-grid"><label>金额（元）</label><input name="amount" inputmode="decimal" required maxlength="12">
          <label>原因</label><input name="reason" required maxlength="255" placeholder="必填，将记入审计日志"></div>
        <div class="confirm-box" id="wd-summary"></div>`,
      onInput: (form, body) => {
        const fen = C.parseYuan(form.amount.value);
        const p = member.balance.principal_fen;
        body.querySelector("#wd-summary").innerHTML = !fen ? `可提现本金 <b>${C.yuan(p)}</b> 元（赠送金额不可提现）`
          : fen > p ? `<span class="neg">超过可提现本金 ${C.yuan(p)} 元</span>`
          : `退还现金 <span class="big">${C.yuan(fen)}</span> 元<br>本金 ${C.yuan(p)} → <b>${C.yuan(p - fen)}</b> 元，赠送 ${C.yuan(member.balance.bonus_fen)} 元不变`;
      },
      onOk: async (form) => {
        const fen = C.parseYuan(form.amount.value);
        if (!fen) C.fail("请输入正确的金额（元，最多两位小数）");
        if (!form.reason.value.trim()) C.fail("请填写原因");
        return C.post(`/members/${member.id}/withdrawals`, { amount_fen: fen, reason: form.reason.value.trim(),
          request_id: key, store_id: C.myStoreId() });
      },
    });
    if (result) { C.toast(`已提现，可用余额 ${C.yuan(result.balance.available_fen)} 元`); C.render(); }
  }

  async function reverse(member, entry) {
    const key = C.uid();
    const p = entry.principal_delta_fen, b = entry.bonus_delta_fen;
    const result = await C.dialog({
      title: "冲正",
      danger: true,
      okText: "确认冲正",
      body: `<div class="confirm-box">冲正 ${C.esc(entry.time || C.time(entry.created_at))} 的${C.esc(entry.kind_text || "充值")}（流水 #${entry.id}）
          <br>扣回 <span class="big">${C.yuan(p + b)}</span> 元（本金 ${C.yuan(p)}，赠送 ${C.yuan(b)}）
          <br>冲正后可用余额 <b>${C.yuan(member.balance.available_fen - p - b)}</b> 元（当前 ${C.yuan(member.balance.available_fen)} 元）</div>
        <div class="form-grid"><label>原因</label><input name="reason" required maxlength="255" placeholder="必填，将记入审计日志"></div>`,
      onOk: async (form) => {
        if (!form.reason.value.trim()) C.fail("请填写原因");
        return C.post(`/ledger/${entry.id}/reversal`, { reason: form.reason.value.trim(), request_id: key, store_id: C.myStoreId() });
      },
    });
    if (result) { C.toast(`已冲正，可用余额 ${C.yuan(result.balance.available_fen)} 元`); C.render(); }
  }

  async function renderDetail(holder, id, p) {
    let member;
    try {
      member = await C.get("/members/" + id);
    } catch (e) {
      if (e.status === 404) { holder.innerHTML = '<div class="notice">会员不存在，或不在您可查看的范围内。</div>'; return; }
      throw e;
    }
    const page = Number(p.page || 1);
    const history = await C.get("/ledger", { member_id: id, page, per_page: 10 });
    const b = member.balance;
    const card = member.card || {};
    const status = member.status;
    const buttons = [];
    if (C.can("recharge_offline")) buttons.push(`<button class="btn primary" data-act="recharge" ${status !== "active" ? "disabled title=\"卡已冻结或挂失\"" : ""}>线下充值</button>`);
    if (C.can("manage_members")) {
      if (status === "active") buttons.push('<button class="btn" data-act="freeze">冻结</button>', '<button class="btn" data-act="report_loss">挂失</button>');
      if (status === "frozen") buttons.push('<button class="btn" data-act="unfreeze">解冻</button>');
      if (status === "lost") buttons.push('<button class="btn" data-act="cancel_loss">解除挂失</button>');
    }
    if (C.can("withdraw_offline")) buttons.push('<button class="btn" data-act="withdraw">线下提现</button>');
    const level = (member.level && member.level.name) || card.level || "—";
    holder.innerHTML = `<p><a href="#/members">← 返回会员列表</a></p>
      <section class="panel" id="member-card"><div class="member-head">
        <div><div class="name">${C.esc(member.name || "未填写姓名")} ${C.badge(C.CARD_STATUS, status)}</div>
          <div class="kv" style="margin-top:8px"><span>会员 ID</span><b>#${member.id}</b><span>卡号</span><b>${C.esc(member.card_no || card.card_no || "—")}</b>
          <span>手机号</span><b>${C.esc(member.phone || "—")}</b><span>等级</span><b>${C.esc(level)}${card.discount_percent && card.discount_percent < 100 ? `（${card.discount_percent / 10} 折）` : ""}</b></div></div>
        <div class="cards" style="flex:1;margin:0">
          <div class="stat"><div class="label">可用余额</div><div class="value" id="member-available">${C.yuan(b.available_fen)}<small>元</small></div>
            <div class="sub">本金 ${C.yuan(b.principal_fen)} · 赠送 ${C.yuan(b.bonus_fen)}</div></div>
          <div class="stat"><div class="label">冻结中</div><div class="value">${C.yuan(b.held_fen)}<small>元</small></div><div class="sub">待结算的支付</div></div>
          <div class="stat"><div class="label">积分</div><div class="value">${C.num(member.points)}<small>分</small></div><div class="sub">&nbsp;</div></div>
        </div></div>
        <div class="actions-bar">${buttons.join("")}</div></section>
      <section class="panel"><div class="panel-head"><h2>资金流水</h2></div><div id="member-history">${C.table([
        { title: "时间", render: (r) => C.esc(r.time || C.time(r.created_at)) },
        { title: "类型", render: (r) => C.esc(r.kind_text || r.kind) },
        { title: "金额（元）", num: true, render: (r) => `<span class="${(r.amount_yuan || "").startsWith("-") ? "neg" : "pos"}">${C.esc(r.amount_yuan || C.yuan(r.amount_fen))}</span>` },
        { title: "余额（元）", num: true, render: (r) => C.yuan(r.balance_after.available_fen) },
        { title: "门店", render: (r) => C.esc(r.store_name) },
        { title: "说明", wrap: true, render: (r) => C.esc(r.note || r.reference || "") },
        { title: "", render: (r) => (r.kind === "credit" && C.can("reverse_entry") ? `<button class="btn small" data-reverse="${r.id}">冲正</button>` : "") },
      ], history.items)}</div></section>`;
    const hist = holder.querySelector("#member-history");
    if (history.items.length) hist.appendChild(C.pager(history, (pg) => C.go("members/" + id, { page: pg })));
    holder.querySelectorAll("[data-act]").forEach((btn) => {
      btn.onclick = () => {
        const act = btn.dataset.act;
        if (act === "recharge") return offlineRecharge(member);
        if (act === "withdraw") return withdraw(member);
        return cardAction(member, act);
      };
    });
    holder.querySelectorAll("[data-reverse]").forEach((btn) => {
      btn.onclick = () => reverse(member, history.items.find((r) => String(r.id) === btn.dataset.reverse));
    });
  }

  C.pages.members = {
    title: "会员",
    render(holder, route) {
      return route.parts[1] ? renderDetail(holder, route.parts[1], route.params) : renderSearch(holder, route.params);
    },
  };
})();
