/* 充值规则, 优惠券, 卡类型与等级: create and edit; archive a rule; copy its link; download its QR code
   (PNG/SVG) or, for an active rule, its mini-program code; its statistics next to it. */
"use strict";
(function () {
  const C = window.Console;

  const COUPON_KIND = { amount_off: "立减券", discount: "折扣券", threshold: "满减券" };
  function couponTerms(t) {
    if (t.kind === "discount") return `${t.value / 10} 折`;
    if (t.kind === "threshold") return `满 ${C.yuan(t.threshold_fen)} 减 ${C.yuan(t.value)} 元`;
    return `立减 ${C.yuan(t.value)} 元`;
  }
  const localInput = (iso) => (iso ? C.time(iso).replace(" ", "T").slice(0, 16) : "");
  const isoFromLocal = (v) => (v ? `${v}:00+08:00` : null);

  async function copyText(text) {
    try {
      await navigator.clipboard.writeText(text);
    } catch (e) {
      const area = document.createElement("textarea");
      area.value = text;
      document.body.appendChild(area);
      area.select();
      document.execCommand("copy");
      area.remove();
    }
    C.toast("已复制链接：" + text);
  }

  async function ruleDialog(rule) {
    const [coupons, cards] = await Promise.all([
      C.get("/coupon-templates").then((d) => d.items).catch(() => []),
      C.get("/card-types").then((d) => d.items).catch(() => []),
    ]);
    const r = rule || { bonus_fen: 0, points: 0, all_stores: true, store_codes: [] };
    const couponId = r.coupon && r.coupon.template_id;
    const cardId = r.card && r.card.card_type_id;
    const saved = await C.dialog({
      title: rule ? "编辑充值规则" : "新建充值规则",
      okText: "保存",
      body: `<div class="form-grid">
        <label>名称</label><input name="name" required maxlength="64" value="${C.esc(r.name || "")}" placeholder="如 充100送10">
        <label>充值金额（元）</label><input name="amount" required inputmode="decimal" value="${r.amount_fen ? C.yuan(r.amount_fen, { group: false }) : ""}">
        <label>赠送金额（元）</label><input name="bonus" inputmode="decimal" value="${C.yuan(r.bonus_fen || 0, { group: false })}">
        <label>赠送积分</label><input name="points" type="number" min="0" value="${r.points || 0}">
        <label>赠送优惠券</label><select name="coupon_template_id"><option value="">不赠送</option>${coupons.map((t) =>
          `<option value="${t.id}" ${t.id === couponId ? "selected" : ""}>${C.esc(t.name)}</option>`).join("")}</select>
        <label>券数量</label><input name="coupon_qty" type="number" min="0" max="100" value="${(r.coupon && r.coupon.qty) || 1}">
        <label>升级卡类型</label><select name="card_type_id"><option value="">不升级</option>${cards.map((t) =>
          `<option value="${t.id}" ${t.id === cardId ? "selected" : ""}>${C.esc(t.name)}</option>`).join("")}</select>
        <label>开始时间</label><input name="starts_at" type="datetime-local" value="${localInput(r.starts_at)}">
        <label>结束时间</label><input name="ends_at" type="datetime-local" value="${localInput(r.ends_at)}">
        <label>适用门店</label><input name="store_codes" value="${C.esc((r.store_codes || []).join(","))}" placeholder="留空为全部门店；多个用逗号分隔，如 sh01,sh02">
        <label>排序</label><input name="sort_order" type="number" value="${r.sort_order || 0}"></div>
        <div class="confirm-box" id="rule-summary"></div>`,
      onInput: (form, body) => {
        const amount = C.parseYuan(form.amount.value);
        const bonus = C.parseYuan(form.bonus.value || "0");
        body.querySelector("#rule-summary").innerHTML = amount
          ? `会员支付 <b>${C.yuan(amount)}</b> 元，到账 <b>${C.yuan(amount + (bonus || 0))}</b> 元（本金 ${C.yuan(amount)} + 赠送 ${C.yuan(bonus || 0)}）`
          : "请输入充值金额";
      },
      onOk: async (form) => {
        const amount = C.parseYuan(form.amount.value);
        const bonus = C.parseYuan(form.bonus.value || "0");
        if (!amount) C.fail("请输入正确的充值金额（元）");
        if (bonus === null) C.fail("请输入正确的赠送金额（元）");
        const body = {
          name: form.name.value.trim(), amount_fen: amount, bonus_fen: bonus, points: Number(form.points.value || 0),
          coupon_template_id: form.coupon_template_id.value ? Number(form.coupon_template_id.value) : null,
          coupon_qty: form.coupon_template_id.value ? Number(form.coupon_qty.value || 1) : 0,
          card_type_id: form.card_type_id.value ? Number(form.card_type_id.value) : null,
          starts_at: isoFromLocal(form.starts_at.value), ends_at: isoFromLocal(form.ends_at.value),
          store_codes: form.store_codes.value.split(/[,，\s]+/).filter(Boolean),
          sort_order: Number(form.sort_order.value || 0),
        };
        return rule ? C.api("PATCH", "/rules/" + rule.id, body) : C.post("/rules", body);
      },
    });
    if (saved) { C.toast("规则已保存"); C.render(); }
  }

  C.pages.rules = {
    title: "充值规则",
    async render(holder) {
      const [rules, stats] = await Promise.all([C.get("/rules"), C.get("/recharge-stats", { group_by: "rule" })]);
      const byRule = Object.fromEntries(stats.items.map((s) => [s.key, s]));
      const stat = (r, f) => (byRule[r.id] ? byRule[r.id][f] : 0);
      holder.innerHTML = C.section("充值规则", C.table([
        { title: "名称", render: (r) => `<b>${C.esc(r.name)}</b><div class="muted">${C.esc(r.code)}</div>` },
        { title: "充值（元）", num: true, render: (r) => C.yuan(r.amount_fen) },
        { title: "奖励", wrap: true, render: (r) => C.esc(r.rewards_text || (r.rewards || []).join("、") || "—") },
        { title: "状态", render: (r) => (r.status === "active" ? '<span class="badge ok">启用</span>' : '<span class="badge">已归档</span>') },
        { title: "已支付", num: true, cls: "hide-narrow", render: (r) => C.num(stat(r, "paid_orders")) },
        { title: "实收（元）", num: true, render: (r) => C.yuan(stat(r, "paid_fen")) },
        { title: "赠送（元）", num: true, render: (r) => C.yuan(stat(r, "bonus_fen")) },
        { title: "发券", num: true, cls: "hide-narrow", render: (r) => C.num(stat(r, "coupons_granted")) },
        { title: "操作", cls: "actions", render: (r) => `<button class="btn small" data-copy="${r.id}">复制链接</button>
            <button class="btn small" data-qr="${r.id}" data-fmt="png">二维码 PNG</button>
            <button class="btn small" data-qr="${r.id}" data-fmt="svg">SVG</button>
            ${r.status === "active" ? `<button class="btn small" data-wxacode="${r.id}" title="微信小程序码，扫码进入小程序充值页">小程序码</button>
            <button class="btn small" data-edit="${r.id}">编辑</button>
            <button class="btn small" data-archive="${r.id}">归档</button>` : ""}` },
      ], rules.items), '<button class="btn primary" id="rule-new">新建规则</button>');
      const find = (id) => rules.items.find((r) => String(r.id) === id);
      holder.querySelector("#rule-new").onclick = () => ruleDialog(null);
      holder.querySelectorAll("[data-edit]").forEach((b) => (b.onclick = () => ruleDialog(find(b.dataset.edit))));
      holder.querySelectorAll("[data-copy]").forEach((b) => (b.onclick = () => copyText(find(b.dataset.copy).link)));
      holder.querySelectorAll("[data-qr]").forEach((b) => (b.onclick = () => {
        const r = find(b.dataset.qr);
        C.download(`/rules/${r.id}/qrcode.${b.dataset.fmt}?size=10`, `${r.name}.${b.dataset.fmt}`).catch((e) => C.toast(e.message, true));
      }));
      holder.querySelectorAll("[data-wxacode]").forEach((b) => (b.onclick = () => {
        const r = find(b.dataset.wxacode);
        C.download(`/rules/${r.id}/wxacode?width=860`, `${r.name}_小程序码.jpg`).catch((e) => C.toast(e.message, true));
      }));
      holder.querySelectorAll("[data-archive]").forEach((b) => (b.onclick = async () => {
        const r = find(b.dataset.archive);
        const done = await C.dialog({
          title: "归档规则", danger: true, okText: "确认归档",
          body: `<div class="confirm-box">归档「${C.esc(r.name)}」（充 ${C.yuan(r.amount_fen)} 元，赠 ${C.yuan(r.bonus_fen)} 元）后，会员将不能再用该规则充值；已有订单不受影响。</div>`,
          onOk: () => C.post(`/rules/${r.id}/archive`),
        });
        if (done) { C.toast("已归档"); C.render(); }
      }));
    },
  };

  async function couponDialog(t) {
    const c = t || { kind: "threshold", validity_days: 30 };
    const saved = await C.dialog({
      title: t ? "编辑优惠券" : "新建优惠券",
      okText: "保存",
      body: `<div class="form-grid">
        <label>名称</label><input name="name" required maxlength="64" value="${C.esc(c.name || "")}">
        <label>类型</label><select name="kind">${Object.entries(COUPON_KIND).map(([k, v]) => `<option value="${k}" ${c.kind === k ? "selected" : ""}>${v}</option>`).join("")}</select>
        <label id="value-label">面额（元）</label><input name="value" required value="${c.value ? (c.kind === "discount" ? c.value : C.yuan(c.value, { group: false })) : ""}">
        <label>门槛（元）</label><input name="threshold" value="${c.threshold_fen ? C.yuan(c.threshold_fen, { group: false }) : ""}" placeholder="满减券填写">
        <label>有效天数</label><input name="validity_days" type="number" min="1" max="3650" value="${c.validity_days || 30}">
        <label>库存</label><input name="stock" type="number" min="0" value="${c.stock ?? ""}" placeholder="留空为不限"></div>`,
      onInput: (form, body) => {
        body.querySelector("#value-label").textContent = form.kind.value === "discount" ? "折扣（如 85 为 8.5 折）" : "面额（元）";
      },
      onOk: async (form) => {
        const kind = form.kind.value;
        const value = kind === "discount" ? Number(form.value.value) : C.parseYuan(form.value.value);
        if (!value || (kind === "discount" && !(value > 0 && value < 100))) C.fail(kind === "discount" ? "折扣须在 1-99 之间" : "请输入正确的面额（元）");
        const body = { name: form.name.value.trim(), kind, value, validity_days: Number(form.validity_days.value || 30),
          stock: form.stock.value === "" ? null : Number(form.stock.value) };
        if (kind === "threshold") {
          const th = C.parseYuan(form.threshold.value);
          if (!th) C.fail("满减券请填写门槛金额（元）");
          body.threshold_fen = th;
        }
        return t ? C.api("PATCH", "/coupon-templates/" + t.id, body) : C.post("/coupon-templates", body);
      },
    });
    if (saved) { C.toast("优惠券已保存"); C.render(); }
  }

  C.pages.coupons = {
    title: "优惠券",
    async render(holder) {
      const data = await C.get("/coupon-templates");
      holder.innerHTML = C.section("优惠券模板", C.table([
        { title: "名称", render: (t) => `<b>${C.esc(t.name)}</b>` },
        { title: "类型", render: (t) => COUPON_KIND[t.kind] || t.kind },
        { title: "内容", render: (t) => couponTerms(t) },
        { title: "有效天数", num: true, render: (t) => C.num(t.validity_days) },
        { title: "库存", num: true, render: (t) => (t.stock === null || t.stock === undefined ? "不限" : C.num(t.stock)) },
        { title: "发放截止", render: (t) => C.time(t.issue_until) },
        { title: "", render: (t) => `<button class="btn small" data-edit="${t.id}">编辑</button>` },
      ], data.items), '<button class="btn primary" id="coupon-new">新建优惠券</button>');
      holder.querySelector("#coupon-new").onclick = () => couponDialog(null);
      holder.querySelectorAll("[data-edit]").forEach((b) => (b.onclick = () => couponDialog(data.items.find((t) => String(t.id) === b.dataset.edit))));
    },
  };

  async function cardTypeDialog(t) {
    const c = t || { level_rank: 1, discount_percent: 100, points_multiplier_percent: 100, points_validity_years: 2 };
    const saved = await C.dialog({
      title: t ? "编辑卡类型" : "新建卡类型",
      okText: "保存",
      body: `<div class="form-grid">
        ${t ? "" : `<label>编码</label><input name="code" required maxlength="32" placeholder="如 gold">`}
        <label>名称</label><input name="name" required maxlength="32" value="${C.esc(c.name || "")}">
        <label>等级</label><input name="level_rank" type="number" min="0" max="1000" value="${c.level_rank}">
        <label>折扣（%）</label><input name="discount_percent" type="number" min="1" max="100" value="${c.discount_percent}">
        <label>积分倍率（%）</label><input name="points_multiplier_percent" type="number" min="0" max="1000" value="${c.points_multiplier_percent}">
        <label>积分有效期</label><select name="points_validity_years">${[1, 2, 3, 5, 10].map((y) => `<option value="${y}" ${c.points_validity_years === y ? "selected" : ""}>${y} 年</option>`).join("")}</select>
        <label>包邮</label><select name="free_shipping"><option value="false">否</option><option value="true" ${c.free_shipping ? "selected" : ""}>是</option></select></div>`,
      onOk: async (form) => {
        const body = { name: form.name.value.trim(), level_rank: Number(form.level_rank.value), discount_percent: Number(form.discount_percent.value),
          points_multiplier_percent: Number(form.points_multiplier_percent.value), points_validity_years: Number(form.points_validity_years.value),
          free_shipping: form.free_shipping.value === "true" };
        if (!t) body.code = form.code.value.trim();
        return t ? C.api("PATCH", "/card-types/" + t.id, body) : C.post("/card-types", body);
      },
    });
    if (saved) { C.toast("卡类型已保存"); C.render(); }
  }

  const METRIC = { recharge: "累计充值", spend: "累计消费", points: "累计积分" };

  async function levelRuleDialog(types) {
    const options = (none) => `<option value="">${none}</option>` +
      types.filter((t) => t.active).map((t) => `<option value="${t.id}">${C.esc(t.name)}</option>`).join("");
    const saved = await C.dialog({
      title: "新建升降级规则",
      okText: "保存",
      body: `<div class="form-grid">
        <label>方向</label><select name="direction"><option value="up">升级</option><option value="down">降级</option></select>
        <label>从</label><select name="from_card_type_id">${options("无卡会员")}</select>
        <label>到</label><select name="to_card_type_id">${options("无卡")}</select>
        <label>依据</label><select name="metric">${Object.entries(METRIC).map(([k, v]) => `<option value="${k}">${v}</option>`).join("")}</select>
        <label id="threshold-label">门槛（元）</label><input name="threshold" required inputmode="decimal">
        <label>统计天数</label><input name="period_days" type="number" min="1" max="3660" value="365"></div>`,
      onInput: (form, body) => {
        body.querySelector("#threshold-label").textContent = form.metric.value === "points" ? "门槛（积分）" : "门槛（元）";
      },
      onOk: async (form) => {
        const points = form.metric.value === "points";
        const threshold = points ? Number(form.threshold.value) : C.parseYuan(form.threshold.value);
        if (threshold === null || !Number.isInteger(threshold) || threshold < 0) C.fail(points ? "请输入积分门槛" : "请输入正确的金额门槛（元）");
        const id = (name) => (form[name].value ? Number(form[name].value) : null);
        return C.post("/level-rules", { direction: form.direction.value, from_card_type_id: id("from_card_type_id"),
          to_card_type_id: id("to_card_type_id"), metric: form.metric.value, threshold, period_days: Number(form.period_days.value) });
      },
    });
    if (saved) { C.toast("规则已保存"); C.render(); }
  }
  C.pages["card-types"] = {
    title: "卡类型与等级",
    async render(holder) {
      const [types, rules] = await Promise.all([C.get("/card-types"), C.get("/level-rules")]);
      const name = (id) => (types.items.find((t) => t.id === id) || { name: id ? "#" + id : "无卡" }).name;
      holder.innerHTML = C.section("卡类型", C.table([
        { title: "名称", render: (t) => `<b>${C.esc(t.name)}</b> <span class="muted">${C.esc(t.code)}</span>` },
        { title: "等级", num: true, render: (t) => t.level_rank },
        { title: "折扣", render: (t) => (t.discount_percent < 100 ? `${t.discount_percent / 10} 折` : "无") },
        { title: "积分倍率", render: (t) => `${t.points_multiplier_percent}%` },
        { title: "积分有效期", render: (t) => `${t.points_validity_years} 年` },
        { title: "包邮", render: (t) => (t.free_shipping ? "是" : "否") },
        { title: "状态", render: (t) => (t.active ? '<span class="badge ok">启用</span>' : '<span class="badge">停用</span>') },
        { title: "", render: (t) => `<button class="btn small" data-edit="${t.id}">编辑</button>` },
      ], types.items), '<button class="btn primary" id="type-new">新建卡类型</button>') +
        C.section("升降级规则", C.table([
          { title: "方向", render: (r) => (r.direction === "up" ? "升级" : "降级") },
          { title: "从", render: (r) => C.esc(name(r.from_card_type_id)) },
          { title: "到", render: (r) => C.esc(name(r.to_card_type_id)) },
          { title: "条件", render: (r) => `${r.period_days} 天内${METRIC[r.metric] || r.metric} ${r.direction === "up" ? "≥" : "<"} ${r.metric === "points" ? C.num(r.threshold) : C.yuan(r.threshold) + " 元"}` },
          { title: "状态", render: (r) => (r.active ? '<span class="badge ok">启用</span>' : '<span class="badge">停用</span>') },
          { title: "", render: (r) => (r.active ? `<button class="btn small" data-off="${r.id}">停用</button>` : "") },
        ], rules.items, { empty: "暂无升降级规则" }), '<button class="btn primary" id="level-new">新建规则</button>');
      holder.querySelector("#type-new").onclick = () => cardTypeDialog(null);
      holder.querySelector("#level-new").onclick = () => levelRuleDialog(types.items);
      holder.querySelectorAll("[data-edit]").forEach((b) => (b.onclick = () => cardTypeDialog(types.items.find((t) => String(t.id) === b.dataset.edit))));
      holder.querySelectorAll("[data-off]").forEach((b) => (b.onclick = async () => {
        const done = await C.dialog({ title: "停用规则", danger: true, okText: "确认停用", body: "<p>停用后夜间任务不再按此规则调整会员等级。</p>",
          onOk: () => C.api("DELETE", "/level-rules/" + b.dataset.off) });
        if (done) C.render();
      }));
    },
  };
})();
